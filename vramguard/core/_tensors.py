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


def storage_bytes(objects: Iterable[object], device: torch.device) -> int:
    """Storage bytes on ``device`` of the tensors reachable from ``objects``, each storage once
    (views and tied weights share storage); meta, sparse and nested tensors count nothing."""
    seen: set[int] = set()
    total = 0
    for obj in objects:
        for tensor in tensors_in(obj):
            if not on_device(tensor, device):
                continue
            key = storage_key(tensor)
            if key is None or key[0] in seen:
                continue
            seen.add(key[0])
            total += key[1].nbytes()
    return total
