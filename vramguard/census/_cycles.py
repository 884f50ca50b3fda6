"""Tensors that only a reference cycle held, freed by the release's ``gc.collect()``.

Between the block's end and the census's final look, a ``gc.callbacks`` hook watches every
storage that survived the block. At a collection's start it names, for the survivors then
alive, the types that refer to them (an instance's ``__dict__`` is named by its owner's type);
at its stop, the survivors that died were freed by the collector: only a cycle held them.
Naming costs at most :data:`MAX_NAMING_SCANS` heap scans per session, and none when nothing
survived the block.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

import torch

from vramguard.census._scan import StorageWeakRef, describe, is_a
from vramguard.core._hooks import defer_interrupt
from vramguard.core._sizes import format_size

MAX_NAMING_SCANS = 2
_NAMED_PER_SCAN = 32


def _type_name(obj: object) -> str:
    if is_a(obj, type):
        return obj.__qualname__
    return type(obj).__qualname__


class GcWatch:
    """Storages that survived a block, watched across the collections of the release."""

    def __init__(self) -> None:
        # key -> (storage ref, bytes, description, one tensor using it)
        self._watched: dict[int, tuple[StorageWeakRef, int, str, weakref.ref[torch.Tensor]]] = {}
        self._types: dict[int, list[str]] = {}
        self._alive_at_start: list[int] = []
        self._freed: list[int] = []
        self._scans_left = MAX_NAMING_SCANS
        self._installed = False

    def watch(self, key: int, storage: torch.UntypedStorage, tensor: torch.Tensor) -> None:
        """Watch a storage that survived the block (``tensor`` uses it)."""
        if key not in self._watched:
            self._watched[key] = (StorageWeakRef(storage), storage.nbytes(), describe(tensor), weakref.ref(tensor))

    def start(self) -> None:
        if self._watched and not self._installed:
            gc.callbacks.append(self._on_gc)
            self._installed = True

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        # A Ctrl-C landing here would be dropped as unraisable: kept for the session's exit.
        try:
            if phase == "start":
                self._alive_at_start = [k for k, v in self._watched.items() if not v[0].expired()]
                if self._scans_left > 0 and self._alive_at_start:
                    self._name_referrers()
            elif phase == "stop":
                self._freed += [k for k in self._alive_at_start if self._watched[k][0].expired()]
                self._alive_at_start = []
        except (KeyboardInterrupt, SystemExit) as error:
            defer_interrupt(error)

    def _name_referrers(self) -> None:
        """The types referring to the watched tensors still alive (bounded heap scans)."""
        pending = [k for k in self._alive_at_start if k not in self._types][:_NAMED_PER_SCAN]
        pairs = [(t, k) for k in pending if (t := self._watched[k][3]()) is not None]
        batch = tuple(t for t, _ in pairs)
        # Keyed from the pairs: a watched tensor that died (its storage lives on in a view) is
        # skipped, never shifts the keys (zip(batch, pending) raised inside the gc callback).
        by_id = {id(t): k for t, k in pairs}
        del pairs
        if not batch:
            return
        self._scans_left -= 1
        dicts: dict[int, list[int]] = {}
        dict_objs: list[object] = []
        for referrer in gc.get_referrers(*batch):
            if referrer is batch or referrer is dict_objs:
                continue
            keys = [by_id[id(x)] for x in gc.get_referents(referrer) if id(x) in by_id]
            for key in keys:
                if type(referrer) is dict and self._scans_left > 0:
                    dicts.setdefault(id(referrer), []).append(key)
                    dict_objs.append(referrer)
                else:
                    self._types.setdefault(key, []).append(_type_name(referrer))
        del batch
        if not dict_objs:
            return
        self._scans_left -= 1
        owners = tuple(dict_objs)
        named: set[int] = set()
        for owner in gc.get_referrers(*owners):
            if owner is owners or owner is dict_objs:
                continue
            for d in gc.get_referents(owner):
                if id(d) in dicts and getattr(owner, "__dict__", None) is d:
                    named.add(id(d))
                    for key in dicts[id(d)]:
                        self._types.setdefault(key, []).append(_type_name(owner))
        for d_id, keys in dicts.items():
            if d_id not in named:
                for key in keys:
                    self._types.setdefault(key, []).append("dict")
        del owners, dict_objs

    def stop(self) -> tuple[str, ...]:
        """Stop watching; one line per storage the collector freed. Drops every reference."""
        if self._installed and self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        self._installed = False
        notes = []
        for key in dict.fromkeys(self._freed):
            _, nbytes, description, _ = self._watched[key]
            types = ", ".join(dict.fromkeys(self._types.get(key, ()))) or "objects not named"
            notes.append(
                f"gc.collect() freed {format_size(nbytes)} ({description}) that only a reference "
                f"cycle held, through {types}"
            )
        self._watched, self._types, self._freed, self._alive_at_start = {}, {}, [], []
        return tuple(notes)
