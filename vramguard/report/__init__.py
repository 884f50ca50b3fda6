"""Turning records into things people read: rich tables, JSON files and plots.

Built from the plain records (:class:`~vramguard.SessionReport`, :class:`~vramguard.ReleaseReport`);
rich and matplotlib are imported only when a table or a plot is made, and a missing one raises
:class:`~vramguard.MissingDependency` with the ``pip install`` to run.
"""

from __future__ import annotations

from vramguard.report.json import load_report, report_from_dict, save_report
from vramguard.report.plot import plot_report, plot_reports
from vramguard.report.text import make_console, render, render_devices

__all__ = [
    "load_report",
    "make_console",
    "plot_report",
    "plot_reports",
    "render",
    "render_devices",
    "report_from_dict",
    "save_report",
]
