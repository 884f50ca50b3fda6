"""Reading memory: the torch CUDA allocator, NVML and the host heap. Knows nothing of sessions."""

from __future__ import annotations

from vramguard.probes._blocks import Block, live_blocks, new_blocks, parse_snapshot, uncovered
from vramguard.probes._device import ACCEPTED_DEVICES, DeviceLike, resolve_device
from vramguard.probes._host import (
    ResidentPeak,
    heap_in_use_bytes,
    malloc_trim,
    read_heap,
    read_resident_peak,
    reset_resident_peak,
    resident_bytes,
    resident_peak_reset_unavailable,
    resident_peak_resettable,
)
from vramguard.probes._nvml import list_devices, read_nvml, unavailable_reason
from vramguard.probes._snapshot import MemorySnapshot, snapshot, take
from vramguard.probes._torch import cuda_initialized, read_allocator, reset_peak

__all__ = [
    "ACCEPTED_DEVICES",
    "Block",
    "DeviceLike",
    "MemorySnapshot",
    "ResidentPeak",
    "cuda_initialized",
    "heap_in_use_bytes",
    "list_devices",
    "live_blocks",
    "malloc_trim",
    "new_blocks",
    "parse_snapshot",
    "read_allocator",
    "read_heap",
    "read_nvml",
    "read_resident_peak",
    "reset_peak",
    "reset_resident_peak",
    "resident_bytes",
    "resident_peak_reset_unavailable",
    "resident_peak_resettable",
    "resolve_device",
    "snapshot",
    "take",
    "unavailable_reason",
    "uncovered",
]
