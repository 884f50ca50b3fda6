"""Where storages were created: an opt-in dispatch mode (``VRAMGUARD_CENSUS_SITES=1``).

Off by default because it costs per op: every aten op goes through a Python
``__torch_dispatch__``. The default census (a heap diff) costs nothing per op and leaves
``Leak.created_at`` as None. With this mode on, every aten op's outputs whose storage is new get
the innermost user frame (outside torch, vramguard and installed packages) — factory functions,
parameters built by ``nn.Module`` constructors and intermediates saved by autograd included.
Measured in docs/benchmarks.md ("Creation sites").

No ``torch._dynamo`` import. ``TorchDispatchMode`` wraps a subclass's ``__torch_dispatch__`` in
``torch._disable_dynamo``, whose first call imports ``torch._dynamo``: measured here, about
+100 MiB resident and 1–2 s inside the first block that records sites, which the session then
reported as the block's own. The recorder opts out of that wrapper; only where
``torch._dynamo`` is loaded already (the program uses ``torch.compile``) does ``SiteRecorder()``
give the wrapped variant, so that compiled code never traces into the recorder. (A program that
first imports dynamo inside a recording block gets, for that block, dynamo tracing into the
recorder: a warning and a graph break, not a wrong result.)

What it keeps, and why it stays small:

- One entry per storage, keyed like the census (:func:`storage_key`, the ``StorageImpl``
  address), never per op: an op whose outputs all alias its inputs (views, in-place and
  ``out=`` ops) creates no storage and is skipped before its outputs are even looked at — apart
  from the few that can give a storage its first memory (``resize_``, ``set_``, ``out=``), where
  only a storage that had no memory before the op counts as new.
- An entry is a Python weak reference to the storage's Python object carrying the key and a
  short ``file:line in function`` string. No tensor, storage, frame or traceback is held: the
  frame walk follows ``f_back`` from the op to the first user frame and keeps nothing, and the
  strings are shared (one per distinct site, not per storage).
- Entries leave with their storage. Since torch 2.1 a storage's Python object, once made, lives
  exactly as long as its ``StorageImpl`` (PyObject preservation, as for tensors), so the weak
  reference's callback runs when the storage is freed, before its address can be reused: the
  table holds only storages alive now. Never a ``StorageWeakRef``: the earlier table held one
  per entry and swept every 4096 entries, and each freed storage's pinned ``StorageImpl`` (a
  small C++ object allocated beside the tensors' buffers) stayed until the sweep; measured
  here on 20 forward passes of a small transformer: +20–30 MiB of resident peak and ~+50 % CPU
  time per block from the pins alone (under 100 KiB of them: by all signs a fragmented malloc
  heap; docs/benchmarks.md, "Creation sites").
"""

from __future__ import annotations

import os
import sys
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from vramguard.census._frames import is_library, short_path
from vramguard.census._scan import storage_key

ENV_VAR = "VRAMGUARD_CENSUS_SITES"
# What an op's outputs can be, decided once per op from its schema.
_FRESH = 0  # new tensors (most ops): look at every output
_ALIASES = 1  # views, in-place ops, ops returning nothing: never a new storage, skipped
_GROWS = 2  # aliasing ops that can give a storage its first memory: resize_, set_, out= ops
_GROWING_OPS = frozenset({"aten::resize_", "aten::resize_as_", "aten::set_", "aten::_resize_output_"})
# Views whose schema names no alias (the output shares the input's storage all the same).
_UNMARKED_VIEWS = frozenset({"aten::_unsafe_view"})


def sites_requested() -> bool:
    """True when ``VRAMGUARD_CENSUS_SITES`` asks for creation sites."""
    return os.environ.get(ENV_VAR, "").strip().lower() in ("1", "true", "yes", "on")


class _Entry(weakref.ref[torch.UntypedStorage]):
    """A weak reference to a storage's Python object, with its key and creation site."""

    __slots__ = ("key", "site")

    def __init__(
        self, storage: torch.UntypedStorage, forget: Callable[[_Entry], None], *, key: int, site: str | None
    ) -> None:
        # ``weakref.ref.__new__`` already made the reference from the two positional arguments
        # (it ignores keywords, hence key and site as keywords); its ``__init__`` does nothing.
        self.key = key
        self.site = site


class SiteRecorder(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """Remembers, for each storage first seen as an op's output, the user frame that ran it.

    ``SiteRecorder()`` gives this class when ``torch._dynamo`` is not loaded, else
    :class:`_DynamoSafeSiteRecorder` (see the module doc).
    """

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # Read by TorchDispatchMode.__init_subclass__: True would wrap __torch_dispatch__ in
        # torch._disable_dynamo, whose first call imports torch._dynamo (seconds, tens of MiB).
        return False

    def __new__(cls) -> SiteRecorder:
        if cls is SiteRecorder and "torch._dynamo" in sys.modules:
            cls = _DynamoSafeSiteRecorder
        return super().__new__(cls)

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._sites: dict[int, _Entry] = {}
        sites = self._sites

        def forget(entry: _Entry) -> None:
            # The storage was freed: its address may be reused from now on.
            if sites.get(entry.key) is entry:
                del sites[entry.key]

        # One callback shared by every entry (a bound method would be a new object per entry).
        # It holds the table, not the recorder; ``clear()`` empties that same dict.
        self._forget = forget
        # id(op) -> (op, its kind). Keyed by id: OpOverload hashes in Python, an int in C; the
        # op is kept in the value so that its id cannot be reused.
        self._kinds: dict[int, tuple[Any, int]] = {}
        # (file, function, line) -> the site's text, so each distinct site is one string.
        self._locations: dict[tuple[str, str, int], str] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        known = self._kinds.get(id(func))
        if known is None:
            known = self._kinds[id(func)] = (func, _kind(func))
        kind = known[1]
        if kind == _GROWS:
            return self._grow(func, args, kwargs or {})
        out = func(*args, **(kwargs or {}))
        if kind == _ALIASES:
            return out
        if issubclass(type(out), torch.Tensor):
            self._note(out)
        elif type(out) in (tuple, list):
            self._note_all(out)
        return out

    def _grow(self, func: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        """An aliasing op that may allocate: only a storage with no memory before it (a tensor
        made empty, then ``resize_``d or written with ``out=``) is new here; a buffer from before
        the block, written in place, is not."""
        empty = _memoryless(args, kwargs)
        out = func(*args, **kwargs)
        if empty:
            leaves = out if type(out) in (tuple, list) else (out,)
            for leaf in leaves:
                if issubclass(type(leaf), torch.Tensor):
                    key = storage_key(leaf)
                    if key is not None and key[0] in empty:
                        self._note(leaf)
        return out

    def _note_all(self, outputs: tuple[Any, ...] | list[Any]) -> None:
        for leaf in outputs:
            if issubclass(type(leaf), torch.Tensor):
                self._note(leaf)
            elif type(leaf) in (tuple, list):
                self._note_all(leaf)

    def _note(self, tensor: torch.Tensor) -> None:
        key = storage_key(tensor)
        if key is None or key[0] in self._sites:
            return
        self._sites[key[0]] = _Entry(key[1], self._forget, key=key[0], site=self._user_location())

    def _user_location(self) -> str | None:
        """``file:line in function`` of the innermost user frame, from the op outwards."""
        frame: Any = sys._getframe(1)
        while frame is not None and is_library(frame.f_code.co_filename):
            frame = frame.f_back
        if frame is None:
            return None
        code = frame.f_code
        place = (code.co_filename, getattr(code, "co_qualname", code.co_name), frame.f_lineno)
        del frame  # hold no frame past this point
        text = self._locations.get(place)
        if text is None:
            # short_path (os.path.relpath) is the costly part: once per distinct site.
            text = self._locations[place] = f"{short_path(place[0])}:{place[2]} in {place[1]}"
        return text

    def site_of(self, key: int) -> str | None:
        """Where the storage with this key (see :func:`storage_key`) was created, if recorded."""
        entry = self._sites.get(key)
        return None if entry is None else entry.site

    def clear(self) -> None:
        """Drop every entry (and so every weak reference) and the caches."""
        self._sites.clear()  # the same dict: ``forget`` holds it
        self._kinds = {}
        self._locations = {}

    def entries(self) -> int:
        """Entries held now: one per recorded storage still alive. (Not ``__len__``: a mode
        that is falsy when empty would read as "no mode" to ``if mode:`` checks.)"""
        return len(self._sites)


class _DynamoSafeSiteRecorder(SiteRecorder):  # type: ignore[no-untyped-call]
    """The recorder for a process that loaded ``torch._dynamo``: ``__torch_dispatch__`` runs
    with dynamo off, so code compiled under the mode never traces into the recorder."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return True

    # Defined here, not inherited, so that __init_subclass__ wraps it.
    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        return super().__torch_dispatch__(func, types, args, kwargs)


def _kind(func: Any) -> int:
    """:data:`_FRESH`, :data:`_ALIASES` or :data:`_GROWS`, from the op's schema: an output whose
    schema names an alias (``Tensor(a)``, ``Tensor(a!)``) shares an input's storage."""
    try:
        schema = func._schema
        if schema.name in _GROWING_OPS or any(arg.is_out for arg in schema.arguments):
            return _GROWS
        if schema.name in _UNMARKED_VIEWS:
            return _ALIASES
        return _ALIASES if all(ret.alias_info is not None for ret in schema.returns) else _FRESH
    except Exception:  # not an OpOverload with a schema: look at its outputs
        return _FRESH


def _memoryless(args: Any, kwargs: dict[str, Any]) -> set[int]:
    """Keys of the argument tensors' storages that have no memory yet."""
    found: set[int] = set()
    for arg in (*args, *kwargs.values()):
        for leaf in arg if type(arg) in (tuple, list) else (arg,):
            if issubclass(type(leaf), torch.Tensor):
                try:
                    storage = leaf.untyped_storage()
                    if storage.data_ptr() == 0:
                        found.add(storage._cdata)
                except Exception:  # sparse, nested or fake: no single storage
                    continue
    return found
