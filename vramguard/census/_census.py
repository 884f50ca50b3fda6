"""The census of one session: which tensors the block created, which survived, who holds them.

Mechanism: the heap epoch (:mod:`vramguard.census._epoch`), not a dispatch mode. ``start()``
joins the epoch: objects older than it are out of sight of the collector's inventories, so
``stop()``, at the block's end, lists the tensors created since at the cost of the block's own
objects (a census nested in another's epoch also notes the storages alive at its entry). That
catches every tensor that is a Python object — factory functions, ``nn.Module`` parameters
wrapped after their op ran, tensors made under ``inference_mode`` or inside a forward — and
costs nothing per op. Gradients that ``backward()`` wrote into a new parameter (no Python
object until ``.grad`` is read) are read from the parameters; sparse tensors count their values
and indices. Tensors only C++ holds (saved for backward) are found from the surviving outputs'
autograd graphs. Views share a storage: bytes are counted per storage, once. On the host, numpy
arrays the block allocated and kept after the tensors wrapping their memory were dropped are
leaks too (:mod:`vramguard.census._converted`).

The session's release asks :meth:`Census.survivors` after collecting the block's objects: when
nothing the block created is alive, there is nothing to judge, and no full collection or heap
pass is paid. Otherwise :meth:`Census.settle` thaws the epoch, drops the survivors that share a
storage with an older tensor (a new view of an old weight is no new memory), and walks the
holders; only the survivors that no global, class or live frame reaches need the full
``gc.collect()`` (:attr:`Census.needs_full_collection`). ``finish()`` then names the leaks.

The census holds the tensors it tracks only through weak references between its steps, and
``finish()`` drops everything.
"""

from __future__ import annotations

import gc
import sys
import weakref
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from dataclasses import replace

import torch

from vramguard.census._allocator import BlockDiff
from vramguard.census._autograd import LEAF, GraphBudget, graph_tensors
from vramguard.census._converted import ConvertedArrays, describe_array
from vramguard.census._cycles import GcWatch
from vramguard.census._epoch import EPOCH
from vramguard.census._holders import Holders, HolderSearch, SearchBounds
from vramguard.census._judge import Judge, Survivor, grad_of
from vramguard.census._order import OrderRecorder
from vramguard.census._owners import GRAPH
from vramguard.census._scan import StorageWeakRef, describe, heap_tensors, on_device
from vramguard.census._sites import SiteRecorder, sites_requested
from vramguard.census._walk import walk
from vramguard.core._records import Leak, OrderViolation
from vramguard.core._tensors import storages_of, tensor_key, tensors_in
from vramguard.probes import is_host, uncovered


class Census:
    """Tracks the tensors a session's block creates on ``device``.

    ``start()`` at entry; ``stop(kept)`` when the block ends (before the release);
    ``survivors()`` and ``settle(kept)`` during the release; ``finish(kept)`` after it: the leaks
    and the release-order violations. ``cycles`` then holds a line per storage that only a
    reference cycle kept, freed by the release's collection. ``sites`` (default: the
    ``VRAMGUARD_CENSUS_SITES`` variable) records where each storage was created, at a cost per op.
    """

    # Defaults a census replaces rather than changes in place: class attributes, so that a
    # session per inference step does not set a dozen of them at every step.
    cycles: tuple[str, ...] = ()
    needs_full_collection = False
    unattributed: tuple[str, ...] = ()
    took_inventory = False
    """Whether ``start()`` listed the tensors alive (a heap pass, whose lists the session's
    resident peak must not count): not for the census that opened the heap epoch."""
    _sites: SiteRecorder | None = None
    _in_epoch = False
    _entry: dict[int, StorageWeakRef] = {}  # noqa: RUF012 - replaced, never changed in place
    _violations: tuple[OrderViolation, ...] = ()
    _hard: frozenset[int] | set[int] = frozenset()
    _soft: frozenset[int] | set[int] = frozenset()
    _settled: dict[int, Holders] | None = None
    _bytes: dict[int, int] = {}  # noqa: RUF012 - replaced, never changed in place
    _graph_only: dict[int, str] = {}  # noqa: RUF012 - replaced, never changed in place
    _blocks: BlockDiff | None = None
    _arrays: ConvertedArrays | None = None

    def __init__(
        self,
        device: torch.device,
        strict: bool = False,
        *,
        sites: bool | None = None,
        bounds: SearchBounds | None = None,
    ) -> None:
        self.device = device
        self.strict = strict
        self.bounds = bounds or SearchBounds()
        self._sites_wanted = sites_requested() if sites is None else sites
        self._order = OrderRecorder(device)
        self._survivors: list[Survivor] = []
        self._watch = GcWatch()
        self._ptrs: dict[int, int] = {}
        self._state = "new"

    # -- entry and the block's end ----------------------------------------------------------
    def start(self) -> None:
        """Join the heap epoch (or take a full inventory where it cannot be used); record
        ``empty_cache`` calls from here on."""
        joined = EPOCH.join()
        self._in_epoch = joined is not None
        try:
            if not is_host(self.device):  # the host has no block list
                self._blocks = BlockDiff(self.device)
            # The census that opened the epoch has seen nothing created since: no inventory.
            self.took_inventory = not joined
            self._entry = {} if joined else self._inventory()
            self._order.start()
            if is_host(self.device) and "numpy" in sys.modules:  # no numpy loaded: no array to keep
                self._arrays = ConvertedArrays()
                self._arrays.start()
        except BaseException:
            self._leave()
            raise
        if self._sites_wanted:
            self._sites = SiteRecorder()
            self._sites.__enter__()  # type: ignore[no-untyped-call]
        self._state = "running"

    def _visible_tensors(self) -> list[torch.Tensor]:
        """The tensors created since the epoch began, or every tensor where it is not used."""
        return EPOCH.new_tensors() if self._in_epoch else heap_tensors()

    def _inventory(self) -> dict[int, StorageWeakRef]:
        """Storages alive now among the tensors this census can see (none, for the census that
        opened the epoch: nothing was created since)."""
        found: dict[int, StorageWeakRef] = {}
        for tensor in self._visible_tensors():
            if on_device(tensor, self.device):
                key = tensor_key(tensor)
                if key is not None and key[0] not in found:
                    found[key[0]] = StorageWeakRef(key[2])
        return found

    def stop(self, kept: list[object] | None = None) -> None:
        """The block ended: judge the ``empty_cache`` calls, note the tensors it created that
        are still alive."""
        if self._state != "running":
            return
        self._state = "stopped"
        if self._sites is not None:
            self._sites.__exit__(None, None, None)  # type: ignore[no-untyped-call]
        self._violations = self._order.stop()
        if self._arrays is not None:
            self._arrays.stop()
        if kept:
            self._hard, self._soft = _kept_keys(kept, self.device)
        hard = self._hard
        seen: set[int] = set()
        tensors = [t for t in self._visible_tensors() if on_device(t, self.device)]
        if not tensors:  # the block left no tensor: nothing to note, nothing to watch
            return
        listed = {id(t) for t in tensors}
        # A sparse tensor counts its indices with its values: tensors viewing those index
        # storages (the components it was built from) are part of it, not leaks of their own.
        parts = {key for t in tensors if t.layout != torch.strided for key, _ in storages_of(t)[1:]}
        parameter = torch.nn.Parameter
        for tensor in tensors:
            self._note(tensor, hard, seen, parts)
            if issubclass(type(tensor), parameter):
                grad = grad_of(tensor)  # written by backward() from C++: no Python object until read
                if grad is not None and id(grad) not in listed and on_device(grad, self.device):
                    self._note(grad, hard, seen, parts)
                del grad
        del tensors
        self._watch.start()

    def _note(
        self, tensor: torch.Tensor, hard: AbstractSet[int], seen: set[int], parts: set[int] | None = None
    ) -> None:
        key = tensor_key(tensor)
        if key is None or key[0] in self._entry or key[0] in hard or (parts and key[0] in parts):
            return
        self._survivors.append((key[0], key[1], weakref.ref(tensor), StorageWeakRef(key[2])))
        self._ptrs.setdefault(key[0], key[2].data_ptr())
        if key[0] not in seen:
            seen.add(key[0])
            self._watch.watch(key[0], key[2], tensor)

    # -- during the release -----------------------------------------------------------------
    def collect_block(self) -> int:
        """``gc.collect()`` of the objects created since the epoch began (every object when
        this census could not use the epoch). Returns the unreachable objects found."""
        return EPOCH.collect_new() if self._in_epoch else gc.collect()

    def holders_of(self, objects: list[object], kept: list[object]) -> list[tuple[str, ...]]:
        """Who holds each of ``objects`` (the owned objects still alive after the release)."""
        with EPOCH.thawed(), collector_paused():
            search = HolderSearch(kept, self.bounds)
            try:
                for obj in objects:
                    search.add_group([search.add(obj)])
                search.index_heap()
                found = walk(search)
            finally:
                search.close()
        return [h.paths if h.rooted else () for h in found]

    def survivors(self) -> int:
        """How many storages the block created are still alive (cheap: weak references)."""
        return len({key for key, _, _, storage in self._survivors if not storage.expired()})

    def settle(self, kept: list[object]) -> None:
        """Some storages survived the collection of the block's objects: see the whole heap,
        drop those an older tensor shares, and walk the holders of the rest. Sets
        :attr:`needs_full_collection` when some are reachable from no root."""
        if self._state != "stopped" or self._settled is not None:
            return
        with collector_paused(), EPOCH.lazily_thawed() as thaw:
            judge = Judge(self.device, self.bounds, self._entry, self._in_epoch)
            holders = judge.run(self._survivors, kept, thaw if self._in_epoch and EPOCH.frozen else None)
            self._bytes = judge.bytes
            self._graph_only = judge.graph_only
        self._settled = holders
        self.needs_full_collection = any(not h.rooted and not h.kept for h in holders.values())

    # -- the end ----------------------------------------------------------------------------
    def abort(self) -> None:
        """Undo everything ``start``/``stop`` installed, without judging: for a session whose
        entry or exit failed part-way. Safe to call in any state, and more than once."""
        if self._state == "running":
            if self._sites is not None:
                self._sites.__exit__(None, None, None)  # type: ignore[no-untyped-call]
            self._order.stop()
            if self._arrays is not None:
                self._arrays.stop()
        elif self._state == "stopped":
            self._watch.stop()
        if self._state in ("running", "stopped"):
            self._leave()
        self._state = "finished"
        self._survivors, self._entry, self._violations, self._settled = [], {}, (), None
        self._sites = None
        self._arrays = None

    def _leave(self) -> None:
        if self._in_epoch:
            self._in_epoch = False
            EPOCH.leave()

    def finish(self, kept: list[object]) -> tuple[tuple[Leak, ...], tuple[OrderViolation, ...]]:
        """After the release: every storage the block created, still alive and not kept, is a
        leak (largest first). Drops everything the census held and leaves the epoch."""
        collecting = gc.isenabled()
        gc.disable()  # judged as the release left them (collector_paused, inline: every session)
        try:
            self.stop(kept)
            self.cycles = self._watch.stop()
            violations, self._violations = self._violations, ()
            leaks: list[Leak] = []
            if self._blocks is not None:
                self._from_allocator(kept)
            if self.survivors():
                if self._settled is None:  # no release ran: judge now
                    self.settle(kept)
                leaks = self._leaks(self._settled or {})
            leaks += self._array_leaks(kept)
        finally:
            if collecting:
                gc.enable()
            self._state = "finished"
            self._leave()
            self._survivors, self._entry, self._settled, self._hard = [], {}, None, frozenset()
            self._graph_only = {}
            self._blocks, self._ptrs = None, {}
            if self._arrays is not None:
                self._arrays.stop()
                self._arrays.clear()
                self._arrays = None
            if self._sites is not None:
                self._sites.clear()
                self._sites = None
        leaks.sort(key=lambda leak: -leak.nbytes)
        return tuple(leaks), violations

    def _array_leaks(self, kept: list[object]) -> list[Leak]:
        """numpy arrays the block allocated, kept after the tensors wrapping them were dropped
        (see :mod:`._converted`): one leak per array owning the memory, its holders searched
        like a tensor's (through the views converted from it too)."""
        groups = self._arrays.kept_arrays() if self._arrays is not None else []
        if not groups:
            return []
        with EPOCH.thawed(), collector_paused():
            search = HolderSearch(kept, self.bounds)
            try:
                for arrays in groups:
                    search.add_group([search.add(array) for array in arrays])
                search.index_heap()
                found = walk(search)
            finally:
                search.close()
        leaks = [
            Leak(
                nbytes=int(arrays[0].nbytes),
                description=describe_array(arrays[0]),
                created_at=None,
                holders=holders.paths,
                group=holders.group,
                owner_kind=holders.owner_kind,
            )
            for arrays, holders in zip(groups, found, strict=True)
            if not holders.kept and not holders.foreign
        ]
        groups.clear()
        return leaks

    def _site_of(self, key: int) -> str | None:
        """Where the storage was made: the site recorder's, else the allocator block's stack
        (CUDA with the memory history on)."""
        site = None if self._sites is None else self._sites.site_of(key)
        if site is None and self._blocks is not None:
            site = self._blocks.site_of(self._ptrs.get(key, -1))
        return site

    def _from_allocator(self, kept: list[object]) -> None:
        """CUDA: new memory no tensor the census saw accounts for (see :mod:`._allocator`)."""
        blocks = self._blocks
        if blocks is None or not blocks.active:
            return
        pointers = set(self._alive_pointers())
        for tensor in tensors_in(kept):
            key = tensor_key(tensor) if on_device(tensor, self.device) else None
            if key is not None:
                pointers.add(key[2].data_ptr())
        left = blocks.unaccounted(pointers)
        if not left:
            return
        hard = self._hard  # the kept storages, as stop() found them
        found_before = len(self._survivors)
        seen: set[int] = set()
        found = blocks.tensors_in(left)
        for tensor in found:
            self._note(tensor, hard, seen)
        found.clear()
        if len(self._survivors) > found_before:
            self._settled = None  # judge again, with the tensors found in the blocks
        self.unattributed = blocks.note(uncovered(left, self._alive_pointers()))

    def _alive_pointers(self) -> list[int]:
        return [
            self._ptrs[key] for key, _, _, storage in self._survivors if not storage.expired() and key in self._ptrs
        ]

    def _leaks(self, holders: dict[int, Holders]) -> list[Leak]:
        described: dict[int, tuple[int, str, int]] = {}  # key -> (views, the widest's description, its width)
        for key, _, ref, storage in self._survivors:
            tensor = ref()
            if tensor is None or storage.expired() or key not in holders:
                continue
            views, description, width = described.get(key, (0, "", -1))
            if tensor.numel() > width:
                description, width = describe(tensor), tensor.numel()
            described[key] = (views + 1, description, width)
            del tensor
        for key, description in self._graph_only.items():
            if key not in described and key in holders:
                described[key] = (1, description, 0)  # only its node holds it: no survivor to read
        leaks = []
        for key, (views, description, _) in described.items():
            found = holders[key]
            if found.kept or found.foreign or (key in self._soft and not found.rooted):
                # Kept; held only by another thread or task (theirs, made while the block ran);
                # or a parameter only the kept output's graph still holds.
                continue
            leaks.append(
                Leak(
                    nbytes=self._bytes.get(key, 0),
                    description=description + (f" (+{views - 1} views)" if views > 1 else ""),
                    created_at=self._site_of(key),
                    holders=found.paths,
                    group=found.group,
                    owner_kind=found.owner_kind,
                )
            )
        return _count_saved(leaks)


def _count_saved(leaks: list[Leak]) -> list[Leak]:
    """An output's graph group says how many tensors the graph saved: the group's leaks but
    the output itself (whose first holder is the group's own path)."""
    saved: dict[str, int] = {}
    for leak in leaks:
        if leak.owner_kind == GRAPH and leak.group is not None and leak.holders[:1] != (leak.group,):
            saved[leak.group] = saved.get(leak.group, 0) + 1
    return [
        replace(leak, owner_kind=f"{GRAPH}, {saved[leak.group]} saved tensor{'s' * (saved[leak.group] != 1)}")
        if leak.owner_kind == GRAPH and leak.group in saved
        else leak
        for leak in leaks
    ]


@contextmanager
def collector_paused() -> Iterator[None]:
    """No automatic collection while the census holds survivors for a walk: it would free the
    cycles that hold them (a leak when the release did not collect) and leave only the walk."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _kept_keys(kept: list[object], device: torch.device) -> tuple[set[int], set[int]]:
    """(hard, soft): storages the kept objects hold — their own and the activations their
    autograd graphs saved — and the leaves those graphs accumulate into (a model's parameters):
    those are kept only when nothing else still holds them."""
    hard: set[int] = set()
    soft: set[int] = set()
    if not kept:
        return hard, soft
    budget = GraphBudget()
    for tensor in tensors_in(kept):
        if not on_device(tensor, device):
            continue
        key = tensor_key(tensor)
        if key is not None:
            hard.add(key[0])
        for holder, saved in graph_tensors(tensor, budget):
            saved_key = tensor_key(saved)
            if saved_key is not None:
                (soft if holder == LEAF else hard).add(saved_key[0])
    return hard - soft, soft
