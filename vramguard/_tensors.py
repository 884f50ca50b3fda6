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


def storage_bytes(objects: Iterable[object], device: torch.device) -> int:
    """Storage bytes on ``device``'s type of the tensors reachable from ``objects``, each storage
    once (views and tied weights share storage); meta tensors hold none."""
    seen: set[int] = set()
    total = 0
    for obj in objects:
        for tensor in tensors_in(obj):
            if tensor.device.type != device.type or tensor.is_meta:
                continue
            storage = tensor.untyped_storage()
            ptr = storage.data_ptr()
            if ptr == 0 or ptr in seen:
                continue
            seen.add(ptr)
            total += storage.nbytes()
    return total
