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

import logging
import os
import typing

from vramguard import _lazy

# Each public name, written once: the module that defines it. Every name is imported on first
# use: ``import vramguard.<submodule>`` runs this file, and pytest imports
# ``vramguard.pytest_plugin`` (its pytest11 entry point) in every run in the environment, torch or
# no torch in the tests. Even the torch-free errors load lazily: a package __init__ that imports
# its own submodules can deadlock against a thread importing one of them directly (Python locks a
# submodule before its parent package).
_LAZY = {
    "BudgetExceeded": "vramguard.core._errors",
    "ChildCrashed": "vramguard.core._errors",
    "ClusterError": "vramguard.core._errors",
    "InvalidArgument": "vramguard.core._errors",
    "IsolationError": "vramguard.core._errors",
    "LeakError": "vramguard.core._errors",
    "LeakWarning": "vramguard.core._errors",
    "MissingDependency": "vramguard.core._errors",
    "NotPicklable": "vramguard.core._errors",
    "ParkError": "vramguard.core._errors",
    "LedgerNotWritten": "vramguard.core._errors",
    "PeakExceeded": "vramguard.core._errors",
    "ProbeUnavailable": "vramguard.core._errors",
    "ReleaseOrderError": "vramguard.core._errors",
    "ReleaseOrderWarning": "vramguard.core._errors",
    "ReportFormatError": "vramguard.core._errors",
    "SessionError": "vramguard.core._errors",
    "VramGuardError": "vramguard.core._errors",
    "format_size": "vramguard.core._sizes",
    "parse_size": "vramguard.core._sizes",
    "Parked": "vramguard.parking",
    "ParkReport": "vramguard.parking",
    "park": "vramguard.parking",
    "parked": "vramguard.parking",
    "wake": "vramguard.parking",
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
    "HOST_NOISE_FLOOR_BYTES": "vramguard.core._leak_figure",
    "GpuSession": "vramguard.core._session",
    "gpu_session": "vramguard._api",
    "SessionOptions": "vramguard.core._options",
    "SearchBounds": "vramguard.core._options",
    "MultiDeviceSession": "vramguard.core._multi",
    "resolve_devices": "vramguard.core._multi",
    "MultiDeviceReport": "vramguard.core._multi_report",
    "ClusterReport": "vramguard.distributed",
    "gather_report": "vramguard.distributed",
    "MemorySnapshot": "vramguard.probes",
    "resolve_device": "vramguard.probes",
    "snapshot": "vramguard.probes",
    "plot_reports": "vramguard.report.plot",
    "adaptive_batch": "vramguard.resilience",
    "isolated": "vramguard.resilience",
    "Isolated": "vramguard.resilience",
    "watch": "vramguard.resilience",
    "Watch": "vramguard.resilience",
    "load_report": "vramguard.report.json",
    "save_report": "vramguard.report.json",
    "explain": "vramguard.ledger",
    "mark": "vramguard.ledger",
    "install_explain_signal": "vramguard.ledger",
    "LedgerLine": "vramguard.ledger",
    "MemoryLedger": "vramguard.ledger",
}

if typing.TYPE_CHECKING:  # generated from _LAZY: tests/project/test_exported_members.py
    from vramguard._api import gpu_session
    from vramguard.core._errors import (
        BudgetExceeded,
        ChildCrashed,
        ClusterError,
        InvalidArgument,
        IsolationError,
        LeakError,
        LeakWarning,
        LedgerNotWritten,
        MissingDependency,
        NotPicklable,
        ParkError,
        PeakExceeded,
        ProbeUnavailable,
        ReleaseOrderError,
        ReleaseOrderWarning,
        ReportFormatError,
        SessionError,
        VramGuardError,
    )
    from vramguard.core._leak_figure import HOST_NOISE_FLOOR_BYTES
    from vramguard.core._multi import MultiDeviceSession, resolve_devices
    from vramguard.core._multi_report import MultiDeviceReport
    from vramguard.core._options import SearchBounds, SessionOptions
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
    from vramguard.core._session import GpuSession
    from vramguard.core._sizes import format_size, parse_size
    from vramguard.distributed import ClusterReport, gather_report
    from vramguard.ledger import LedgerLine, MemoryLedger, explain, install_explain_signal, mark
    from vramguard.parking import Parked, ParkReport, park, parked, wake
    from vramguard.probes import MemorySnapshot, resolve_device, snapshot
    from vramguard.report.json import load_report, save_report
    from vramguard.report.plot import plot_reports
    from vramguard.resilience import Isolated, Watch, adaptive_batch, isolated, watch

    __all__ = [
        "HOST_NOISE_FLOOR_BYTES",
        "BudgetExceeded",
        "ChildCrashed",
        "ClusterError",
        "ClusterReport",
        "GpuSession",
        "InvalidArgument",
        "Isolated",
        "IsolationError",
        "Leak",
        "LeakError",
        "LeakGroup",
        "LeakWarning",
        "Leaks",
        "LedgerLine",
        "LedgerNotWritten",
        "MemoryLedger",
        "MemorySnapshot",
        "MissingDependency",
        "MultiDeviceReport",
        "MultiDeviceSession",
        "NotPicklable",
        "OrderViolation",
        "ParkError",
        "ParkReport",
        "Parked",
        "PeakExceeded",
        "ProbeUnavailable",
        "ReleaseOrderError",
        "ReleaseOrderWarning",
        "ReleaseReport",
        "ReleaseStep",
        "ReportFormatError",
        "SearchBounds",
        "SessionError",
        "SessionOptions",
        "SessionReport",
        "Timeline",
        "VramGuardError",
        "Watch",
        "__version__",
        "adaptive_batch",
        "empty_cache",
        "explain",
        "format_size",
        "gather_report",
        "gpu_session",
        "install_explain_signal",
        "isolated",
        "load_report",
        "mark",
        "park",
        "parked",
        "parse_size",
        "plot_reports",
        "release",
        "resolve_device",
        "resolve_devices",
        "save_report",
        "snapshot",
        "wake",
        "watch",
    ]
else:  # hidden from mypy, which then still flags unknown names
    __getattr__, __dir__, __all__ = _lazy.attach(__name__, _LAZY, own=("__version__",))


# The "vramguard" logger (debug: each release step; info: each session's summary; warning: leaks)
# stays silent until the application configures logging.
logging.getLogger("vramguard").addHandler(logging.NullHandler())

if os.environ.get("VRAMGUARD_EXPLAIN_SIGNAL", "").strip():
    # The one submodule imported at import time, and only when asked: the handler must exist
    # before a server runs, and the module is stdlib-only (torch loads when the signal comes).
    from vramguard.ledger._signal import install_from_environment

    install_from_environment()


def load_ipython_extension(ipython: typing.Any) -> None:
    """``%load_ext vramguard``: the ``%%vram``, ``%vram`` and ``%vram_release`` magics."""
    from vramguard.integrations.notebook import load_ipython_extension as load

    load(ipython)


__version__ = "0.1.0"
