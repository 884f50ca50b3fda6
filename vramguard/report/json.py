"""Reports as JSON files: ``save_report`` writes ``to_dict()``, ``load_report`` reads it back.

The ``"kind"`` key says which record a file holds ("session" or "release"). torch's memory
history (``SessionReport.memory_history``) is not JSON and is not saved; use
``SessionReport.dump_snapshot`` for it.

A session's ``"leaks"`` is the flat list of leaked tensors (each with the ``"group"`` that holds
it); ``"leak_groups"`` lists them again by group, largest first (``holder``, ``nbytes``, ``count``,
``tensors``). Loading rebuilds the groups from ``"leaks"``; files written before groups existed load.

``"schema"`` is the format's version (1); files written before the key existed are schema 0 and
load unchanged. Every key is checked on loading: a bad one raises ``ReportFormatError`` naming it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from vramguard.core._errors import InvalidArgument, ReportFormatError
from vramguard.core._multi_report import MultiDeviceReport
from vramguard.core._records import ReleaseReport, SessionReport
from vramguard.distributed import ClusterReport

Report = SessionReport | ReleaseReport | MultiDeviceReport | ClusterReport
_RECORDS = (SessionReport, ReleaseReport, MultiDeviceReport, ClusterReport)
_ACCEPTED = "a JSON report written by save_report() or `vramguard run --json`"


def save_report(report: Report, path: str | os.PathLike[str]) -> Path:
    """Write ``report.to_dict()`` (with ``"schema": 1``) to ``path`` as indented JSON; returns the path.

    The path is checked before anything is written: a missing folder or a directory raises
    :class:`~vramguard.InvalidArgument` naming ``path``.
    """
    if not isinstance(report, _RECORDS):
        raise InvalidArgument("report", report, "a SessionReport, ReleaseReport, MultiDeviceReport or ClusterReport")
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidArgument("path", path, "a file path (str or os.PathLike)")
    target = Path(path)
    text = json.dumps(report.to_dict(), indent=2) + "\n"
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as error:
        raise InvalidArgument("path", str(path), f"a writable file path ({error.strerror or error})") from error
    return target


def load_report(path: str | os.PathLike[str]) -> Report:
    """Read a report written by :func:`save_report`: a SessionReport or a ReleaseReport by its kind.

    Reads every schema so far (``"schema": 1``, and files without the key: schema 0). A file that
    cannot be read or is not JSON raises :class:`~vramguard.InvalidArgument` naming ``path``; JSON
    with a missing or malformed key raises :class:`~vramguard.ReportFormatError` naming the key.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidArgument("path", path, "a file path (str or os.PathLike)")
    source = Path(path)
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except OSError as error:
        raise InvalidArgument("path", str(path), f"{_ACCEPTED} ({error.strerror or error})") from error
    except (ValueError, RecursionError) as error:
        # JSONDecodeError and UnicodeDecodeError are ValueErrors, and so is an integer literal
        # longer than Python's int-string limit; nesting too deep for the parser is a RecursionError.
        reason = str(error).splitlines()[0][:120] if str(error) else type(error).__name__
        raise InvalidArgument("path", str(path), f"{_ACCEPTED} (not JSON: {reason})") from error
    return report_from_dict(data)


def report_from_dict(data: Any) -> Report:
    """Rebuild a record from its ``to_dict()`` form, choosing the class by ``data["kind"]``; a
    missing or malformed key raises :class:`~vramguard.ReportFormatError`."""
    if not isinstance(data, dict):
        raise ReportFormatError("(top level)", data, "a JSON object with a \"kind\" key")
    kind = data.get("kind")
    if kind == "session":
        return SessionReport.from_dict(data)
    if kind == "release":
        return ReleaseReport.from_dict(data)
    if kind == "multi":  # one session over several devices (gpu_session(device="all"))
        return MultiDeviceReport.from_dict(data)
    if kind == "cluster":  # one session across torch.distributed ranks
        return ClusterReport.from_dict(data)
    raise ReportFormatError("kind", kind, '"session", "release", "multi" or "cluster"', missing="kind" not in data)
