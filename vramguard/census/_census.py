"""The census of one session: which tensors the block created, which survived, who holds them.

Mechanism: a diff of the heap, not a dispatch mode. ``start()`` takes weak references to every
storage alive on the device (one ``gc.get_objects()`` pass); ``stop()``, at the block's end,
finds the tensors whose storage was not alive at entry (a second pass). That catches every
tensor that is a Python object — factory functions, ``nn.Module`` parameters wrapped after
their op ran, tensors made under ``inference_mode`` or inside a forward — and costs nothing
per op, where a ``TorchDispatchMode`` cost +90 % on a small transformer's training step (see
:mod:`vramguard.census._sites`, the opt-in mode that adds creation sites). Tensors that only
C++ holds (saved for backward, never Python objects) are found from the surviving outputs'
autograd graphs at ``finish()``. Views share a storage: bytes are counted per storage, once.

Cost (see ``benchmarks/census.py``): entry and exit each about one ``gc.get_objects()`` pass
plus a filter, ~10–15 ms per 100k live objects here; the holder walk only runs when something
leaked and is bounded by :mod:`vramguard.census._holders`. The census holds the tensors it
tracks only through weak references, and ``finish()`` drops everything.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

import torch

from vramguard.census._autograd import GraphBudget, graph_tensors
from vramguard.census._cycles import GcWatch
from vramguard.census._holders import HolderSearch
from vramguard.census._order import OrderRecorder
from vramguard.census._scan import StorageWeakRef, describe, heap_tensors, live_storages, on_device, storage_key
from vramguard.census._sites import SiteRecorder, sites_requested
from vramguard.core._records import Leak, OrderViolation
from vramguard.core._tensors import tensors_in


class Census:
    """Tracks the tensors a session's block creates on ``device``.

    ``start()`` at entry, ``stop(kept)`` when the block ends (before the release),
    ``finish(kept)`` after the release: returns the leaks and the release-order violations.
    ``cycles`` then holds a line per storage that only a reference cycle kept, freed by the
    release's ``gc.collect()``. ``sites`` (default: the ``VRAMGUARD_CENSUS_SITES`` variable)
    records where each storage was created, at a cost per op.
    """

    def __init__(self, device: torch.device, strict: bool = False, *, sites: bool | None = None) -> None:
        self.device = device
        self.strict = strict
        self.cycles: tuple[str, ...] = ()
        self._sites_wanted = sites_requested() if sites is None else sites
        self._sites: SiteRecorder | None = None
        self._entry: dict[int, tuple[StorageWeakRef, int]] = {}
        self._order = OrderRecorder(device)
        self._violations: tuple[OrderViolation, ...] = ()
        self._survivors: list[weakref.ref[torch.Tensor]] = []
        self._watch = GcWatch()
        self._kept_keys: set[int] | None = None
        self._state = "new"

    def start(self) -> None:
        """Remember the storages alive now; record ``empty_cache`` calls from here on."""
        self._entry = live_storages(self.device)
        self._order.start()
        if self._sites_wanted:
            self._sites = SiteRecorder()
            self._sites.__enter__()  # type: ignore[no-untyped-call]
        self._state = "running"

    def stop(self, kept: list[object] | None = None) -> None:
        """The block ended: judge the ``empty_cache`` calls, note the tensors still alive."""
        if self._state != "running":
            return
        self._state = "stopped"
        if self._sites is not None:
            self._sites.__exit__(None, None, None)  # type: ignore[no-untyped-call]
        self._violations = self._order.stop()
        kept_keys = _kept_keys(kept or [], self.device)
        if kept is not None:
            self._kept_keys = kept_keys
        for tensor in heap_tensors():
            if not on_device(tensor, self.device):
                continue
            key = storage_key(tensor)
            if key is None or key[0] in self._entry or key[0] in kept_keys:
                continue
            self._survivors.append(weakref.ref(tensor))
            self._watch.watch(key[0], key[1], tensor)
        self._watch.start()

    def abort(self) -> None:
        """Undo everything ``start``/``stop`` installed, without judging: for a session whose
        entry or exit failed part-way. Safe to call in any state, and more than once."""
        if self._state == "running":
            if self._sites is not None:
                self._sites.__exit__(None, None, None)  # type: ignore[no-untyped-call]
            self._order.stop()
        elif self._state == "stopped":
            self._watch.stop()
        self._state = "finished"
        self._survivors, self._entry, self._kept_keys, self._violations = [], {}, None, ()
        self._sites = None

    def finish(self, kept: list[object]) -> tuple[tuple[Leak, ...], tuple[OrderViolation, ...]]:
        """After the release: every tensor created in the block, still alive and not kept,
        is a leak (one per storage, largest first). Drops everything the census held."""
        self.stop(kept)
        self._state = "finished"
        self.cycles = self._watch.stop()
        violations, self._violations = self._violations, ()
        search = HolderSearch(kept)
        # No automatic collection while the walk holds survivors: it would free the cycles
        # that hold them (a leak when the release did not collect) and leave only the walk.
        collecting = gc.isenabled()
        gc.disable()
        try:
            groups = self._collect(search, kept)
            leaks = self._leaks(search, groups) if groups else []
        finally:
            search.close()
            if collecting:
                gc.enable()
            self._survivors, self._entry, self._kept_keys = [], {}, None
            if self._sites is not None:
                self._sites.clear()
                self._sites = None
        leaks.sort(key=lambda leak: -leak.nbytes)
        return tuple(leaks), violations

    def _collect(self, search: HolderSearch, kept: list[object]) -> dict[int, list[int]]:
        """Storage key -> the walk indexes of the surviving tensors using it (leaks only)."""
        kept_keys = self._kept_keys if self._kept_keys is not None else _kept_keys(kept, self.device)
        groups: dict[int, list[int]] = {}
        for ref in self._survivors:
            tensor = ref()
            if tensor is None:
                continue
            key = storage_key(tensor)
            if key is not None and key[0] not in kept_keys:
                groups.setdefault(key[0], []).append(search.add(tensor))
            del tensor
        self._survivors = []
        budget = GraphBudget()
        for outputs in list(groups.values()):
            for out_index in list(outputs):
                for holder, saved in graph_tensors(search.objs[out_index], budget):  # type: ignore[arg-type]
                    self._add_saved(search, groups, kept_keys, out_index, holder, saved)
        return groups

    def _add_saved(
        self,
        search: HolderSearch,
        groups: dict[int, list[int]],
        kept_keys: set[int],
        out_index: int,
        holder: str,
        saved: torch.Tensor,
    ) -> None:
        if not on_device(saved, self.device):
            return
        key = storage_key(saved)
        if key is None or key[0] in self._entry or key[0] in kept_keys:
            return
        out_key = storage_key(search.objs[out_index])  # type: ignore[arg-type]
        if out_key is not None and out_key[0] == key[0]:
            return  # the output saved itself (exp, sigmoid): no new holder
        members = groups.setdefault(key[0], [])
        objs = search.objs
        same = next((i for i in members if objs[i] is saved), None)
        if same is None:
            same = search.add(saved)
            members.append(same)
        search.add_edge(same, out_index, "saved", holder)

    def _leaks(self, search: HolderSearch, groups: dict[int, list[int]]) -> list[Leak]:
        order = sorted(groups, key=lambda k: -_nbytes(search.objs[groups[k][0]]))  # type: ignore[arg-type]
        numbers = {key: search.add_group(groups[key]) for key in order}
        search.index_heap()
        found = search.run()
        leaks = []
        for key in order:
            holders = found[numbers[key]]
            if holders.kept:
                continue
            members: list[Any] = [search.objs[i] for i in groups[key]]
            widest = max(members, key=lambda t: t.numel())
            leaks.append(
                Leak(
                    nbytes=_nbytes(widest),
                    description=describe(widest) + (f" (+{len(members) - 1} views)" if len(members) > 1 else ""),
                    created_at=None if self._sites is None else self._sites.site_of(key),
                    holders=holders.paths,
                )
            )
            del members, widest
        return leaks


def _nbytes(tensor: torch.Tensor) -> int:
    key = storage_key(tensor)
    return 0 if key is None else key[1].nbytes()


def _kept_keys(kept: list[object], device: torch.device) -> set[int]:
    """Storages reachable from the kept objects, their autograd graphs included."""
    keys: set[int] = set()
    budget = GraphBudget()
    for tensor in tensors_in(kept):
        if not on_device(tensor, device):
            continue
        key = storage_key(tensor)
        if key is not None:
            keys.add(key[0])
        for _, saved in graph_tensors(tensor, budget):
            saved_key = storage_key(saved)
            if saved_key is not None:
                keys.add(saved_key[0])
    return keys
