"""vramguard: stop PyTorch programs from losing GPU memory.

Measure a block's memory before, at peak and after; release it in the only order that works
(drop references, ``gc.collect()``, synchronize, ``empty_cache()``); prove it came back; and
name what leaked and who holds it::

    with vramguard.gpu_session("whisper", device="cuda", max_peak="6 GiB") as s:
        model = s.own(load_model())
        s.keep(model(x))
    print(s.report)

``device="cpu"`` measures the process heap (glibc malloc and resident memory) and releases
with ``malloc_trim``.
"""

from __future__ import annotations

from vramguard._errors import (
    InvalidArgument,
    LeakError,
    LeakWarning,
    MissingDependency,
    PeakExceeded,
    ProbeUnavailable,
    ReleaseOrderError,
    ReleaseOrderWarning,
    SessionError,
    VramGuardError,
)
from vramguard._records import Leak, OrderViolation, ReleaseReport, ReleaseStep, SessionReport, Timeline
from vramguard._release import empty_cache, release
from vramguard._session import HOST_NOISE_FLOOR_BYTES, GpuSession, gpu_session
from vramguard._sizes import format_size, parse_size
from vramguard.probes import MemorySnapshot, resolve_device, snapshot
from vramguard.report.plot import plot_reports

__version__ = "0.1.0"

__all__ = [
    "HOST_NOISE_FLOOR_BYTES",
    "GpuSession",
    "InvalidArgument",
    "Leak",
    "LeakError",
    "LeakWarning",
    "MemorySnapshot",
    "MissingDependency",
    "OrderViolation",
    "PeakExceeded",
    "ProbeUnavailable",
    "ReleaseOrderError",
    "ReleaseOrderWarning",
    "ReleaseReport",
    "ReleaseStep",
    "SessionError",
    "SessionReport",
    "Timeline",
    "VramGuardError",
    "__version__",
    "empty_cache",
    "format_size",
    "gpu_session",
    "parse_size",
    "plot_reports",
    "release",
    "resolve_device",
    "snapshot",
]
