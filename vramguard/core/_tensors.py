"""Tensors reachable from Python objects, and the storage bytes they hold (each storage once)."""

from __future__ import annotations

import types
from collections.abc import Iterable

import torch

MAX_KEPT_OBJECTS = 20_000
"""The most objects :func:`tensors_in` visits from what a session keeps: a bound by work, not
by depth (a tensor in a dict nested 7 deep was missed under the old depth bound of 6)."""
_OPAQUE = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType, str, bytes)
"""Never walked into: classes, modules and functions are shared code, not the kept value."""
_LEAVES = (int, float, complex, str, bytes, type(None))
"""Skipped before they count as a visit: a tokenizer's vocabulary (50k ``str -> int`` entries in a
Hugging Face pipeline) used to spend the whole object bound before the walk reached the model."""


def tensors_in(
    obj: object, *, limit: int = MAX_KEPT_OBJECTS, seen: set[int] | None = None
) -> Iterable[torch.Tensor]:
    """Tensors reachable from ``obj`` through modules, mappings, sequences, sets, dataclasses
    and plain objects' attributes (``__dict__`` and ``__slots__``), visiting at most ``limit``
    objects (scalars and strings are not visits). Attributes are read without ``__getattr__``:
    an object answering every name (a mock, a proxy) is walked by what it really holds, and
    never raises here. ``seen`` (ids) is shared by walks that should visit an object once."""
    seen = set() if seen is None else seen
    stack: list[object] = [obj]
    visits = 0
    while stack and visits < limit:
        item = stack.pop()
        if isinstance(item, _LEAVES) or id(item) in seen:
            continue
        seen.add(id(item))
        visits += 1
        if isinstance(item, torch.Tensor):
            yield item
        elif isinstance(item, torch.nn.Module):
            yield from item.parameters()
            yield from item.buffers()
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
        elif not isinstance(item, _OPAQUE):
            stack.extend(_attributes(item))


def _attributes(item: object) -> list[object]:
    """The values of an object's instance attributes, read without running its ``__getattr__``
    or properties (a dataclass's fields live in its ``__dict__`` or slots too)."""
    found: list[object] = []
    try:
        namespace = object.__getattribute__(item, "__dict__")
    except Exception:
        namespace = None
    if type(namespace) is dict:
        found.extend(namespace.values())
    for cls in type(item).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if isinstance(name, str) and name not in ("__dict__", "__weakref__"):
                try:
                    found.append(object.__getattribute__(item, name))
                except Exception:  # an unset slot
                    pass
    return found


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
    walked: set[int] = set()  # an object kept twice, or reached from two kept ones, is walked once
    total = 0
    for obj in objects:
        for tensor in tensors_in(obj, seen=walked):
            if not on_device(tensor, device):
                continue
            for key, storage in storages_of(tensor):
                if key not in seen:
                    seen.add(key)
                    total += storage.nbytes()
    return total
