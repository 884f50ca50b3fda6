"""Listeners that higher layers (the census, the timeline, the metrics) attach to core events,
and the plotter the report layer lends the records.

The core calls them; it never imports who listens. Listeners must be cheap and never raise.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from vramguard.core._errors import SessionError

if TYPE_CHECKING:
    from vramguard.core._records import SessionReport

EmptyCacheListener = Callable[[torch.device, int], None]
"""Called with (device, stack depth to the user's call site) whenever vramguard.empty_cache runs."""

empty_cache_listeners: list[EmptyCacheListener] = []

ReportListener = Callable[["SessionReport"], None]
"""Called with each finished session's report (in the thread that ran it), before its limits
are enforced: a session that then raises LeakError or PeakExceeded is still seen."""

report_listeners: list[ReportListener] = []

_deferred: dict[int, BaseException] = {}


def defer_interrupt(error: BaseException) -> None:
    """Keep a ``KeyboardInterrupt`` (or ``SystemExit``) that a signal handler raised inside one of
    vramguard's ``gc.callbacks``: Python reports an exception leaving a gc callback as
    "unraisable" and drops it, so Ctrl-C would be lost. The session exiting next in this thread
    raises it (:func:`take_interrupt`). The first one per thread is kept."""
    _deferred.setdefault(threading.get_ident(), error)


def take_interrupt() -> BaseException | None:
    """The interrupt deferred in this thread, if any; forgets it."""
    return _deferred.pop(threading.get_ident(), None)


Plotter = Callable[..., Path]
"""``plotter(reports, path, **options) -> Path``: draws reports into a file, one panel each."""

_plotters: list[Plotter] = []


def register_plotter(plotter: Plotter) -> None:
    """Lend the records' ``.plot(path)`` a plotter: :mod:`vramguard.report.plot` registers its
    ``plot_reports`` when imported, so a record draws itself without importing its renderer."""
    _plotters[:] = [plotter]


def plot(reports: Sequence[object], path: str | os.PathLike[str], **options: Any) -> Path:
    """Draw ``reports`` into ``path`` with the registered plotter (what the records' ``plot`` runs)."""
    if not _plotters:
        raise SessionError(
            "plotting a report needs vramguard's report layer, never imported in this process:"
            " import vramguard.report.plot first, or call vramguard.plot_reports([report], path)"
        )
    return _plotters[0](reports, path, **options)
