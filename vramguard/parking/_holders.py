"""Who else holds a parked module's storages: the census names them before anything moves.

A tensor outside the module that shares a storage with it (a view kept in a list, a detached
copy held by a global) would keep the memory alive after the park; parking anyway would free
nothing and say it did. So the park looks first: every tensor on the heap that shares one of
the storages, named by the census's holder search, and storages held where Python cannot see
(native code, a raw storage object) found by their reference counts.
"""

from __future__ import annotations

import sys

import torch

from vramguard.census._census import collector_paused
from vramguard.census._epoch import EPOCH
from vramguard.census._holders import HolderSearch, SearchBounds
from vramguard.census._scan import describe, heap_tensors
from vramguard.census._walk import walk
from vramguard.parking._layout import Layout


def _use_count(storage: torch.UntypedStorage) -> int | None:
    count = getattr(torch._C, "_storage_Use_Count", None)
    return None if count is None else int(count(storage._cdata))


def _storage_refcount(storage: torch.UntypedStorage) -> int:
    return sys.getrefcount(storage)


def _excess(layout: Layout, own_count: dict[int, int]) -> bool:
    """Whether any storage has more references than the modules' tensors and its Python object,
    or its Python object more references than a storage nobody else holds."""
    probe = torch.empty(1)
    storage = probe.untyped_storage()
    baseline = _storage_refcount(storage)
    del storage, probe
    seen: set[int] = set()
    for tensor in layout.tensors:
        storage = tensor.untyped_storage()
        address = storage._cdata
        if address in own_count and address not in seen:
            seen.add(address)
            count = _use_count(storage)
            if count is None or count > own_count[address] + 1 or _storage_refcount(storage) > baseline:
                return True
        del storage
    return False


def foreign_holders(layout: Layout) -> tuple[str, ...]:
    """One line per outside holder of the layout's storages; empty when only the modules hold them."""
    ours = {id(t) for t in layout.tensors}
    own_count: dict[int, int] = {}
    for tensor, slot in zip(layout.tensors, layout.slots, strict=True):
        if slot.storage >= 0:
            address = tensor.untyped_storage()._cdata
            own_count[address] = own_count.get(address, 0) + 1
    if not _excess(layout, own_count):
        # Every tensor holds its storage once: no reference beyond the modules' own tensors means
        # no holder at all, and the heap scan (a pass over every object) is not needed.
        return ()
    foreign_count: dict[int, int] = {}
    with EPOCH.thawed(), collector_paused():
        # The foreign tensors live only in the search's own list (which its scans ignore), never
        # in a local of this frame: a live frame's local would be named as their holder.
        search = HolderSearch(object(), SearchBounds())
        labels: list[str] = []
        found = heap_tensors()
        for index in range(len(found)):
            if id(found[index]) in ours or found[index].layout != torch.strided or found[index].is_meta:
                continue
            try:
                address = found[index].untyped_storage()._cdata
            except Exception:
                continue  # a tensor without a storage cannot hold ours
            if address in own_count:
                labels.append(describe(found[index]))
                search.add_group([search.add(found[index])])
                foreign_count[address] = foreign_count.get(address, 0) + 1
        del found
        named = _named(search, labels)
    # Each tensor object holds its storage once; more references than the modules' tensors and
    # the foreign ones found above mean a holder Python cannot see (autograd's saved tensors).
    # torch keeps one Python object per storage: a holder of that object (``w.untyped_storage()``
    # kept somewhere) shows in its reference count, against a storage nobody else holds.
    probe = torch.empty(1)
    storage = probe.untyped_storage()
    baseline = _storage_refcount(storage)  # the same pattern as below: one local name
    del storage, probe
    unseen = 0
    for tensor in layout.tensors:
        storage = tensor.untyped_storage()
        address = storage._cdata
        if address in own_count:
            count = _use_count(storage)
            impls = own_count.pop(address) + foreign_count.get(address, 0)
            if (count is not None and count > impls + 1) or _storage_refcount(storage) > baseline:
                unseen += 1
        del storage
    if unseen:
        where = "saved tensors of a live autograd graph, a storage object, native code"
        named += (f"{unseen} storage(s) also held outside Python's view ({where})",)
    return named


def _named(search: HolderSearch, labels: list[str]) -> tuple[str, ...]:
    """``'<tensor> held by <path>'`` for each group of ``search``, through the census's holder walk."""
    if not labels:
        search.close()
        return ()
    try:
        search.index_heap()
        found = walk(search)
    finally:
        search.close()
    lines = [
        f"{label} held by {holders.paths[0] if holders.paths else 'an unnamed holder'}"
        for label, holders in zip(labels, found, strict=True)
    ]
    return tuple(dict.fromkeys(lines))
