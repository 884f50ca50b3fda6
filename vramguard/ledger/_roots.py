"""The owners the program's own globals reach in a few steps, found walking down from them.

The holder search climbs from each owner to a root, one heap scan per level (each scan visits
every object the collector tracks: ~0.7x a bare ``gc.get_objects()``). Most owners a ledger
meets are held close to the program's own names: ``MODEL``, ``PIPE['model']``,
``app.state.optimizer``, a list of cached tensors in a global, a local of a live frame. So
before the climb, the ledger walks *down* from the globals of the program's own modules
(``__main__`` and every module whose file is not the standard library's or an installed
package's), through dicts, lists, tuples and plain objects' attributes, a few levels deep and
bounded by counts; each owner found there gets its holder path without a scan. What the walk
down does not reach (an owner held only by a library's cache, a closure, an autograd graph)
is climbed to as before: the answer is the same path either way, only its cost differs.
"""

from __future__ import annotations

import gc
import sys
import types
from collections.abc import Iterable

import torch

from vramguard.census._frames import is_library
from vramguard.census._holders import HolderSearch

DEPTH = 4
"""Steps below a module's globals: ``PLANTED[2][0]`` is two, ``app.state.cache['k']`` three."""
FAN_OUT = 256
"""A container with more items is not entered (a heap of a million rows is not walked)."""
VISITS = 50_000
"""Objects visited in all: the walk's cost is bounded whatever the program holds."""

_LEAVES = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType, torch.Tensor)


def _own_globals() -> list[dict[str, object]]:
    """The globals of ``__main__`` first, then of every module whose file is the program's."""
    found: list[dict[str, object]] = []
    for name, module in list(sys.modules.items()):
        namespace = getattr(module, "__dict__", None)
        filename = getattr(module, "__file__", None)
        if type(namespace) is not dict:
            continue
        if name == "__main__":
            found.insert(0, namespace)
        elif type(filename) is str and not is_library(filename):
            found.append(namespace)
    return found


def _children(obj: object) -> list[object] | None:
    """What the walk goes down to from ``obj``; None where it stops (a leaf, an owner, too many).
    A plain object's attributes come from ``gc.get_referents`` (what a scan would see), never
    from ``__dict__``, which would build a dict the object did not have."""
    kind = type(obj)
    if kind is dict or kind is list or kind is tuple:
        assert isinstance(obj, (dict, list, tuple))
        if len(obj) > FAN_OUT:
            return None
        return list(obj.values()) if isinstance(obj, dict) else list(obj)
    if issubclass(kind, _LEAVES) or issubclass(kind, (torch.nn.Module, torch.optim.Optimizer)):
        return None
    if not getattr(kind, "__dictoffset__", 0) or kind.__module__ == "builtins":
        return None  # not an instance of a class of the program's or a library's
    children = [child for child in gc.get_referents(obj) if child is not kind]
    return children if len(children) <= FAN_OUT else None


def resolve_from_globals(search: HolderSearch, targets: Iterable[object]) -> int:
    """Give each target the program's globals reach (see the module's docstring) its referrer
    chain in ``search``, so that the climb needs no scan for it; returns how many were found."""
    wanted = {id(t): t for t in targets}
    found = _from_globals(search, wanted)
    # Then the locals of live frames (the frame index names them): after the globals, whose
    # names a holder path prefers.
    for target in list(wanted.values()):
        if search.held_by_local(target):
            search.found_without_scan(search.add(target), [])
            found += 1
    return found


def _from_globals(search: HolderSearch, wanted: dict[int, object]) -> int:
    """The walk down from the program's globals; ``wanted`` loses what it finds."""
    found = 0
    parent_of: dict[int, object] = {}
    visits = 0
    for namespace in _own_globals():
        level: list[object] = [namespace]
        for _ in range(DEPTH):
            below: list[object] = []
            for obj in level:
                children = _children(obj)
                if children is None:
                    continue
                for child in children:
                    key = id(child)
                    if key in parent_of or child is namespace:
                        continue
                    parent_of[key] = obj
                    visits += 1
                    if key in wanted:
                        found += _adopt(search, child, parent_of)
                        del wanted[key]
                        if not wanted:
                            return found
                    else:
                        below.append(child)
            if visits >= VISITS:
                return found
            level = below
        level.clear()
    return found


def _adopt(search: HolderSearch, target: object, parent_of: dict[int, object]) -> int:
    """Record the chain from ``target`` up to the module's globals as found referrers."""
    child = target
    while id(child) in parent_of:
        parent = parent_of[id(child)]
        index = search.add(child)
        search.found_without_scan(index, [search.add(parent)])
        if search.is_root(search.add(parent)):
            break
        child = parent
    return 1
