"""The torch CUDA caching allocator's figures, read without creating a CUDA context."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AllocatorReading:
    """``torch.cuda.memory_stats`` for one device, in bytes and counts."""

    allocated_bytes: int
    reserved_bytes: int
    active_bytes: int
    inactive_split_bytes: int
    peak_allocated_bytes: int
    peak_reserved_bytes: int
    num_alloc_retries: int
    num_ooms: int


_ZERO = AllocatorReading(0, 0, 0, 0, 0, 0, 0, 0)


def cuda_initialized() -> bool:
    """True once this process has a CUDA context through torch."""
    return torch.cuda.is_available() and bool(torch.cuda.is_initialized())  # type: ignore[no-untyped-call]


def read_allocator(device: torch.device) -> AllocatorReading:
    """The allocator's figures. Before torch initialised CUDA nothing was allocated: zeros,
    read without touching the driver (``memory_stats`` would create a context)."""
    if not cuda_initialized():
        return _ZERO
    stats = torch.cuda.memory_stats(device)
    return AllocatorReading(
        allocated_bytes=int(stats.get("allocated_bytes.all.current", 0)),
        reserved_bytes=int(stats.get("reserved_bytes.all.current", 0)),
        active_bytes=int(stats.get("active_bytes.all.current", 0)),
        inactive_split_bytes=int(stats.get("inactive_split_bytes.all.current", 0)),
        peak_allocated_bytes=int(stats.get("allocated_bytes.all.peak", 0)),
        peak_reserved_bytes=int(stats.get("reserved_bytes.all.peak", 0)),
        num_alloc_retries=int(stats.get("num_alloc_retries", 0)),
        num_ooms=int(stats.get("num_ooms", 0)),
    )


def allocated_bytes(device: torch.device) -> int:
    """Current allocated bytes, cheaply (for samplers)."""
    if not cuda_initialized():
        return 0
    return int(torch.cuda.memory_allocated(device))


def reserved_bytes(device: torch.device) -> int:
    """Current reserved bytes, cheaply (for samplers)."""
    if not cuda_initialized():
        return 0
    return int(torch.cuda.memory_reserved(device))


def reset_peak(device: torch.device) -> None:
    """Reset the allocator's peak counters (no-op before CUDA is initialised)."""
    if cuda_initialized():
        torch.cuda.reset_peak_memory_stats(device)
