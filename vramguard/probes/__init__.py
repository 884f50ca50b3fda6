"""Reading memory: the torch CUDA allocator, NVML and the host heap. Knows nothing of sessions."""

from __future__ import annotations

import typing

from vramguard import _lazy

# Each public name, written once: the module that defines it. Loaded on first use (see
# vramguard._lazy: an eager import here can deadlock across threads).
_LAZY = {
    "Block": "vramguard.probes._blocks",
    "live_blocks": "vramguard.probes._blocks",
    "new_blocks": "vramguard.probes._blocks",
    "parse_snapshot": "vramguard.probes._blocks",
    "read_blocks": "vramguard.probes._blocks",
    "uncovered": "vramguard.probes._blocks",
    "stranded": "vramguard.probes._blocks",
    "stranded_segments": "vramguard.probes._blocks",
    "ACCEPTED_DEVICES": "vramguard.probes._device",
    "DeviceLike": "vramguard.probes._device",
    "is_host": "vramguard.probes._device",
    "resolve_device": "vramguard.probes._device",
    "ResidentPeak": "vramguard.probes._host",
    "heap_in_use_bytes": "vramguard.probes._host",
    "malloc_trim": "vramguard.probes._host",
    "read_heap": "vramguard.probes._host",
    "read_resident_peak": "vramguard.probes._host",
    "reset_resident_peak": "vramguard.probes._host",
    "resident_bytes": "vramguard.probes._host",
    "resident_peak_reset_unavailable": "vramguard.probes._host",
    "resident_peak_resettable": "vramguard.probes._host",
    "list_devices": "vramguard.probes._nvml",
    "read_nvml": "vramguard.probes._nvml",
    "unavailable_reason": "vramguard.probes._nvml",
    "MemorySnapshot": "vramguard.probes._snapshot",
    "snapshot": "vramguard.probes._snapshot",
    "take": "vramguard.probes._snapshot",
    "take_host_and_peak": "vramguard.probes._snapshot",
    "new_workspaces": "vramguard.probes._workspaces",
    "seed_workspaces": "vramguard.probes._workspaces",
    "split_workspaces": "vramguard.probes._workspaces",
    "workspace_sizes": "vramguard.probes._workspaces",
    "cuda_available": "vramguard.probes._torch",
    "cuda_device_count": "vramguard.probes._torch",
    "cuda_initialized": "vramguard.probes._torch",
    "read_allocator": "vramguard.probes._torch",
    "reset_peak": "vramguard.probes._torch",
}

if typing.TYPE_CHECKING:  # generated from _LAZY: tests/project/test_exported_members.py
    from vramguard.probes._blocks import (
        Block,
        live_blocks,
        new_blocks,
        parse_snapshot,
        read_blocks,
        stranded,
        stranded_segments,
        uncovered,
    )
    from vramguard.probes._device import ACCEPTED_DEVICES, DeviceLike, is_host, resolve_device
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
    from vramguard.probes._snapshot import MemorySnapshot, snapshot, take, take_host_and_peak
    from vramguard.probes._torch import cuda_available, cuda_device_count, cuda_initialized, read_allocator, reset_peak
    from vramguard.probes._workspaces import new_workspaces, seed_workspaces, split_workspaces, workspace_sizes

    __all__ = [
        "ACCEPTED_DEVICES",
        "Block",
        "DeviceLike",
        "MemorySnapshot",
        "ResidentPeak",
        "cuda_available",
        "cuda_device_count",
        "cuda_initialized",
        "heap_in_use_bytes",
        "is_host",
        "list_devices",
        "live_blocks",
        "malloc_trim",
        "new_blocks",
        "new_workspaces",
        "parse_snapshot",
        "read_allocator",
        "read_blocks",
        "read_heap",
        "read_nvml",
        "read_resident_peak",
        "reset_peak",
        "reset_resident_peak",
        "resident_bytes",
        "resident_peak_reset_unavailable",
        "resident_peak_resettable",
        "resolve_device",
        "seed_workspaces",
        "snapshot",
        "split_workspaces",
        "stranded",
        "stranded_segments",
        "take",
        "take_host_and_peak",
        "unavailable_reason",
        "uncovered",
        "workspace_sizes",
    ]
else:  # hidden from mypy, which then still flags unknown names
    __getattr__, __dir__, __all__ = _lazy.attach(__name__, _LAZY)
