"""Rendering a referrer chain (root first, the leaked tensor last) as a path a user recognises.

``global app.PIPE.asr.model.encoder.layers[0].weight``, ``local 'out' in infer() at
app.py:41``, ``closure 'saved' of make_hook.<locals>.hook via forward hook of global
app.MODEL.layer1``, ``traceback of ValueError raised in infer() at app.py:50 (frame local 'x'
of infer() at app.py:48) via global sys.last_value``, ``saved for backward by MulBackward0 of
global app.OUT``.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from vramguard.census._frames import frame_locals, function_at
from vramguard.census._scan import is_a

Edge = tuple[str, str]
"""(kind, label): kind is "scan" (a referrer the heap scan found; the label is worked out
here), "local" (label: the name), "module" (label: ``.layer1``, ``[0]``, ``.weight``),
"hook" (label: ``forward hook``), "saved" (label: ``saved for backward by MulBackward0``) or
"numpy" (the parent is a numpy array sharing the child tensor's memory; no label)."""

_MISSING = object()
MEMBER_DICTS = ("_parameters", "_buffers", "_modules")
"""The ``nn.Module`` attributes holding its parameters, buffers and submodules by name."""
HOOK_DICTS = {
    "_forward_hooks": "forward hook",
    "_forward_pre_hooks": "forward pre-hook",
    "_backward_hooks": "backward hook",
    "_backward_pre_hooks": "backward pre-hook",
    "_state_dict_hooks": "state_dict hook",
    "_load_state_dict_pre_hooks": "load_state_dict pre-hook",
}


@dataclass
class _Expr:
    prefix: str
    head: str = ""
    accessor: str = ""
    suffix: str = ""

    def text(self) -> str:
        return f"{self.prefix}{self.head}{self.accessor}{self.suffix}"


NameOf = Callable[[object], "str | None"]
Positions = dict[int, dict[int, int]]
"""id(list) -> id(item) -> its position, for lists of at least :data:`LONG` items."""
LONG = 64


def _short(value: object, name_of: NameOf | None = None) -> str:
    """A dict key on one line: a parameter or tensor by its name in its module (an optimizer's
    ``state[<fc1.weight>]``) or its shape, anything else by a repr cut to 40 characters."""
    if issubclass(type(value), torch.Tensor):
        name = name_of(value) if name_of is not None else None
        if name is not None:
            return f"<{name}>"
        try:
            return f"<{type(value).__name__} {list(value.shape)}>"  # type: ignore[attr-defined]
        except Exception:
            return f"<{type(value).__name__}>"
    try:
        text = " ".join(repr(value).split())
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 40 else text[:37] + "..."


def _attr(key: object, name_of: NameOf | None = None) -> str:
    if is_a(key, str) and key.isidentifier():
        return f".{key}"
    return f"[{_short(key, name_of)}]"


def _namespace(obj: object) -> object:
    try:
        return vars(obj)
    except TypeError:
        return None


def _dict_key(mapping: dict[Any, Any], child: object) -> object:
    for key, value in list(mapping.items()):
        if value is child:
            return key
    return _MISSING


def _attribute_of(obj: object, child: object) -> str | None:
    namespace = _namespace(obj)
    if is_a(namespace, dict):
        key = _dict_key(namespace, child)
        if key is not _MISSING:
            return _attr(key)
    for cls in type(obj).__mro__:
        for slot in getattr(cls, "__slots__", ()):
            if is_a(slot, str) and getattr(obj, slot, None) is child:
                return f".{slot}"
    return None


def _via(expr: _Expr | None) -> str:
    return f" via {expr.text()}" if expr is not None else ""


class _Renderer:
    def __init__(
        self, module_names: dict[int, str], name_of: NameOf | None = None, positions: Positions | None = None
    ) -> None:
        self.module_names = module_names
        self.name_of = name_of
        self.positions = positions
        self.expr: _Expr | None = None
        self.function: types.FunctionType | None = None
        self.function_expr: _Expr | None = None
        self.variable: str | None = None
        self.exception: BaseException | None = None
        self.exception_expr: _Expr | None = None
        self.first_traceback: types.TracebackType | None = None
        self.members: object = None
        self.hooks: object = None
        self.hook_kind = ""

    def step(self, parent: object, child: object, kind: str, label: str, before: object) -> None:
        if kind == "local":
            self.expr = _Expr("local ", f"'{label}'", suffix=f" in {function_at(parent)}")  # type: ignore[arg-type]
        elif kind == "module":
            self._ensure(parent).accessor += label
        elif kind == "numpy":
            self._ensure(parent).suffix += " (a numpy array sharing its memory)"
        elif kind in ("hook", "saved"):
            self.expr = _Expr(f"{label} of {self._ensure(parent).text()}")
        else:
            self._scan_step(parent, child, before)

    def _ensure(self, parent: object) -> _Expr:
        if self.expr is None:
            self.expr = _Expr(f"{type(parent).__name__} object")
        return self.expr

    def _scan_step(self, parent: object, child: object, before: object) -> None:
        name = self.module_names.get(id(parent))
        if name is not None:
            key = _dict_key(parent, child)  # type: ignore[arg-type]
            self.expr = _Expr("global ", name + (_attr(key) if key is not _MISSING else ".?"))
            return
        if is_a(parent, type):
            self.expr = _Expr("class ", f"{parent.__module__}.{parent.__qualname__}")
            if not is_a(child, dict):
                self.expr.accessor += f".<{type(child).__name__}>"
            return
        if self._boundary(parent, child):
            return
        expr = self._ensure(parent)
        if is_a(parent, dict):
            key = _dict_key(parent, child)
            owned = is_a(before, type) or (before is not None and _namespace(before) is parent)
            if key is _MISSING:
                expr.accessor += "[<key>]"
            elif owned and key in MEMBER_DICTS and is_a(before, torch.nn.Module):
                self.members = child  # a module's _parameters/_buffers/_modules: name the member
            elif parent is self.members:
                expr.accessor += f"[{key}]" if str(key).isdigit() else f".{key}"
            elif owned and key in HOOK_DICTS and is_a(before, torch.nn.Module):
                self.hooks, self.hook_kind = child, HOOK_DICTS[str(key)]
            elif parent is self.hooks:
                self.expr = _Expr(f"{self.hook_kind} of {expr.text()}")
            else:
                expr.accessor += _attr(key, self.name_of) if owned else f"[{_short(key, self.name_of)}]"
        elif is_a(parent, (list, tuple)):
            index = self._position(parent, child)
            expr.accessor += f"[{index}]" if index is not None else "[?]"
        elif is_a(parent, (set, frozenset)):
            expr.accessor += "{…}"
        elif _namespace(parent) is child:
            pass  # the instance's __dict__: the next step names the attribute
        else:
            expr.accessor += self._member(parent, child)

    def _position(self, parent: Sequence[object], child: object) -> int | None:
        if self.positions is None or len(parent) < LONG:
            return next((i for i, v in enumerate(parent) if v is child), None)
        # A list of thousands of kept losses, rendered once per loss: indexed once.
        known = self.positions.get(id(parent))
        if known is None:
            known = self.positions[id(parent)] = {}
            for i, v in enumerate(parent):
                known.setdefault(id(v), i)
        return known.get(id(child))

    def _member(self, parent: object, child: object) -> str:
        if type(parent).__name__ == "_lru_cache_wrapper":
            return ".<lru_cache entry>"  # functools' C cache holds results out of Python's sight
        if is_a(parent, types.MethodType):
            return ".__self__" if parent.__self__ is child else ".__func__"
        if is_a(parent, functools.partial):
            for attribute in ("func", "args", "keywords"):
                if getattr(parent, attribute) is child:
                    return f".{attribute}"
        if is_a(parent, types.FunctionType):
            for attribute in ("__defaults__", "__kwdefaults__"):
                if getattr(parent, attribute) is child:
                    return f".{attribute}"
        if is_a(parent, BaseException):
            for attribute in ("args", "__context__", "__cause__"):
                if getattr(parent, attribute, None) is child:
                    return f".{attribute}"
        return _attribute_of(parent, child) or f".<{type(child).__name__} in {type(parent).__name__}>"

    def _boundary(self, parent: object, child: object) -> bool:
        """Closures, tracebacks, dead frames and generators: steps that rename the path."""
        if is_a(parent, types.FunctionType) and parent.__closure__ is child:
            self.function, self.function_expr = parent, self.expr
            return True
        if self.function is not None and parent is self.function.__closure__:
            index = next((i for i, c in enumerate(parent) if c is child), None)  # type: ignore[arg-type]
            freevars = self.function.__code__.co_freevars
            self.variable = freevars[index] if index is not None and index < len(freevars) else "?"
            return True
        if is_a(parent, types.CellType):
            owner = self.function
            where = f" of {owner.__qualname__}" if owner is not None else ""
            self.expr = _Expr("closure ", f"'{self.variable or '?'}'", suffix=where + _via(self.function_expr))
            self.function = self.function_expr = None
            return True
        if is_a(parent, BaseException) and parent.__traceback__ is child:
            self.exception, self.exception_expr = parent, self.expr
            self.first_traceback = parent.__traceback__
            return True
        if is_a(parent, types.TracebackType):
            if self.first_traceback is None:
                self.first_traceback, self.exception_expr = parent, self.expr
            return True
        if is_a(parent, types.FrameType):
            self._frame_local(parent, child)
            return True
        if is_a(parent, (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType)):
            frame = next((getattr(parent, a) for a in ("gi_frame", "cr_frame", "ag_frame") if hasattr(parent, a)), None)
            if frame is None:
                return False
            name = next((n for n, v in frame_locals(frame) if v is child), "?")
            self.expr = _Expr("local ", f"'{name}'", suffix=f" in suspended {function_at(frame)}" + _via(self.expr))
            return True
        return False

    def _frame_local(self, frame: types.FrameType, child: object) -> None:
        name = next((n for n, v in frame_locals(frame) if v is child), "?")
        tb = self.first_traceback
        if tb is None:
            self.expr = _Expr("frame local ", f"'{name}'", suffix=f" of {function_at(frame)}" + _via(self.expr))
            return
        last = tb
        while last.tb_next is not None:
            last = last.tb_next
        raised = function_at(last.tb_frame, last.tb_lineno)
        what = type(self.exception).__name__ if self.exception is not None else "an exception"
        self.expr = _Expr(
            f"traceback of {what} raised in {raised} (frame local ",
            f"'{name}'",
            suffix=f" of {function_at(frame)})" + _via(self.exception_expr),
        )
        self.exception = self.exception_expr = self.first_traceback = None


def render_path(
    chain: Sequence[object],
    edges: Sequence[Edge],
    module_names: dict[int, str],
    name_of: NameOf | None = None,
    positions: Positions | None = None,
) -> str:
    """``chain[0]`` is the root, ``chain[-1]`` the tensor; ``edges[i]`` leads from ``chain[i]``
    to ``chain[i + 1]``. ``name_of`` names a parameter used as a dict key; ``positions``, kept
    by the caller while the objects live, caches the positions of long lists' items. Always
    one line."""
    renderer = _Renderer(module_names, name_of, positions)
    for i in range(1, len(chain)):
        kind, label = edges[i - 1]
        before = chain[i - 2] if i >= 2 else None
        renderer.step(chain[i - 1], chain[i], kind, label, before)
    text = renderer.expr.text() if renderer.expr is not None else f"{type(chain[0]).__name__} object"
    return " ".join(text.split())
