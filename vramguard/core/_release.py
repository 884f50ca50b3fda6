"""The release procedure, in the only order that works.

1. drop the references (and evict modules' parameters to the meta device);
2. ``gc.collect()``: tensors held only by reference cycles are freed here (torch's allocator
   never runs the collector itself);
3. ``torch.cuda.synchronize(device)``: blocks freed on a stream go back to the allocator only
   once the stream's work is done;
4. ``torch.cuda.empty_cache()`` and ``ipc_collect()`` (host: ``malloc_trim(0)``): hand the now
   unused cached blocks back to the driver (the OS). Emptying the cache before step 1 returns
   nothing: the blocks freed afterwards go straight back into the cache.
"""

from __future__ import annotations

import functools
import gc
import inspect
import logging
import sys
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch

from vramguard.core import _hooks
from vramguard.core._errors import InvalidArgument
from vramguard.core._records import ReleaseReport, ReleaseStep, _diff, build
from vramguard.core._sizes import format_size
from vramguard.core._tensors import storage_bytes
from vramguard.probes import (
    DeviceLike,
    MemorySnapshot,
    cuda_initialized,
    is_host,
    malloc_trim,
    read_heap,
    resolve_device,
    stranded_segments,
    take,
)
from vramguard.probes._host import HeapReading

Mark = Callable[[str], None]
_log = logging.getLogger("vramguard")


def evict_module(module: torch.nn.Module, device: torch.device) -> str:
    """Move a module's parameters and buffers to the meta device, in place, and say what it freed.

    Every holder of the module sees the meta tensors afterwards, so the old storages are freed
    even while someone else still holds the module itself.
    """
    nbytes = storage_bytes([module], device)
    module.to(device="meta")
    return f"{type(module).__name__}: {format_size(nbytes)} of parameters and buffers moved to the meta device"


CUDA_EMPTY_FLOOR_BYTES = 1024 * 1024 * 1024
"""A session that owns nothing empties the CUDA cache only when the block left this much more
cached-but-free memory than at its entry (see :func:`cuda_empty_skip`). Below it, the memory is
what the next step of a loop allocates again; above it, it is worth the ``cudaFree`` and the
``cudaMalloc`` after it. The explicit :func:`release`, and a session given something to own,
always empty."""

HOST_TRIM_FLOOR_BYTES = 16 * 1024 * 1024
"""A session that owns nothing trims the host heap only when malloc's free bytes or its idle
resident memory grew by this much since the last trim. ``malloc_trim(0)`` hands freed pages back
to the OS, and the next allocations fault them back in: at every step of an inference loop (a
19 ms step, 4 MiB freed per step) that cost 1.4–1.7 ms a step, most of a session's price
(benchmarks/inference_loop.py). The explicit :func:`release`, and a session given something to
own, always trim."""



def empty_floor_bytes(dev: torch.device) -> int:
    """The floor a session that owns nothing applies to its device's trim or cache emptying."""
    return HOST_TRIM_FLOOR_BYTES if is_host(dev) else CUDA_EMPTY_FLOOR_BYTES


_after_trim: tuple[int | None, int | None] | None = None
"""(malloc's free bytes, resident anonymous bytes not in malloc's use) right after the last trim."""


def _idle_resident(reading: HeapReading) -> int | None:
    """Resident anonymous memory malloc does not have in use: what a trim could hand back (and
    what pymalloc's arenas and other mappings hold, so it over-counts, never under-counts)."""
    anon, in_use = reading.resident_anonymous_bytes, reading.in_use_bytes
    return None if anon is None or in_use is None else anon - in_use


@functools.lru_cache(maxsize=8)
def _size_text(nbytes: int) -> str:
    return format_size(nbytes)


class Skipped(str):
    """A step's detail when the step changed nothing: the release takes no reading after it."""

    __slots__ = ()


class Measured(str):
    """A step's detail when the step read the device after its last change (a collection
    policy that read the allocator to decide): the release uses that reading, not another."""

    reading: MemorySnapshot

    @classmethod
    def of(cls, detail: str, reading: MemorySnapshot) -> Measured:
        made = cls(detail)
        made.reading = reading
        return made


def _host_trim(floor_bytes: int, now: MemorySnapshot) -> str:
    """Trim unless neither malloc's free bytes nor its idle resident memory grew by
    ``floor_bytes`` since the last trim. Both are needed: a block that reuses chunks an earlier
    trim handed back faults them in again and frees them, so resident memory grows by tens of
    MiB while malloc's free bytes barely move (a demo session held 32.6 MiB that way). ``now``
    is the release's latest reading of the heap (no second read)."""
    global _after_trim
    if floor_bytes and _after_trim is not None:
        # The snapshot's fields on the host: heap_free = malloc's free chunks, reserved − allocated
        # = resident anonymous memory malloc does not have in use (_idle_resident's figure).
        free_then, idle_then = _after_trim
        free, allocated, reserved = now.heap_free_bytes, now.allocated_bytes, now.reserved_bytes
        known = None not in (free, free_then, idle_then, allocated, reserved)
        if known:
            free_growth = free - free_then  # type: ignore[operator]
            idle_growth = reserved - allocated - idle_then  # type: ignore[operator]
            if free_growth < floor_bytes and idle_growth < floor_bytes:
                # Bytes with separators, not format_size: written at almost every step of a loop.
                return Skipped(
                    f"skipped: since the last trim malloc's free bytes grew by {max(0, free_growth):,} B and "
                    f"its idle resident memory by {max(0, idle_growth):,} B, both under {_size_text(floor_bytes)}"
                )
    if not malloc_trim():
        return "malloc_trim unavailable (not glibc)"
    after = read_heap()
    _after_trim = (after.free_in_arenas_bytes, _idle_resident(after))
    return ""


def cuda_empty_skip(cached_bytes: int | None, entry_cached_bytes: int | None, floor_bytes: int) -> str | None:
    """Why the session's release keeps the CUDA cache, or None to empty it (a pure function).

    ``empty_cache()`` ``cudaFree``s every unused cached segment and the next step ``cudaMalloc``s
    them again (each ``cudaFree`` waits for the device): a decorated step called per request
    must not pay that. The cache is kept when the block left less than ``floor_bytes`` more
    cached-but-free memory than there was at its entry, which a loop's next step reuses.
    Unknown figures (``cudaMallocAsync`` reports no reserved bytes) always empty.
    """
    if floor_bytes <= 0 or cached_bytes is None or entry_cached_bytes is None:
        return None
    grown = cached_bytes - entry_cached_bytes
    if grown >= floor_bytes:
        return None
    return Skipped(
        f"skipped: the block left {format_size(max(0, grown))} more cached than at entry, under the floor of "
        f"{format_size(floor_bytes)} (the next step reuses it; release(), own() or empty_cache() empty it)"
    )


def _sync_and_empty(
    dev: torch.device,
    trim_floor_bytes: int,
    entry: MemorySnapshot | None,
    latest: Callable[[], MemorySnapshot],
) -> list[tuple[str, Callable[[], str]]]:
    """The device-specific steps after gc: (name, action returning a detail). On the host the
    heap is trimmed past ``trim_floor_bytes`` of growth since the last trim; on CUDA the cache is
    emptied past ``trim_floor_bytes`` of cached-but-free growth since ``entry``. ``latest`` gives
    the release's latest reading, which the decisions use instead of reading again."""
    if is_host(dev):
        return [("malloc_trim", lambda: _host_trim(trim_floor_bytes, latest()))]
    if not cuda_initialized():
        # Nothing was ever allocated; touching CUDA now would create a context.
        skip = Skipped("skipped: CUDA not initialised in this process")
        return [("synchronize", lambda: skip), ("empty_cache", lambda: skip)]

    def synchronize() -> str:
        torch.cuda.synchronize(dev)
        return ""

    def empty() -> str:
        if entry is not None:
            reason = cuda_empty_skip(latest().cached_bytes, entry.cached_bytes, trim_floor_bytes)
            if reason is not None:
                return reason
        # emptyCache frees every device's unused segments, whatever the current device
        # (c10/cuda/CUDACachingAllocator.cpp, NativeCachingAllocator::emptyCache loops over
        # device_allocator); the device guard only scopes ipc_collect.
        with torch.cuda.device(dev):
            _raw_empty_cache()
            torch.cuda.ipc_collect()  # type: ignore[no-untyped-call]
        return _left_cached(dev)

    return [("synchronize", synchronize), ("empty_cache", empty)]


def _left_cached(dev: torch.device) -> str:
    """What an ``empty_cache()`` could not return, said once it stays: free space in segments
    that still hold a live block. Requests up to 1 MiB share 2 MiB small-pool segments
    (CUDACachingAllocator.cpp: kSmallSize, kSmallBuffer), so one kept scalar strands most of a
    segment; read from the block list only when something stays cached."""
    cached = take(dev, nvml=False).cached_bytes
    if not cached:
        return ""
    segments = stranded_segments(dev)
    if segments is None:
        return f"{format_size(cached)} stays cached"
    count, free = segments
    return (
        f"{format_size(free)} stays cached in {count} segment(s) that still hold live blocks "
        "(empty_cache() returns only whole free segments)"
    )


_original_empty_cache = torch.cuda.empty_cache


def _raw_empty_cache() -> None:
    """torch's own empty_cache, even while the census has wrapped the public one."""
    _original_empty_cache()


def full_collect() -> str:
    """The collection for a release nobody can judge more cheaply: every generation."""
    found = gc.collect()
    return f"full collection: {found} unreachable objects" if found else "full collection"


def run_release(
    dev: torch.device,
    drop: Callable[[], str],
    *,
    start: MemorySnapshot | None = None,
    mark: Mark | None = None,
    collect: Callable[[], str] = full_collect,
    trim_floor_bytes: int = 0,
    entry: MemorySnapshot | None = None,
) -> tuple[tuple[ReleaseStep, ...], MemorySnapshot]:
    """Run the four steps on ``dev``, timing each and measuring what it freed.

    ``drop`` performs step 1 and returns a detail for the report; ``collect`` performs step 2
    (a session passes a policy that pays for a full collection only when it must) and says
    which collections ran; on the host the heap is trimmed only when malloc's free bytes grew by
    ``trim_floor_bytes`` since the last trim, and on CUDA the cache is emptied only when its free
    bytes grew by ``trim_floor_bytes`` since ``entry`` (see :func:`cuda_empty_skip`; 0 always
    trims and empties). Returns the steps and the final snapshot (with NVML).
    """
    steps: list[ReleaseStep] = []
    current = start if start is not None else take(dev, nvml=False)
    actions: list[tuple[str, Callable[[], str]]] = [("drop", drop), ("gc", collect)]
    actions += _sync_and_empty(dev, trim_floor_bytes, entry, latest=lambda: current)
    debug = _log.isEnabledFor(logging.DEBUG)
    skipped = False
    for name, action in actions:
        if mark is not None:
            mark(f"release:{name}")
        began = time.perf_counter()
        detail = action()
        duration = time.perf_counter() - began
        # A step that changed nothing (a trim or an empty below its floor, nothing to drop)
        # freed nothing: the reading before it stands, and one read of the device is saved.
        kind = type(detail)
        skipped = kind is Skipped
        if skipped:
            now = current
        elif kind is Measured:
            now = detail.reading  # type: ignore[attr-defined]
        else:
            now = take(dev, nvml=False)
        step = build(
            ReleaseStep,
            name=name,
            duration_s=duration,
            allocated_freed_bytes=_diff(current.allocated_bytes, now.allocated_bytes),
            reserved_freed_bytes=_diff(current.reserved_bytes, now.reserved_bytes),
            detail=str(detail),
        )
        steps.append(step)
        if debug:
            _log.debug(
                "release %s on %s: %.2f ms, freed %s allocated, %s reserved%s",
                name,
                dev,
                duration * 1000,
                format_size(step.allocated_freed_bytes),
                format_size(step.reserved_freed_bytes),
                f" ({detail})" if detail else "",
            )
        current = now
    # The final reading (NVML too on CUDA); on the host, after a last step that changed nothing,
    # the reading before it is the final one (with the time it was read).
    after = current if skipped and is_host(dev) else take(dev, nvml=True)
    return tuple(steps), after


_ATTRS = 'an attribute name (str) or a list or tuple of them, e.g. attrs=("asr_pipeline", "model")'


def _normalise_attrs(attrs: str | Sequence[str]) -> tuple[str, ...]:
    if not isinstance(attrs, (str, list, tuple)):
        raise InvalidArgument("attrs", attrs, _ATTRS)
    names = (attrs,) if isinstance(attrs, str) else tuple(attrs)
    for name in names:
        if not isinstance(name, str) or not name.isidentifier():
            raise InvalidArgument("attrs", attrs, _ATTRS)
    return names


def _unsettable(obj: object, name: str) -> str | None:
    """Why ``obj.name = None`` would fail, found without trying it (a read-only property, a
    frozen dataclass, a class without ``__dict__`` or that slot); None if it looks settable."""
    cls = type(obj)
    params = getattr(cls, "__dataclass_params__", None)
    if params is not None and getattr(params, "frozen", False):
        return f"{cls.__name__} is a frozen dataclass"
    try:
        static = inspect.getattr_static(cls, name)
    except AttributeError:
        static = None
    if isinstance(static, property):
        return None if static.fset is not None else f"{cls.__name__}.{name} is a read-only property"
    if static is not None and hasattr(type(static), "__set__"):
        return None  # a data descriptor (a slot, a custom descriptor) decides for itself
    if not hasattr(obj, "__dict__"):
        return f"{cls.__name__} has no __dict__ to hold {name!r}"
    return None


def _describe(value: object) -> str:
    return type(value).__name__


def release(
    *objects: Any,
    attrs: str | Sequence[str] = (),
    evict: bool = False,
    device: DeviceLike | None = "auto",
) -> ReleaseReport:
    """Release memory held through ``objects``, in the order that works, and report what came back.

    For each object, each attribute named in ``attrs`` is set to None (every object must have
    every attribute; nothing is changed otherwise). With ``evict=True`` the modules among the
    objects and among the dropped values are moved to the meta device first, freeing their
    parameters even where someone else holds them. Then ``gc.collect()``, synchronize and
    empty the cache (host: ``malloc_trim``).

    The caller's own names are not touched: ``release(model)`` cannot unbind ``model`` in the
    caller; drop it with ``del`` first, or hold it on an object and name the attribute.
    """
    dev = resolve_device(device)
    names = _normalise_attrs(attrs)
    if not isinstance(evict, bool):
        raise InvalidArgument("evict", evict, "True or False")
    # Every object and attribute is checked before the first one changes: a release that fails
    # half-way would leave some attributes None and others not.
    for obj in objects:
        missing = [n for n in names if not hasattr(obj, n)]
        if missing:
            accepted = f"attributes that {type(obj).__name__} has (missing: {', '.join(missing)})"
            raise InvalidArgument("attrs", tuple(names), accepted)
        for n in names:
            problem = _unsettable(obj, n)
            if problem is not None:
                raise InvalidArgument("attrs", tuple(names), f"attributes release() can set to None ({problem})")
    began = time.perf_counter()
    before = take(dev, nvml=True)
    dropped: list[str] = []
    evicted: list[str] = []
    watch: list[tuple[str, weakref.ref[Any]]] = []

    def drop() -> str:
        done: list[tuple[object, str, object]] = []
        for obj in objects:
            if evict and isinstance(obj, torch.nn.Module):
                evicted.append(evict_module(obj, dev))
            for name in names:
                value = getattr(obj, name)
                label = f"{type(obj).__name__}.{name} ({_describe(value)})"
                if value is None:
                    continue
                try:
                    setattr(obj, name, None)
                except Exception as error:
                    # A __setattr__ the checks above cannot see refused: put back what was set.
                    for done_obj, done_name, done_value in reversed(done):
                        setattr(done_obj, done_name, done_value)
                    accepted = f"attributes release() can set to None ({type(obj).__name__}.{name}: {error})"
                    raise InvalidArgument("attrs", names, accepted) from error
                done.append((obj, name, value))
                if evict and isinstance(value, torch.nn.Module):
                    evicted.append(evict_module(value, dev))
                try:
                    watch.append((label, weakref.ref(value)))
                except TypeError:
                    pass
                dropped.append(label)
                del value
        done.clear()
        return f"{len(dropped)} attribute(s) set to None" if dropped else ""

    steps, after = run_release(dev, drop, start=before)
    survivors = tuple(
        f"{label}: still referenced ({sys.getrefcount(obj) - 2} other reference(s))"
        for label, ref in watch
        if (obj := ref()) is not None
    )
    return ReleaseReport(
        device=str(dev),
        before=before,
        after=after,
        steps=steps,
        dropped=tuple(dropped),
        evicted=tuple(evicted),
        survivors=survivors,
        duration_s=time.perf_counter() - began,
    )


def empty_cache(device: DeviceLike | None = "auto") -> None:
    """Empty the allocator's cache of ``device`` (host: ``malloc_trim(0)``).

    The same as ``torch.cuda.empty_cache()``, also for the host, and seen by running sessions
    (which check that it did not run before the references were dropped).
    """
    dev = resolve_device(device)
    for listener in tuple(_hooks.empty_cache_listeners):
        listener(dev, 2)
    if is_host(dev):
        malloc_trim()
    elif cuda_initialized():
        with torch.cuda.device(dev):
            _raw_empty_cache()
