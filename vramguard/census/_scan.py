"""Finding tensors on the heap: which storages live on a device, and what they look like.

Every torch.Tensor is a gc-tracked Python object (Parameters and inference tensors
included), found with one heap pass (:func:`heap_tensors`). Type tests use ``type(obj)``,
never ``isinstance``: ``isinstance`` reads ``__class__``, and some module-level objects in
torch warn (FutureWarning) when touched.

A storage is identified by its ``StorageImpl`` address (``untyped_storage()._cdata``). A
:class:`StorageWeakRef` keeps that address from being reused while the census holds it (a
weak intrusive pointer keeps the object, not its memory), so "a storage not alive at entry"
cannot be confused with a new storage that landed on a freed one's address.
"""

from __future__ import annotations

import gc
from typing import Any, TypeGuard, TypeVar

import torch
from torch.multiprocessing.reductions import StorageWeakRef as _TorchStorageWeakRef

from vramguard.core._tensors import on_device, storage_key

_T = TypeVar("_T")

__all__ = [
    "StorageWeakRef",
    "describe",
    "heap_index",
    "heap_modules",
    "heap_tensors",
    "heap_tensors_slow",
    "is_a",
    "live_storages",
    "module_types",
    "on_device",
    "storage_key",
    "tensor_types",
]


def is_a(obj: object, cls: type[_T] | tuple[type[_T], ...]) -> TypeGuard[_T]:
    """``isinstance`` from the object's real type only: never reads ``__class__``, which some
    objects on the heap answer with a warning."""
    return issubclass(type(obj), cls)


class StorageWeakRef:
    """A weak reference to a storage: torch's ``StorageWeakRef``, typed."""

    __slots__ = ("_ref",)

    def __init__(self, storage: torch.UntypedStorage) -> None:
        self._ref: Any = _TorchStorageWeakRef(storage)  # type: ignore[no-untyped-call]

    def expired(self) -> bool:
        """True once the storage was freed."""
        return bool(self._ref.expired())


def _with_subclasses(root: type) -> list[type]:
    """``root`` and every subclass of it defined so far, breadth first."""
    found: list[type] = [root]
    seen: set[type] = {root}
    for cls in found:
        subclasses: list[type] = cls.__subclasses__()
        for sub in subclasses:
            if sub not in seen:
                seen.add(sub)
                found.append(sub)
    return found


def tensor_types() -> tuple[type, ...]:
    """``torch.Tensor`` and every subclass defined so far."""
    return tuple(_with_subclasses(torch.Tensor))


def heap_tensors() -> list[torch.Tensor]:
    """Every tensor object on the heap, in one C-level pass.

    Instances of heap types refer to their type (``tp_traverse`` must visit it), so
    ``gc.get_referrers(torch.Tensor, *subclasses)`` returns every tensor object, plus the few
    other objects that name those classes. Measured: half the cost of ``gc.get_objects()``
    followed by a Python loop over its result.
    """
    types = tensor_types()
    kinds = set(types)
    found = gc.get_referrers(*types)
    return [obj for obj in found if type(obj) in kinds]


YOUNG_FILTERED_AT_MOST = 2048
"""Up to this many objects tracked by the collector, :func:`young_tensors` filters them itself."""


def young_tensors() -> list[torch.Tensor] | None:
    """Every tensor object the collector tracks, when it tracks few (a frozen heap epoch's young
    objects: an empty block leaves about 20), filtered by type directly: no walk of the tensor
    subclasses, no referrer pass. None when it tracks more (then :func:`heap_tensors`, whose C
    pass is cheaper per object). Subclasses defined in the block count, as they do there."""
    young = gc.get_objects()
    if len(young) > YOUNG_FILTERED_AT_MOST:
        return None
    tensor = torch.Tensor
    return [obj for obj in young if issubclass(type(obj), tensor)]


def module_types() -> frozenset[type]:
    """``torch.nn.Module`` and every subclass defined so far."""
    return frozenset(_with_subclasses(torch.nn.Module))


def heap_modules() -> list[torch.nn.Module]:
    """Every ``nn.Module`` on the heap: one ``gc.get_objects()`` pass with a set lookup per
    object (~6 ms per 100k objects here; ``issubclass`` per object costs twice that)."""
    kinds = module_types()
    return [obj for obj in gc.get_objects() if type(obj) in kinds]


def heap_index() -> tuple[list[torch.Tensor], list[torch.nn.Module]]:
    """Every tensor and every ``nn.Module`` on the heap in one ``gc.get_objects()`` pass (one
    set lookup per object): the census's own pass when the holder search will need the module
    tree, so that it never pays for a second one."""
    tensors = set(tensor_types())
    modules = module_types()
    found_tensors: list[torch.Tensor] = []
    found_modules: list[torch.nn.Module] = []
    for obj in gc.get_objects():
        kind = type(obj)
        if kind in tensors:
            found_tensors.append(obj)
        elif kind in modules:
            found_modules.append(obj)
    return found_tensors, found_modules


def heap_tensors_slow() -> list[torch.Tensor]:
    """The same as :func:`heap_tensors`, from ``gc.get_objects()`` (a check for tests)."""
    tensor = torch.Tensor
    return [obj for obj in gc.get_objects() if issubclass(type(obj), tensor)]


def live_storages(device: torch.device) -> dict[int, tuple[StorageWeakRef, int]]:
    """Weak references to every storage on ``device`` held by a live tensor, with its bytes."""
    found: dict[int, tuple[StorageWeakRef, int]] = {}
    for tensor in heap_tensors():
        if not on_device(tensor, device):
            continue
        key = storage_key(tensor)
        if key is not None and key[0] not in found:
            found[key[0]] = (StorageWeakRef(key[1]), key[1].nbytes())
    return found


def describe(tensor: torch.Tensor) -> str:
    """``float32[1024, 1024] cpu``; Parameters say so."""
    try:
        dtype = str(tensor.dtype).removeprefix("torch.")
        shape = ", ".join(str(int(d)) for d in tensor.shape)
        text = f"{dtype}[{shape}] {tensor.device}"
        if tensor.layout != torch.strided:
            text = f"{str(tensor.layout).removeprefix('torch.')} {text}"
    except Exception:
        return type(tensor).__name__
    if issubclass(type(tensor), torch.nn.Parameter):
        return f"Parameter {text}"
    return text
