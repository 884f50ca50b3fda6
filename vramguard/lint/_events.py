"""The flow walk's events: a cache call, a drop, a binding; each updates the state and the scope."""

from __future__ import annotations

import ast
from dataclasses import replace

from vramguard.lint._facts import callee, holds_device_memory, host_name, is_loader, is_scalar, moves_to_cpu
from vramguard.lint._rules import CACHE_CALLS, RELEASING_CALLS
from vramguard.lint._scan import calls_in, is_reference, source_text
from vramguard.lint._state import Context, Drop, Open, Scope, State


class Events:
    """What one statement's parts do to the state; :class:`~vramguard.lint._flow.Walker` orders them."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    def _cache_call(self, call: ast.Call, st: State, ctx: Context) -> None:
        scope = self.scope
        index = len(scope.calls)
        scope.calls.append((call, source_text(call.func)))
        # The drops since an earlier call that only release steps followed are returned by this one.
        st.drops = frozenset(d for d in st.drops if not d.healable)
        if ctx.in_except:
            scope.in_except.append(index)
        per_item = any(isinstance(n, ast.Name) and n.id in ctx.loop_targets for a in call.args for n in ast.walk(a))
        if ctx.every_iteration and not (st.dropped_in_iteration or st.after_failure or per_item or ctx.release_loop):
            scope.every_iteration.append(index)
        name = callee(call)
        if name in RELEASING_CALLS and any(is_reference(a) for a in call.args) and not self._forwards(call):
            scope.releasing.append(index)
        if scope.is_function:
            position = (call.lineno, call.col_offset)
            for local, kind in st.kinds.items():
                last = scope.later_names.get(local)
                if (
                    kind == "device"
                    and local not in scope.nonlocal_names
                    and local not in scope.escaped
                    and local not in ctx.loop_names
                    and not self._part_in_use(local, position)
                    and (last is None or last <= position)
                ):
                    scope.alive_locals.setdefault(local, []).append(index)
        held = frozenset(n for n, k in st.kinds.items() if k != "scalar") - st.offloaded
        st.opens = frozenset({Open(index, held, st.offloaded)})

    def _part_in_use(self, local: str, position: tuple[int, int]) -> bool:
        later = self.scope.later_names
        return any(later.get(part, (0, 0)) > position for part in self.scope.parts.get(local, ()))

    def _forwards(self, call: ast.Call) -> bool:
        """A function whose whole body passes its own ``*args`` on (an alias such as ``Accelerator.clear``)."""
        return (
            self.scope.vararg is not None
            and self.scope.single_statement
            and len(call.args) == 1
            and isinstance(call.args[0], ast.Starred)
            and isinstance(call.args[0].value, ast.Name)
            and call.args[0].value.id == self.scope.vararg
        )

    def _drop(self, target: ast.expr, stmt: ast.stmt, st: State) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            for sub in target.elts:
                self._drop(sub, stmt, st)
            return
        text = source_text(target)
        shown = f"del {text}" if isinstance(stmt, ast.Delete) else f"{text} = {source_text(stmt.value)}"  # type: ignore[attr-defined]
        opens = set()
        for o in st.opens:
            if isinstance(target, ast.Name):
                # `del x` is written to free x; `x = None` often only resets a name (`image_logs = None`
                # before an `if` that may fill it): that counts where x is known to be a tensor or model.
                counts = target.id in o.held and text not in o.changed and (
                    isinstance(stmt, ast.Delete)
                    or st.kinds.get(target.id) == "device"
                    or self.scope.used_as_memory(target.id)
                )
            elif isinstance(target, ast.Attribute):
                counts = target.attr not in self.scope.scalar_attrs and text not in o.changed | o.offloaded
            else:  # an item: memory only if the container is, or the code puts tensors or models in it
                counts = (
                    isinstance(target, ast.Subscript)
                    and text not in o.changed
                    and (self._held_device(target.value, o, st) or self.scope.holds_device_items(target.value))
                )
            if counts:
                st.drops = st.drops | {Drop(o.call, stmt.lineno, stmt.col_offset, text, shown)}
            opens.add(replace(o, changed=o.changed | {text}))
        st.opens = frozenset(opens)
        st.dropped_in_iteration = True
        st.offloaded = st.offloaded - {text}
        if isinstance(target, ast.Name):
            if isinstance(stmt, ast.Delete):
                st.kinds.pop(target.id, None)
            else:
                st.kinds[target.id] = "scalar"

    def _held_device(self, container: ast.expr, o: Open, st: State) -> bool:
        name = container.id if isinstance(container, ast.Name) else None
        return name is not None and name in o.held and name not in o.changed and st.kinds.get(name) == "device"

    def _bind(self, target: ast.expr, value: ast.expr | None, st: State) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            elts = value.elts if isinstance(value, (ast.Tuple, ast.List)) else None
            device = value is not None and self._device(value, st)
            loader = isinstance(value, ast.Call) and is_loader(value)
            for i, sub in enumerate(target.elts):
                if elts is not None and len(elts) == len(target.elts):
                    self._bind(sub, elts[i], st)
                elif loader and i > 0 and not (isinstance(sub, ast.Name) and self.scope.used_as_memory(sub.id)):
                    self._bind(sub, None, st)  # what a loader returns beside its model: metadata, a processor
                else:
                    self._bind(sub, value if device else None, st)
            return
        if isinstance(target, ast.Starred):
            self._bind(target.value, None, st)
            return
        text = source_text(target)
        st.opens = frozenset(replace(o, changed=o.changed | {text}) for o in st.opens)
        offloaded = isinstance(value, ast.Call) and moves_to_cpu(value)
        st.offloaded = st.offloaded | {text} if offloaded else st.offloaded - {text}
        if isinstance(target, ast.Name):
            if value is None:
                st.kinds[target.id] = "other"
            elif is_scalar(value, self.scope.scalar_attrs):
                st.kinds[target.id] = "scalar"
            else:
                shown = not host_name(target.id) or self.scope.used_as_memory(target.id)
                device = self._device(value, st) and shown
                st.kinds[target.id] = "device" if device else "other"

    def _device(self, value: ast.expr, st: State) -> bool:
        return holds_device_memory(value, {n for n, k in st.kinds.items() if k == "device"})

    def _expressions(self, nodes: list[ast.expr | None], st: State, ctx: Context) -> None:
        for call in calls_in(nodes):
            if callee(call) in CACHE_CALLS:
                self._cache_call(call, st, ctx)
