"""``park`` and ``wake``: a model's memory given back between uses, and the model brought back
in a fraction of a load, the same objects with the same values.

A park copies every storage once (to host memory, to a safetensors file, or nowhere), then
points each tensor at an empty placeholder of its dtype on its device (``tensor.data = ...``:
the ``Parameter`` objects, their hooks, ``id()`` and the optimizers holding them are kept), and
returns the allocator's cache. A wake rebuilds each storage on the device and points the tensors at
their views of it again, so tied weights and views share one storage as before.
"""

from __future__ import annotations

import mmap
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vramguard.core._errors import InvalidArgument, ParkError
from vramguard.core._release import empty_cache
from vramguard.parking import _disk, _reuse
from vramguard.parking._holders import foreign_holders
from vramguard.parking._layout import Layout, as_bytes, build_layout, copy_bytes, find_modules, storages, view
from vramguard.parking._pinned import CudaRegistrar, HostBuffer, pack
from vramguard.parking._records import ParkReport, Target
from vramguard.probes import DeviceLike, MemorySnapshot, cuda_available, resolve_device, take

_TARGETS = ("cpu", "disk", "discard")
_registry: weakref.WeakKeyDictionary[torch.nn.Module, weakref.ref[Parked]] = weakref.WeakKeyDictionary()
"""Each parked module -> its handle, until woken: parking twice is refused, ``wake(model)`` finds it.
Weak both ways: the module itself keeps its handle alive (``_HANDLE``), so a model dropped
while parked goes with its handle, its host copy and its file (a strong value here would keep
the handle, and through it the module, forever)."""
_HANDLE = "_vramguard_parked"


@dataclass(eq=False, repr=False)
class Parked:
    """The handle of a parked object: pass it to :func:`wake`. ``report`` is the park's
    :class:`ParkReport`, ``wake_report`` the wake's once woken. A dataclass, so that a session
    keeping it (``s.park``) counts the host copies and the woken tensors as expected survivors."""

    obj: object
    to: Target
    layout: Layout
    path: Path | None
    remove_file: bool = False
    host: list[torch.Tensor] = field(default_factory=list)
    host_buffer: HostBuffer | None = None
    """The one host buffer the CUDA storages' copies are views of (pinned when it could be),
    unpinned and dropped on wake; None when nothing was copied into one."""
    report: ParkReport | None = None
    wake_report: ParkReport | None = None
    cleanup: weakref.finalize[Any, Any] | None = None
    """Removes a temporary file when the handle goes (detached once a woken mapping owns it)."""

    @property
    def awake(self) -> bool:
        return self.wake_report is not None

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Each parked tensor's name and shape (while parked, the tensors themselves are empty)."""
        return {slot.name: slot.shape for slot in self.layout.slots}

    def __repr__(self) -> str:
        state = "awake" if self.awake else "parked"
        return f"<Parked {type(self.obj).__name__} to={self.to!r} {self.layout.nbytes} bytes, {state}>"


def _main_device(layout: Layout) -> torch.device:
    totals: dict[torch.device, int] = {}
    for info in layout.storages:
        totals[info.device] = totals.get(info.device, 0) + info.nbytes
    if not totals:
        return layout.tensors[0].device if layout.tensors else torch.device("cpu")
    return max(totals, key=lambda d: totals[d])


def _diff(before: int | None, after: int | None) -> int | None:
    return None if before is None or after is None else before - after


def _report(
    kind: str, parked: Parked, dev: torch.device, before: MemorySnapshot, started: float, notes: list[str]
) -> ParkReport:
    after = take(dev, nvml=False)
    rss = _diff(after.rss_bytes, before.rss_bytes)
    layout = parked.layout
    return ParkReport(
        kind="park" if kind == "park" else "wake",
        to=parked.to,
        device=str(dev),
        modules=tuple(f"{path or '.'}: {type(module).__name__}" for path, module in layout.modules),
        tensors=len(layout.tensors),
        storages=len(layout.storages),
        nbytes=layout.nbytes,
        duration_s=time.perf_counter() - started,
        allocated_freed_bytes=_diff(before.allocated_bytes, after.allocated_bytes),
        reserved_returned_bytes=_diff(before.reserved_bytes, after.reserved_bytes),
        host_rss_change_bytes=rss,
        path=None if parked.path is None else str(parked.path),
        notes=tuple(notes),
    )


def park(obj: Any, *, to: Target = "cpu", pin: bool = True, path: str | Path | None = None) -> Parked:
    """Move the weights, buffers and gradients of ``obj`` out of device memory and free it.

    ``obj``: an ``nn.Module``, a Hugging Face pipeline, a pyannote pipeline, or any object whose
    attributes hold modules. ``to="cpu"``: host memory (pinned when the storages are on CUDA and
    ``pin``); ``"disk"``: a safetensors file at ``path`` (a temporary file when None), so host
    memory goes back too; ``"discard"``: shapes only, for weights about to be replaced (wake
    with ``state_dict=``). Refuses with :class:`ParkError`, changing nothing, when another
    object still holds the storages (the error names who) or ``obj`` is already parked.
    """
    if to not in _TARGETS:
        raise InvalidArgument("to", to, _TARGETS)
    if not isinstance(pin, bool):
        raise InvalidArgument("pin", pin, "True or False")
    if path is not None and to != "disk":
        raise InvalidArgument("path", path, 'None unless to="disk"')
    if path is not None and not isinstance(path, str | Path):
        raise InvalidArgument("path", path, "a file path (str or pathlib.Path), or None for a temporary file")
    found = find_modules(obj)
    modules = [module for _, module in found]
    for module in modules:
        earlier = _parked_around(module)
        if earlier is not None:
            raise ParkError(f"{type(module).__name__} is already parked ({earlier!r}): wake it first")
    notes: list[str] = []
    if to == "discard":
        grads = [p for m in modules for p in m.parameters() if p.grad is not None]
        if grads:
            notes.append(f"{len(grads)} gradient(s) dropped (set to None): a discard keeps no values")
    layout = build_layout(obj, found)
    holders = foreign_holders(layout)
    if holders:
        raise ParkError(
            f"not parked: {type(obj).__name__}'s storages are also held elsewhere, so parking would free "
            f"nothing: {'; '.join(holders)}. Drop those references (or .clone() what you keep) and park again",
            holders=holders,
        )
    dev = _main_device(layout)
    before = take(dev, nvml=False)
    started = time.perf_counter()
    target = None if path is None else Path(path)
    parked = Parked(obj, to, layout, target, remove_file=to == "disk" and path is None)
    live = storages(layout)
    if to == "cpu":
        parked.host, parked.host_buffer = _to_host(live, pin, notes)
    elif to == "disk":
        _to_disk(parked, modules, target, live, notes)
    del live
    if to == "discard":
        for module in modules:
            for param in module.parameters():
                param.grad = None
        layout = parked.layout = build_layout(obj, found)
    for tensor in layout.tensors:
        tensor.data = torch.empty(0, dtype=tensor.dtype, device=tensor.device)
    # The ordered release without its collection: the storages were freed the moment their
    # last tensor let go (the holder check proved nothing else holds them), so only the cache
    # is left to return (synchronize and empty_cache; the host's malloc_trim).
    for released in dict.fromkeys(info.device for info in layout.storages) or (dev,):
        synchronize([released])
        empty_cache(released)
    for module in modules:
        _registry[module] = weakref.ref(parked)
        module.__dict__[_HANDLE] = parked
    parked.report = _report("park", parked, dev, before, started, notes)
    return parked


def synchronize(devices: Iterable[torch.device]) -> list[torch.device]:
    """Wait for each CUDA device among ``devices``, naming it: ``torch.cuda.synchronize()``
    without a device waits for the current device only (torch/cuda/__init__.py:1209-1214), so
    a model on cuda:1 with cuda:0 current would not be waited for. Returns the devices waited for."""
    waited = list(dict.fromkeys(d for d in devices if d.type == "cuda"))
    for device in waited:
        torch.cuda.synchronize(device)
    return waited


def _to_host(
    live: list[torch.UntypedStorage], pin: bool, notes: list[str]
) -> tuple[list[torch.Tensor], HostBuffer | None]:
    """Each storage's bytes on the host: the CUDA ones, when ``pin``, as views of one buffer
    pinned as a whole (:mod:`vramguard.parking._pinned`); the others each in memory of its own."""
    on_cuda = [index for index, s in enumerate(live) if s.device.type == "cuda"]
    places: dict[int, int] = {}
    buffer = None
    if pin and on_cuda and cuda_available():
        packing = pack([live[index].nbytes() for index in on_cuda])
        places = dict(zip(on_cuda, packing.offsets_bytes, strict=True))
        shares: dict[torch.device, int] = {}
        for index in on_cuda:
            shares[live[index].device] = shares.get(live[index].device, 0) + live[index].nbytes()
        buffer = HostBuffer(packing.total_bytes, CudaRegistrar(max(shares, key=lambda d: shares[d])))
        if buffer.pinned:
            notes.append(f"host copy pinned, one buffer of {packing.total_bytes} bytes: the wake is a DMA copy")
        else:
            notes.append(
                f"host copy not pinned: cudaHostRegister failed (CUDA error {buffer.error}); "
                "the wake copies from pageable memory"
            )
    host = []
    for index, storage in enumerate(live):
        start = places.get(index)
        if buffer is not None and start is not None:
            flat = buffer.data[start : start + storage.nbytes()]
        else:
            flat = torch.empty(storage.nbytes(), dtype=torch.uint8)
        copy_bytes(flat, as_bytes(storage))
        host.append(flat)
    return host, buffer


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


def _to_disk(
    parked: Parked,
    modules: list[torch.nn.Module],
    target: Path | None,
    live: list[torch.UntypedStorage],
    notes: list[str],
) -> None:
    """Write the storages to a file, or, when they are still the unwritten pages of the file a
    host wake mapped them from, keep that file (:mod:`vramguard.parking._reuse`)."""
    # A file of our own is kept for a park that names none; a file the user named only for
    # a park that names it again.
    record = _reuse.reusable(modules, [s.data_ptr() for s in live], target)
    if record is not None and target is None and record.cleanup is None:
        record = None
    _reuse.forget(modules)
    if record is not None:
        parked.path, parked.remove_file = record.path, record.cleanup is not None
        notes.append("nothing written since the last wake mapped this file: kept it, wrote nothing")
        if record.cleanup is not None and record.cleanup.detach() is not None:
            parked.cleanup = weakref.finalize(parked, _unlink, record.path)
        return
    parked.path = _write_disk(target, live)
    if target is None:  # a temporary file goes with its handle, woken or not
        parked.cleanup = weakref.finalize(parked, _unlink, parked.path)


def _write_disk(target: Path | None, live: list[torch.UntypedStorage]) -> Path:
    path = _disk.default_path() if target is None else target
    try:
        _disk.write(path, live)
    except Exception as error:  # OSError, or safetensors' own error wrapping one
        if target is None:
            path.unlink(missing_ok=True)
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise ParkError(f"not parked: cannot write {path}: {reason}; nothing was moved") from error
    return path


def _parked_around(module: torch.nn.Module) -> Parked | None:
    """The handle of a parked module that is, contains or lies inside ``module``."""
    inside = {id(m) for m in module.modules()}
    for other, ref in list(_registry.items()):
        handle = ref()
        if handle is None:
            continue
        if id(other) in inside or any(m is module for m in other.modules()):
            return handle
    return None


def parked_handle(obj: object) -> Parked | None:
    """The handle of ``obj`` (a module or an object holding modules) while it is parked, else None."""
    if isinstance(obj, Parked):
        return obj
    for _, module in find_modules(obj):
        ref = _registry.get(module)
        handle = None if ref is None else ref()
        if handle is not None:
            return handle
    return None


def wake(
    parked: Parked | Any,
    *,
    device: DeviceLike | None = None,
    non_blocking: bool = True,
    state_dict: Mapping[str, torch.Tensor] | None = None,
) -> ParkReport:
    """Bring a parked object's tensors back, onto the device each came from (or ``device``),
    with identical values (or those of ``state_dict``, required after ``to="discard"``).

    ``parked``: the handle :func:`park` returned, or the parked object itself. Returns the
    wake's :class:`ParkReport` (time, bandwidth, memory measured); the same objects hold the
    data again. Waking twice raises :class:`ParkError`.
    """
    handle = parked_handle(parked)
    if handle is None:
        raise ParkError(f"{type(parked).__name__} is not parked: nothing to wake")
    if handle.awake:
        raise ParkError(f"{handle!r} was already woken")
    if not isinstance(non_blocking, bool):
        raise InvalidArgument("non_blocking", non_blocking, "True or False")
    layout = handle.layout
    target = None if device is None else resolve_device(device)
    if target is not None and target.type == "cuda" and target.index is None:
        target = torch.device("cuda", torch.cuda.current_device())
    values = _check_state_dict(handle, state_dict)
    dev = target or _main_device(layout)
    before = take(dev, nvml=False)
    started = time.perf_counter()
    notes: list[str] = []
    restored, mapping = _restore(handle, target, non_blocking, notes)
    mapped_in_place = mapping is not None and _remember_mapping(handle, restored, *mapping)
    views: list[torch.Tensor] = []
    for slot, info_device in zip(layout.slots, _slot_devices(layout, target), strict=True):
        if slot.storage < 0:
            views.append(torch.empty(slot.shape, dtype=slot.dtype, device=info_device))
        else:
            storage, offset = restored[slot.storage]
            views.append(view(storage, slot, offset))
    if values is not None:
        with torch.no_grad():
            for index, value in values.items():
                views[index].copy_(value, non_blocking=non_blocking)
        notes.append(f"{len(values)} tensor(s) loaded from state_dict")
    for tensor, new in zip(layout.tensors, views, strict=True):
        tensor.data = new
    del views, restored
    # Every device copied to, each by name: the time reported is the copies', not their launch,
    # and the host buffer below may be unpinned only once no copy reads it (registered memory
    # carries no event of torch's pinned allocator to wait on).
    synchronize([t.device for t in layout.tensors] + [v.device for v in (values or {}).values()])
    _verify(layout, target)
    for _, module in layout.modules:
        ref = _registry.get(module)
        if ref is not None and ref() is handle:
            del _registry[module]
            module.__dict__.pop(_HANDLE, None)
    handle.host = []
    if handle.host_buffer is not None:
        handle.host_buffer.release()
        handle.host_buffer = None
    if handle.remove_file and handle.path is not None and not mapped_in_place:
        handle.path.unlink(missing_ok=True)  # a host wake's copy outlives the name
    handle.wake_report = _report("wake", handle, dev, before, started, notes)
    return handle.wake_report


def _remember_mapping(
    handle: Parked, restored: list[tuple[torch.UntypedStorage, int]], source: mmap.mmap, base: int
) -> bool:
    """After a host wake from disk that left every storage on the file's pages (``source``,
    mapped at ``base``): record it, so the next park can keep the file; a temporary file then
    goes when the mapping closes."""
    if handle.path is None:
        return False
    modules = [module for _, module in handle.layout.modules]
    if not _reuse.remember(modules, handle.path, source, base, [s.data_ptr() for s, _ in restored], handle.remove_file):
        return False
    if handle.cleanup is not None:
        handle.cleanup.detach()
    return True


def _slot_devices(layout: Layout, target: torch.device | None) -> list[torch.device]:
    return [
        target or (layout.storages[s.storage].device if s.storage >= 0 else layout.tensors[i].device)
        for i, s in enumerate(layout.slots)
    ]


def _restore(
    handle: Parked, target: torch.device | None, non_blocking: bool, notes: list[str]
) -> tuple[list[tuple[torch.UntypedStorage, int]], tuple[mmap.mmap, int] | None]:
    """Each storage rebuilt on its device, as (storage, byte offset of its data in it); and, for a
    host wake from disk that left every storage on the file's pages, the mapping and its address."""
    layout = handle.layout
    found: list[tuple[torch.UntypedStorage, int]] = []
    offsets = mapped = None
    in_place = handle.to == "disk"
    if handle.to == "disk":
        assert handle.path is not None
        offsets = _disk.offsets(handle.path, len(layout.storages))
        mapped = _disk.map_file(handle.path)
    for index, info in enumerate(layout.storages):
        dev = target or info.device
        shared = False
        if handle.to == "cpu":
            source = handle.host[index]
            # A view of the park's one host buffer is copied even onto the host: kept, it would
            # hold the whole (pinned) buffer alive for as long as this one storage lives.
            shared = handle.host_buffer is not None and info.device.type == "cuda"
        elif offsets is not None and mapped is not None:
            source = _disk.entry(mapped, offsets[index], info.nbytes)
        else:
            found.append((torch.empty(info.nbytes, dtype=torch.uint8, device=dev).untyped_storage(), 0))
            continue
        if dev.type == "cpu" and source.device.type == "cpu" and not shared:
            found.append((source.untyped_storage(), 0))
            continue
        in_place = False
        flat = torch.empty(info.nbytes, dtype=torch.uint8, device=dev)
        copy_bytes(flat, source, non_blocking=non_blocking and source.is_pinned())
        found.append((flat.untyped_storage(), 0))
    if offsets is not None and any((target or i.device).type == "cpu" for i in layout.storages):
        notes.append(f"memory-mapped from {handle.path}: pages load as they are touched")
    if in_place and mapped is not None and offsets and found[0][0].nbytes():
        return found, (mapped, found[0][0].data_ptr() - offsets[0])
    return found, None


def _check_state_dict(handle: Parked, state_dict: Mapping[str, torch.Tensor] | None) -> dict[int, torch.Tensor] | None:
    """The values to load, by tensor index; every tensor needs one after a discard."""
    if state_dict is None:
        if handle.to == "discard":
            raise InvalidArgument("state_dict", None, 'the weights to load: a park with to="discard" kept no values')
        return None
    if not isinstance(state_dict, Mapping):
        raise InvalidArgument("state_dict", type(state_dict).__name__, "a mapping of tensor names to tensors")
    layout = handle.layout
    prefixes = [f"{path}." for path, _ in layout.modules if path] if len(layout.modules) == 1 else []
    values: dict[int, torch.Tensor] = {}
    for name, index in layout.aliases.items():
        value = state_dict.get(name)
        for prefix in prefixes:
            if value is None and name.startswith(prefix):
                value = state_dict.get(name.removeprefix(prefix))
        if value is None:
            continue
        slot = layout.slots[index]
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != slot.shape:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise InvalidArgument("state_dict", f"{name}: {shape}", f"a tensor of shape {slot.shape} for {name!r}")
        values[index] = value
    missing = [slot.name for i, slot in enumerate(layout.slots) if i not in values]
    if missing and handle.to == "discard":
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise InvalidArgument("state_dict", f"missing {shown}", "a value for every parked tensor")
    return values


def _verify(layout: Layout, target: torch.device | None) -> None:
    """The bytes came back: each tensor has its shape, dtype and device, each storage its size."""
    for tensor, slot, dev in zip(layout.tensors, layout.slots, _slot_devices(layout, target), strict=True):
        same_device = tensor.device.type == dev.type and (dev.index is None or tensor.device.index == dev.index)
        if tuple(tensor.shape) != slot.shape or tensor.dtype != slot.dtype or not same_device:
            raise ParkError(f"wake failed for {slot.name}: {tensor.dtype}{list(tensor.shape)} on {tensor.device}")


@contextmanager
def parked(obj: Any, *, to: Target = "cpu", pin: bool = True, path: str | Path | None = None) -> Iterator[Parked]:
    """Park ``obj`` for the block and wake it at exit, also when the block raises."""
    handle = park(obj, to=to, pin=pin, path=path)
    try:
        yield handle
    finally:
        if not handle.awake:
            wake(handle)
