"""The torch CUDA caching allocator's figures, read without creating a CUDA context."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class AllocatorReading:
    """``torch.cuda.memory_stats`` for one device, in bytes and counts.

    ``allocated_bytes`` counts whole blocks (every request rounded up to 512 B, and a large block
    may keep an unsplit tail); ``requested_bytes`` is what client code asked for
    (torch/cuda/memory.py:303, "compare this with allocated_bytes"), the figure a leak is judged
    by. None where this torch does not report it.

    Under the ``cudaMallocAsync`` backend torch reports reserved, inactive-split and peak-reserved
    figures as 0 whatever the driver holds: they are None here instead.
    """

    allocated_bytes: int
    requested_bytes: int | None
    reserved_bytes: int | None
    active_bytes: int
    inactive_split_bytes: int | None
    peak_allocated_bytes: int
    peak_reserved_bytes: int | None
    num_alloc_retries: int
    num_ooms: int


_ZERO = AllocatorReading(0, 0, 0, 0, 0, 0, 0, 0, 0)


def cuda_initialized() -> bool:
    """True once this process has a CUDA context through torch."""
    return bool(torch.cuda.is_initialized())  # type: ignore[no-untyped-call]


@functools.cache
def _device_count_uninitialised() -> int:
    # torch/cuda/__init__.py (2.13, device_count ~:1150): NVML is asked first
    # (_device_count_nvml, through libnvidia-ml by ctypes, honouring CUDA_VISIBLE_DEVICES), and only
    # where NVML cannot answer does it fall back to cudaGetDeviceCount. Cached: devices do not
    # come and go within a process, and NVML's init costs more than a session should.
    return int(torch.cuda.device_count())


def cuda_available() -> bool:
    """Whether this process can use a CUDA device, without initialising the driver.

    ``torch.cuda.is_available()`` calls ``cuInit`` unless ``PYTORCH_NVML_BASED_CUDA_CHECK=1``
    (torch/cuda/__init__.py:166-187), after which a ``fork()``ed child can no longer use CUDA.
    This asks NVML instead, as that variable would, and so leaves a later fork working.
    """
    return cuda_device_count() > 0


def cuda_device_count() -> int:
    """The number of visible CUDA devices, counted through NVML before CUDA is initialised."""
    if not torch.backends.cuda.is_built():  # type: ignore[no-untyped-call]
        return 0
    if cuda_initialized():
        return int(torch.cuda.device_count())  # cached by torch once initialised
    return _device_count_uninitialised()


def read_allocator(device: torch.device) -> AllocatorReading:
    """The allocator's figures. Before torch initialised CUDA nothing was allocated: zeros,
    read without touching the driver (``memory_stats`` would create a context)."""
    if not cuda_initialized():
        return _ZERO
    stats = torch.cuda.memory_stats(device)
    caching = torch.cuda.get_allocator_backend() == "native"
    return reading_from_stats(stats, caching)


def reading_from_stats(stats: dict[str, Any], caching: bool) -> AllocatorReading:
    """An :class:`AllocatorReading` from one ``memory_stats()`` dict (``caching``: the native
    backend, whose reserved figures are real)."""

    def cached(key: str) -> int | None:
        return int(stats.get(key, 0)) if caching else None

    requested = stats.get("requested_bytes.all.current")
    return AllocatorReading(
        allocated_bytes=int(stats.get("allocated_bytes.all.current", 0)),
        requested_bytes=None if requested is None else int(requested),
        reserved_bytes=cached("reserved_bytes.all.current"),
        active_bytes=int(stats.get("active_bytes.all.current", 0)),
        inactive_split_bytes=cached("inactive_split_bytes.all.current"),
        peak_allocated_bytes=int(stats.get("allocated_bytes.all.peak", 0)),
        peak_reserved_bytes=cached("reserved_bytes.all.peak"),
        num_alloc_retries=int(stats.get("num_alloc_retries", 0)),
        num_ooms=int(stats.get("num_ooms", 0)),
    )


def reset_peak(device: torch.device) -> None:
    """Reset the CUDA allocator's peak counters of ``device`` (no-op for the host, and before
    CUDA is initialised). The host must never reach torch here: in a process that initialised
    CUDA, ``reset_peak_memory_stats(torch.device("cpu"))`` raises ValueError (torch/cuda/memory.py
    reset_peak_memory_stats → torch/cuda/_utils.py _get_device_index: "Expected a cuda device")."""
    if device.type == "cuda" and cuda_initialized():
        torch.cuda.reset_peak_memory_stats(device)
