"""Tensors reachable from Python objects, and the storage bytes they hold (each storage once)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

_MAX_KEPT_DEPTH = 6


def tensors_in(obj: object, *, depth: int = _MAX_KEPT_DEPTH) -> Iterable[torch.Tensor]:
    """Tensors reachable from ``obj`` through modules, mappings, sequences, sets and dataclasses."""
    seen: set[int] = set()
    stack: list[tuple[object, int]] = [(obj, 0)]
    while stack:
        item, level = stack.pop()
        if id(item) in seen or level > depth:
            continue
        seen.add(id(item))
        if isinstance(item, torch.Tensor):
            yield item
        elif isinstance(item, torch.nn.Module):
            yield from item.parameters()
            yield from item.buffers()
        elif isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend((v, level + 1) for v in item)
        elif hasattr(item, "__dataclass_fields__"):
            stack.extend((getattr(item, name, None), level + 1) for name in item.__dataclass_fields__)


def on_device(tensor: torch.Tensor, device: torch.device) -> bool:
    """True for a tensor with real memory on ``device`` (any index when ``device`` has none)."""
    try:
        dev = tensor.device
        if dev.type != device.type or tensor.is_meta:
            return False
    except Exception:  # exotic subclasses (fake, functional) may refuse even this
        return False
    return device.index is None or dev.index is None or dev.index == device.index


def storage_key(tensor: torch.Tensor) -> tuple[int, torch.UntypedStorage] | None:
    """(StorageImpl address, storage) of a tensor with memory; None for sparse, fake or empty ones."""
    try:
        storage = tensor.untyped_storage()
        if storage.data_ptr() == 0:
            return None
        return storage._cdata, storage
    except Exception:  # sparse and nested tensors have no single storage
        return None


_SPARSE_PARTS = {
    torch.sparse_coo: ("_values", "_indices"),
    torch.sparse_csr: ("values", "crow_indices", "col_indices"),
    torch.sparse_csc: ("values", "ccol_indices", "row_indices"),
    torch.sparse_bsr: ("values", "crow_indices", "col_indices"),
    torch.sparse_bsc: ("values", "ccol_indices", "row_indices"),
}


def storages_of(tensor: torch.Tensor) -> list[tuple[int, torch.UntypedStorage]]:
    """Every storage a tensor holds: its one storage, or a sparse tensor's values and indices
    (values first). Empty for fake, nested and empty tensors."""
    key = storage_key(tensor)
    if key is not None:
        return [key]
    try:
        parts = _SPARSE_PARTS.get(tensor.layout)
    except Exception:
        return []
    found: list[tuple[int, torch.UntypedStorage]] = []
    for part in parts or ():
        try:
            component = getattr(tensor, part)()
        except Exception:  # an uncoalesced COO tensor answers values() only through _values()
            continue
        inner = storage_key(component)
        if inner is not None and all(inner[0] != k for k, _ in found):
            found.append(inner)
    return found


def tensor_key(tensor: torch.Tensor) -> tuple[int, int, torch.UntypedStorage] | None:
    """(key, bytes, storage) the census counts a tensor by: its storage, or for a sparse tensor
    its values' storage with the bytes of values and indices together."""
    parts = storages_of(tensor)
    if not parts:
        return None
    return parts[0][0], sum(storage.nbytes() for _, storage in parts), parts[0][1]


def storage_bytes(objects: Iterable[object], device: torch.device) -> int:
    """Storage bytes on ``device`` of the tensors reachable from ``objects``, each storage once
    (views and tied weights share storage); sparse tensors count values and indices; meta and
    nested tensors count nothing."""
    seen: set[int] = set()
    total = 0
    for obj in objects:
        for tensor in tensors_in(obj):
            if not on_device(tensor, device):
                continue
            for key, storage in storages_of(tensor):
                if key not in seen:
                    seen.add(key)
                    total += storage.nbytes()
    return total
