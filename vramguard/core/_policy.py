"""What a finished session does with its report: the limits (``max_peak``, ``leaks``,
``strict``) and the notes attached to a failed block's exception."""

from __future__ import annotations

import os
import sys
import warnings

from vramguard.core._errors import (
    LeakError,
    LeakWarning,
    PeakExceeded,
    ReleaseOrderError,
    ReleaseOrderWarning,
)
from vramguard.core._options import SessionOptions
from vramguard.core._records import Leaks, SessionReport
from vramguard.core._sizes import format_size

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _user_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside vramguard, so
    warning filters by module and the printed location name the user's code."""
    frame = sys._getframe(1)
    level = 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    return level


def enforce(options: SessionOptions, report: SessionReport) -> None:
    """Raise or warn for what the report shows above the session's limits (a block that raised
    is never judged: its own exception comes through)."""
    if options.max_peak_bytes is not None:
        increase = report.peak_increase_bytes
        if increase is not None and increase > options.max_peak_bytes:
            raise PeakExceeded(
                f"session {report.name!r} was limited to {format_size(options.max_peak_bytes)} "
                f"but peaked at {format_size(increase)} above its start\n{report}",
                report,
            )
    if report.order_violations:
        calls = "; ".join(str(v) for v in report.order_violations)
        message = f"session {report.name!r}: {calls}. Drop the references before emptying the cache"
        if options.strict:
            raise ReleaseOrderError(f"{message}\n{report}", report)
        warnings.warn(ReleaseOrderWarning(message), stacklevel=_user_stacklevel())
    leaked = report.leaked_bytes or 0
    if options.leaks != "ignore" and leaked > options.leak_tolerance_bytes:
        message = (
            f"session {report.name!r} leaked {format_size(leaked)} "
            f"(tolerance {format_size(options.leak_tolerance_bytes)})"
        )
        if options.leaks == "raise":
            raise LeakError(f"{message}\n{report}", report)
        warnings.warn(LeakWarning(_stable(message, report)), stacklevel=_user_stacklevel())


def _stable(message: str, report: SessionReport) -> str:
    """A warning's text: the leak and its holders, never the report's timings or memory figures.

    Python's warning registry keeps one entry per distinct text (per module and line): a text
    that differed in every session (a duration, the allocator's figures) grew it by 1.71 MiB over
    1,000 warned sessions. The same leak from the same line now warns with the same text; the
    full report stays on ``session.report``.
    """
    lines = [message, *(f"  {line}" for line in Leaks(report.leaks).lines())]
    if not report.leaks:
        lines.append("  census off or no tensor named: see session.report for the figures")
    return "\n".join(lines)


def add_note(exc: BaseException, note: str) -> None:
    """Attach ``note`` to the block's exception where it can take one. The user's exception always
    comes through unchanged: a ``__notes__`` that is not a list, or an ``add_note`` (or a
    ``__getattr__``) that raises, means no note, never a vramguard error in its place."""
    try:
        notes = getattr(exc, "__notes__", None)
        if notes is not None and not isinstance(notes, list):
            return
        if sys.version_info >= (3, 11):
            exc.add_note(note)
        else:  # Python 3.10: no add_note; the traceback module prints __notes__ from 3.11 on
            exc.__notes__ = [*(notes or []), note]
    except Exception:
        return
