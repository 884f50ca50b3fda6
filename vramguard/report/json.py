"""Reports as JSON files: ``save_report`` writes ``to_dict()``, ``load_report`` reads it back.

The ``"kind"`` key says which record a file holds ("session" or "release"). torch's memory
history (``SessionReport.memory_history``) is not JSON and is not saved; use
``SessionReport.dump_snapshot`` for it.

A session's ``"leaks"`` is the flat list of leaked tensors (each with the ``"group"`` that holds
it); ``"leak_groups"`` lists them again by group, largest first (``holder``, ``nbytes``, ``count``,
``tensors``). Loading rebuilds the groups from ``"leaks"``; files written before groups existed load.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from vramguard.core._errors import InvalidArgument
from vramguard.core._records import ReleaseReport, SessionReport

Report = SessionReport | ReleaseReport
_ACCEPTED = "a JSON report written by save_report() or `vramguard run --json`"


def save_report(report: Report, path: str | os.PathLike[str]) -> Path:
    """Write ``report.to_dict()`` to ``path`` as indented JSON; returns the path."""
    if not isinstance(report, (SessionReport, ReleaseReport)):
        raise InvalidArgument("report", report, "a SessionReport or a ReleaseReport")
    target = Path(path)
    target.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    return target


def load_report(path: str | os.PathLike[str]) -> Report:
    """Read a report written by :func:`save_report`: a SessionReport or a ReleaseReport by its kind."""
    source = Path(path)
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except OSError as error:
        raise InvalidArgument("path", str(path), f"{_ACCEPTED} ({error.strerror or error})") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidArgument("path", str(path), f"{_ACCEPTED} (not JSON: {error})") from error
    try:
        return report_from_dict(data)
    except InvalidArgument:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise InvalidArgument("path", str(path), f"{_ACCEPTED} (malformed: {error!r})") from error


def report_from_dict(data: Any) -> Report:
    """Rebuild a record from its ``to_dict()`` form, choosing the class by ``data["kind"]``."""
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind == "session":
        return SessionReport.from_dict(data)
    if kind == "release":
        return ReleaseReport.from_dict(data)
    raise InvalidArgument("kind", kind, '"session" or "release" (the "kind" key of a saved report)')
