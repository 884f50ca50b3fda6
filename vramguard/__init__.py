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

import importlib
import typing

# Torch-free: imported at once.
from vramguard.core._errors import (
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
from vramguard.core._sizes import format_size, parse_size

if typing.TYPE_CHECKING:
    from vramguard.core._lifecycle import HOST_NOISE_FLOOR_BYTES
    from vramguard.core._records import (
        Leak,
        LeakGroup,
        Leaks,
        OrderViolation,
        ReleaseReport,
        ReleaseStep,
        SessionReport,
        Timeline,
    )
    from vramguard.core._release import empty_cache, release
    from vramguard.core._session import GpuSession, gpu_session
    from vramguard.probes import MemorySnapshot, resolve_device, snapshot
    from vramguard.report.plot import plot_reports

# The names whose modules import torch, imported on first use: ``import vramguard.<submodule>``
# runs this file, and pytest imports ``vramguard.pytest_plugin`` (its pytest11 entry point) in
# every run in the environment, torch or no torch in the tests.
_LAZY = {
    "Leak": "vramguard.core._records",
    "LeakGroup": "vramguard.core._records",
    "Leaks": "vramguard.core._records",
    "OrderViolation": "vramguard.core._records",
    "ReleaseReport": "vramguard.core._records",
    "ReleaseStep": "vramguard.core._records",
    "SessionReport": "vramguard.core._records",
    "Timeline": "vramguard.core._records",
    "empty_cache": "vramguard.core._release",
    "release": "vramguard.core._release",
    "HOST_NOISE_FLOOR_BYTES": "vramguard.core._lifecycle",
    "GpuSession": "vramguard.core._session",
    "gpu_session": "vramguard.core._session",
    "MemorySnapshot": "vramguard.probes",
    "resolve_device": "vramguard.probes",
    "snapshot": "vramguard.probes",
    "plot_reports": "vramguard.report.plot",
}

if not typing.TYPE_CHECKING:  # hidden from mypy, which then still flags unknown names

    def __getattr__(name: str) -> object:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *_LAZY})


__version__ = "0.1.0"

__all__ = [
    "HOST_NOISE_FLOOR_BYTES",
    "GpuSession",
    "InvalidArgument",
    "Leak",
    "LeakError",
    "LeakGroup",
    "LeakWarning",
    "Leaks",
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
