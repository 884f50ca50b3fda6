"""What a park moves: the modules an object holds, their tensors, and the storages behind them.

Tensors are grouped by storage (the ``StorageImpl`` address), so tied weights and views are
moved once and come back sharing one storage again. The tensors themselves (the ``Parameter``
objects, buffers and gradients) are kept: a park changes their data, never their identity.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import torch

from vramguard.core._errors import InvalidArgument

_MAX_DEPTH = 4
_LEAVES = (torch.Tensor, str, bytes, int, float, complex, type, type(None))
"""Never holders of modules: skipped before they are pushed (a tokenizer's 50k-entry vocabulary
cost 0.2 s a walk when each entry was pushed with its path)."""


@dataclass(frozen=True)
class Slot:
    """One tensor's place in its storage: enough to rebuild the view on any device."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    offset: int
    """The storage offset, in elements of ``dtype``."""
    storage: int
    """The index of its storage in :attr:`Layout.storages`; -1 for a tensor with no memory."""


@dataclass(frozen=True)
class StorageInfo:
    """One storage: its size and the device it lived on."""

    nbytes: int
    device: torch.device


@dataclass
class Layout:
    """The tensors of the parked modules, their slots and their storages, in a fixed order."""

    modules: list[tuple[str, torch.nn.Module]]
    tensors: list[torch.Tensor] = field(default_factory=list)
    slots: list[Slot] = field(default_factory=list)
    storages: list[StorageInfo] = field(default_factory=list)
    aliases: dict[str, int] = field(default_factory=dict)
    """Every name a tensor is reachable by (tied weights have several) -> its index."""

    @property
    def nbytes(self) -> int:
        return sum(info.nbytes for info in self.storages)


def find_modules(obj: object) -> list[tuple[str, torch.nn.Module]]:
    """The outermost modules ``obj`` holds, with their attribute paths ("" for ``obj`` itself):
    a module, a Hugging Face pipeline (``.model``), a pyannote pipeline (its models' modules),
    any object whose attributes, dicts or lists hold modules (four levels deep)."""
    found: list[tuple[str, torch.nn.Module]] = []
    seen: set[int] = set()
    stack: list[tuple[object, str, int]] = [(obj, "", 0)]
    while stack:
        item, path, level = stack.pop()
        if id(item) in seen or level > _MAX_DEPTH:
            continue
        seen.add(id(item))
        if isinstance(item, torch.nn.Module):
            found.append((path, item))
            continue
        if isinstance(item, _LEAVES) or level == _MAX_DEPTH:
            continue
        if isinstance(item, Mapping):
            pairs: list[tuple[object, object]] = list(item.items())
        elif isinstance(item, list | tuple):
            pairs = list(enumerate(item))
        elif hasattr(item, "__dict__"):
            pairs = list(vars(item).items())
        else:
            continue
        stack.extend((v, _join(path, str(k)), level + 1) for k, v in reversed(pairs) if not isinstance(v, _LEAVES))
    # A module reached twice (pyannote's inference wrapper and the pipeline both hold it) or
    # inside another found module is parked through the outer one only.
    inner = {id(sub) for _, module in found for sub in module.modules() if sub is not module}
    unique: dict[int, tuple[str, torch.nn.Module]] = {}
    for path, module in found:
        if id(module) not in inner:
            unique.setdefault(id(module), (path, module))
    return sorted(unique.values(), key=lambda item: item[0])


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _members(modules: list[tuple[str, torch.nn.Module]]) -> Iterator[tuple[str, torch.Tensor]]:
    """Every parameter, buffer and gradient with its name, tied ones once per name."""
    for prefix, module in modules:
        for sub_name, sub in module.named_modules(remove_duplicate=False):
            base = _join(prefix, sub_name)
            for name, param in sub._parameters.items():
                if param is not None:
                    yield _join(base, name), param
                    if param.grad is not None:
                        yield _join(base, name) + ".grad", param.grad
            for name, buffer in sub._buffers.items():
                if buffer is not None:
                    yield _join(base, name), buffer


def build_layout(obj: object, modules: list[tuple[str, torch.nn.Module]] | None = None) -> Layout:
    """The layout of everything ``obj`` holds (its ``modules``, found again when None); raises
    :class:`InvalidArgument` when it holds no module, or a tensor a park cannot move (sparse,
    nested, already on the meta device)."""
    modules = find_modules(obj) if modules is None else modules
    if not modules:
        raise InvalidArgument(
            "obj",
            type(obj).__name__,
            "an nn.Module, a Hugging Face pipeline (.model), a pyannote pipeline, or an object holding modules",
        )
    layout = Layout(modules)
    index_of: dict[int, int] = {}
    storage_of: dict[int, int] = {}
    for name, tensor in _members(modules):
        known = index_of.get(id(tensor))
        if known is not None:
            layout.aliases.setdefault(name, known)
            continue
        if tensor.layout != torch.strided or tensor.is_nested or tensor.is_meta:
            raise InvalidArgument(name, f"{tensor.layout} tensor on {tensor.device}", "strided tensors with memory")
        storage = tensor.untyped_storage()
        key = -1
        if storage.nbytes() > 0:
            address = storage._cdata
            if address not in storage_of:
                storage_of[address] = len(layout.storages)
                layout.storages.append(StorageInfo(storage.nbytes(), tensor.device))
            key = storage_of[address]
        index = index_of[id(tensor)] = len(layout.tensors)
        layout.tensors.append(tensor)
        layout.aliases[name] = index
        layout.slots.append(
            Slot(name, tensor.dtype, tuple(tensor.shape), tuple(tensor.stride()), int(tensor.storage_offset()), key)
        )
    return layout


def storages(layout: Layout) -> list[torch.UntypedStorage]:
    """The live storages of the layout, in its order (each taken from its first tensor)."""
    found: list[torch.UntypedStorage | None] = [None] * len(layout.storages)
    for tensor, slot in zip(layout.tensors, layout.slots, strict=True):
        if slot.storage >= 0 and found[slot.storage] is None:
            found[slot.storage] = tensor.untyped_storage()
    assert all(s is not None for s in found)
    return [s for s in found if s is not None]


def as_bytes(storage: torch.UntypedStorage) -> torch.Tensor:
    """A flat uint8 tensor over the whole storage (no copy)."""
    return torch.empty(0, dtype=torch.uint8, device=storage.device).set_(storage)


def copy_bytes(target: torch.Tensor, source: torch.Tensor, *, non_blocking: bool = False) -> None:
    """Copy flat uint8 ``source`` into ``target`` through their widest common element view:
    the same bytes in an eighth of the elements, which keeps torch's element-parallel copy from
    splitting a small storage across threads (measured: 248 storages of 100 KB took 1.0 s as
    uint8 on two busy cores, 0.02 s as int64)."""
    for wide, size in ((torch.int64, 8), (torch.int32, 4)):
        if source.numel() % size == 0 and source.data_ptr() % size == 0 and target.data_ptr() % size == 0:
            target.view(wide).copy_(source.view(wide), non_blocking=non_blocking)
            return
    target.copy_(source, non_blocking=non_blocking)


def view(storage: torch.UntypedStorage, slot: Slot, byte_offset: int = 0) -> torch.Tensor:
    """The slot's tensor over ``storage``, whose bytes start ``byte_offset`` into it."""
    size = torch.empty((), dtype=slot.dtype).element_size()
    if byte_offset % size:
        raise ValueError(f"offset {byte_offset} not aligned to {size} bytes")
    start = byte_offset // size + slot.offset
    return torch.empty(0, dtype=slot.dtype, device=storage.device).set_(storage, start, slot.shape, slot.stride)
