"""``MemorySnapshot``: one reading of a device's memory, each field defined once for both devices."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

from vramguard.core._decode import Fields
from vramguard.core._errors import InvalidArgument
from vramguard.probes._device import DeviceLike, is_host, resolve_device
from vramguard.probes._host import host_note, read_heap, read_host, read_uss, resident_bytes
from vramguard.probes._nvml import read_nvml
from vramguard.probes._torch import cuda_initialized, read_allocator


@dataclass(frozen=True)
class MemorySnapshot:
    """Memory of one device at one moment. Sizes in bytes; ``None`` where a source cannot be
    read on this device or platform (``notes`` says why), never a made-up 0.

    Fields on both devices:
      allocated_bytes   bytes handed out to live objects: the CUDA caching allocator's
                        allocated bytes; on the host, glibc malloc's in-use bytes
                        (mallinfo2 uordblks + hblkhd), where torch's CPU tensors live.
      reserved_bytes    bytes this process holds from the device: the allocator's reserved
                        segments; on the host, resident anonymous memory (RssAnon + RssShmem),
                        which also counts Python's own arenas, so it is always above allocated.
      cached_bytes      reserved − allocated: memory held but not in use (the CUDA cache; on
                        the host the free-but-resident heap plus what malloc does not see).
      rss_bytes         the process's resident set (host memory, on both devices).
      uss_bytes         memory unique to this process (only when asked: it walks page tables).
    CUDA only (None on the host):
      requested_bytes   what client code asked the allocator for (allocated_bytes rounds each
                        request up to a whole block, at least 512 B): leaks are judged by it.
      active_bytes, inactive_split_bytes, peak_allocated_bytes, peak_reserved_bytes,
      num_alloc_retries, num_ooms   from torch.cuda.memory_stats().
    NVML only (None without a driver, or on the host):
      device_total_bytes, device_used_bytes   the whole GPU;
      process_used_bytes   this process, matched by pid in NVML's compute-process list;
      context_bytes        process_used − reserved: the CUDA context (its code, kernels and
                           per-stream state) and memory allocated outside torch's allocator
                           (NCCL, cupy, CTranslate2). cuBLAS/cuBLASLt workspaces are not here:
                           torch allocates them through the caching allocator
                           (CublasHandlePool.cpp, getNewWorkspace), so they are in reserved.
    Host only (None on CUDA):
      heap_free_bytes      malloc's free chunks (fordblks). It does not drop after
                           malloc_trim even though the pages went back to the OS.
    """

    device: str
    time_s: float
    allocated_bytes: int | None
    reserved_bytes: int | None
    rss_bytes: int | None
    uss_bytes: int | None = None
    requested_bytes: int | None = None
    active_bytes: int | None = None
    inactive_split_bytes: int | None = None
    peak_allocated_bytes: int | None = None
    peak_reserved_bytes: int | None = None
    num_alloc_retries: int | None = None
    num_ooms: int | None = None
    device_total_bytes: int | None = None
    device_used_bytes: int | None = None
    process_used_bytes: int | None = None
    context_bytes: int | None = None
    heap_free_bytes: int | None = None
    cuda_initialized: bool = False
    notes: tuple[str, ...] = ()

    @property
    def cached_bytes(self) -> int | None:
        """reserved − allocated, or None if either is unknown."""
        if self.allocated_bytes is None or self.reserved_bytes is None:
            return None
        return self.reserved_bytes - self.allocated_bytes

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of every field, plus ``cached_bytes``."""
        data = asdict(self)
        data["notes"] = list(self.notes)
        data["cached_bytes"] = self.cached_bytes
        return data

    @classmethod
    def from_dict(cls, data: Any) -> MemorySnapshot:
        """Rebuild a snapshot written by :meth:`to_dict`; a missing or malformed key raises
        :class:`~vramguard.ReportFormatError` naming it (a reading that was not taken is null)."""
        read = data if isinstance(data, Fields) else Fields(data)
        figures = {name: read.integer(name, None, nullable=True) for name in _FIGURES}
        return cls(
            device=read.string("device"),
            time_s=read.number("time_s"),
            cuda_initialized=read.flag("cuda_initialized", False),
            notes=read.strings("notes", ()),
            **figures,
        )


def _host_snapshot(now: float, with_peak: bool) -> tuple[MemorySnapshot, int | None]:
    """The host's snapshot now, and VmHWM when ``with_peak`` (see :func:`read_host`)."""
    in_use, free, rss, anon, hwm = read_host(with_peak)
    # Built without the frozen dataclass's __init__ (one object.__setattr__ per field, 20
    # fields): a session reads the host two or three times, and this is its hot path.
    # The fields not set here read their defaults from the class (a dataclass keeps each plain
    # default as a class attribute).
    made = object.__new__(MemorySnapshot)
    fields = made.__dict__
    fields["device"] = "cpu"
    fields["time_s"] = now
    fields["allocated_bytes"] = in_use
    fields["reserved_bytes"] = anon
    fields["rss_bytes"] = rss
    fields["heap_free_bytes"] = free
    note = host_note()
    if note:
        fields["notes"] = (note,)
    return made, hwm


_FIGURES = tuple(
    name for name in MemorySnapshot.__dataclass_fields__ if name.endswith("_bytes") or name.startswith("num_")
)
"""The byte and count fields: each an int or None."""


def snapshot(device: DeviceLike | None = "auto", *, nvml: bool = True, uss: bool = True) -> MemorySnapshot:
    """Read the memory of ``device`` now ("auto", "cpu", "cuda", "cuda:N", an int or a torch.device).

    Never creates a CUDA context: before torch initialised CUDA the allocator figures are 0
    (nothing was allocated) and NVML is still read. ``nvml=False`` skips NVML; ``uss=False``
    skips the USS walk (about 2 ms); sessions use both for their cheap mid-block readings.
    """
    for flag, value in (("nvml", nvml), ("uss", uss)):
        if not isinstance(value, bool):  # a tensor or an array has no single truth value
            raise InvalidArgument(flag, value, "True or False")
    dev = resolve_device(device)
    return take(dev, nvml=nvml, uss=uss)


def take_host_and_peak() -> tuple[MemorySnapshot, int | None]:
    """The host's reading and the kernel's resident high-water mark, from one read of /proc
    (a host session's exit needs both)."""
    return _host_snapshot(time.monotonic(), True)


def take(dev: torch.device, *, nvml: bool = True, uss: bool = False) -> MemorySnapshot:
    """:func:`snapshot` for an already resolved device (the session's hot path)."""
    now = time.monotonic()
    if is_host(dev):
        made = _host_snapshot(now, False)[0]
        if uss:
            made.__dict__["uss_bytes"] = read_uss()
        return made

    index = dev.index if dev.index is not None else 0
    stats = read_allocator(dev)
    initialized = cuda_initialized()
    # Only the process's resident figures matter here: statm, or the full read when USS is asked.
    full = read_heap(uss=True) if uss else None
    statm = resident_bytes() if full is None else None
    notes_list: list[str] = []
    total = used = process = context = None
    if nvml:
        reading = read_nvml(index, os.getpid())
        total, used, process = reading.device_total_bytes, reading.device_used_bytes, reading.process_used_bytes
        if reading.reason:
            notes_list.append(f"nvml: {reading.reason}")
        if process is not None:
            context = None if stats.reserved_bytes is None else process - stats.reserved_bytes
    return MemorySnapshot(
        device=f"cuda:{index}",
        time_s=now,
        allocated_bytes=stats.allocated_bytes,
        requested_bytes=stats.requested_bytes,
        reserved_bytes=stats.reserved_bytes,
        rss_bytes=full.rss_bytes if full is not None else (None if statm is None else statm[0]),
        uss_bytes=None if full is None else full.uss_bytes,
        active_bytes=stats.active_bytes,
        inactive_split_bytes=stats.inactive_split_bytes,
        peak_allocated_bytes=stats.peak_allocated_bytes,
        peak_reserved_bytes=stats.peak_reserved_bytes,
        num_alloc_retries=stats.num_alloc_retries,
        num_ooms=stats.num_ooms,
        device_total_bytes=total,
        device_used_bytes=used,
        process_used_bytes=process,
        context_bytes=context,
        cuda_initialized=initialized,
        notes=tuple(notes_list),
    )
