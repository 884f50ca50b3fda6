"""Data flow inside one scope: which cache calls each statement follows, and what it drops.

A forward walk over the statements with one abstract state per program point. Branches are
walked separately and merged; ``return``, ``raise``, ``break`` and ``continue`` end a path; a loop
body is judged once (as zero or one iteration); a ``try`` handler starts from the states before
and after the body. Nested functions and classes are scopes of their own.
"""

from __future__ import annotations

import ast
from dataclasses import replace

from vramguard.lint._events import Events
from vramguard.lint._facts import callee, is_drop_value
from vramguard.lint._rules import CACHE_CALLS
from vramguard.lint._scan import calls_in, is_device_guard, is_none, is_release_step, offloaded_receiver, source_text
from vramguard.lint._state import Context, Loop, State, merge


class Walker(Events):
    """Walks one scope's statements in flow order, filling a :class:`~vramguard.lint._state.Scope`."""

    # -- statements ---------------------------------------------------------------------------------
    def block(self, body: list[ast.stmt], st: State | None, ctx: Context) -> State | None:
        for stmt in body:
            if st is None:
                return None  # unreachable code after return/raise/break/continue
            st = self.statement(stmt, st, ctx)
        return st

    def exit(self, st: State) -> None:
        self.scope.drops |= st.drops

    def statement(self, stmt: ast.stmt, st: State, ctx: Context) -> State | None:
        if isinstance(stmt, ast.If):
            self._expressions([stmt.test], st, ctx)
            inner = replace(ctx, every_iteration=False)
            skipped = st.copy()
            if not stmt.orelse and is_device_guard(stmt.test) and _empties_cache(stmt.body):
                # `if torch.cuda.is_available(): torch.cuda.empty_cache()`: where the test is false
                # there is no device cache, so the drops before it are as good as returned.
                skipped.drops = frozenset(d for d in skipped.drops if not d.healable)
            return merge(self.block(stmt.body, st.copy(), inner), self.block(stmt.orelse, skipped, inner))
        if isinstance(stmt, (ast.For, ast.AsyncFor, ast.While)):
            return self._loop(stmt, st, ctx)
        if isinstance(stmt, (ast.With, ast.AsyncWith)):
            self._expressions([i.context_expr for i in stmt.items], st, ctx)
            for item in stmt.items:
                if item.optional_vars is not None:
                    self._bind(item.optional_vars, None, st)
            return self.block(stmt.body, st, ctx)
        if isinstance(stmt, (ast.Try, ast.TryStar)):
            return self._try(stmt, st, ctx)
        if isinstance(stmt, ast.Match):
            self._expressions([stmt.subject], st, ctx)
            inner = replace(ctx, every_iteration=False)
            return merge(st.copy(), *(self.block(case.body, st.copy(), inner) for case in stmt.cases))
        self._simple(stmt, st, ctx)
        if isinstance(stmt, (ast.Return, ast.Raise)):
            self.exit(st)
            return None
        if isinstance(stmt, (ast.Break, ast.Continue)):
            if ctx.loop is not None:
                (ctx.loop.breaks if isinstance(stmt, ast.Break) else ctx.loop.continues).append(st)
            return None
        return st

    def _simple(self, stmt: ast.stmt, st: State, ctx: Context) -> None:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            self._expressions(list(stmt.decorator_list), st, ctx)
            st.kinds[stmt.name] = "other"
        elif isinstance(stmt, ast.Delete):
            for target in stmt.targets:
                self._drop(target, stmt, st)
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            self._expressions([stmt.value], st, ctx)
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for target in targets:
                if isinstance(stmt, ast.AugAssign):
                    continue  # x += y keeps x's object or rebinds it to a computed one: nothing to track
                if is_drop_value(stmt.value) and (is_none(stmt.value) or not isinstance(target, ast.Name)):
                    # `x = []` on a name is usually a fresh start, `self.x = []` a drop of what x held.
                    self._drop(target, stmt, st)
                elif stmt.value is not None:
                    self._bind(target, stmt.value, st)
        elif isinstance(stmt, (ast.Global, ast.Nonlocal)):
            self.scope.nonlocal_names.update(stmt.names)
            st.kinds.update(dict.fromkeys(stmt.names, "other"))
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            for alias in stmt.names:
                st.kinds[(alias.asname or alias.name).split(".")[0]] = "other"
        else:
            self._expressions([n for n in ast.iter_child_nodes(stmt) if isinstance(n, ast.expr)], st, ctx)
            receiver = offloaded_receiver(stmt)
            if receiver is not None:  # model.to("cpu") moves a module's parameters in place
                st.offloaded = st.offloaded | {source_text(receiver)}
        if not is_release_step(stmt):
            st.drops = frozenset(replace(d, healable=False) if d.healable else d for d in st.drops)

    def _loop(self, stmt: ast.For | ast.AsyncFor | ast.While, st: State, ctx: Context) -> State | None:
        self._expressions([stmt.iter if not isinstance(stmt, ast.While) else stmt.test], st, ctx)
        loop = Loop()
        body_in = st.copy()
        body_in.dropped_in_iteration = False
        body_in.after_failure = False
        if not isinstance(stmt, ast.While):
            self._bind(stmt.target, None, body_in)
        targets = frozenset(
            n.id
            for n in ast.walk(stmt.target if not isinstance(stmt, ast.While) else stmt.test)
            if isinstance(n, ast.Name)
        )
        # A local the loop names is used by the next iteration (`stats[i] = x` before the call), or
        # bound again by it, which frees it into blocks reused at once: not VG004's "no longer uses".
        named = frozenset(n.id for n in ast.walk(stmt) if isinstance(n, ast.Name))
        inner = Context(ctx.in_except, True, loop, targets, ctx.loop_names | named, _only_release(stmt.body))
        end = self.block(stmt.body, body_in, inner)
        after = merge(st, end, *loop.continues)
        if after is not None and isinstance(stmt, ast.For) and isinstance(stmt.target, ast.Name):
            # `for hook in self.hooks: hook.offload()` moves everything the container holds off the device.
            item = stmt.target.id
            if any(isinstance(r, ast.Name) and r.id == item for r in map(offloaded_receiver, stmt.body)):
                after.offloaded = after.offloaded | {source_text(stmt.iter)}
        if after is not None and stmt.orelse:
            after = self.block(stmt.orelse, after, replace(ctx, every_iteration=False))
        return merge(after, *loop.breaks)

    def _try(self, stmt: ast.Try | ast.TryStar, st: State, ctx: Context) -> State | None:
        body_end = self.block(stmt.body, st.copy(), ctx)
        raised = merge(st, body_end)  # an exception can leave the body anywhere
        ends: list[State | None] = []
        for handler in stmt.handlers:
            assert raised is not None
            h = raised.copy()
            self._expressions([handler.type], h, ctx)
            if handler.name:
                h.kinds[handler.name] = "other"
            ends.append(self.block(handler.body, h, replace(ctx, in_except=True, every_iteration=False)))
        ends.append(self.block(stmt.orelse, body_end, ctx) if body_end is not None else None)
        joined = merge(*ends)
        if body_end is None and joined is not None:
            joined.after_failure = True  # a retry loop: what follows runs only after an attempt failed
        if not stmt.finalbody:
            return joined
        if joined is None:
            final = self.block(stmt.finalbody, raised, ctx)
            if final is not None:
                self.exit(final)
            return None
        return self.block(stmt.finalbody, joined, ctx)


def _empties_cache(body: list[ast.stmt]) -> bool:
    return any(
        isinstance(stmt, ast.Expr) and any(callee(c) in CACHE_CALLS for c in calls_in([stmt.value])) for stmt in body
    )


def _only_release(body: list[ast.stmt]) -> bool:
    """A body of release steps only, some under a device guard: nothing is allocated between its calls."""
    return all(
        is_release_step(stmt)
        or (isinstance(stmt, ast.If) and is_device_guard(stmt.test) and not stmt.orelse and _only_release(stmt.body))
        for stmt in body
    )
