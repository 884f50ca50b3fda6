"""Turning records into things people read: rich tables, JSON files and plots.

Built from the plain records (:class:`~vramguard.SessionReport`, :class:`~vramguard.ReleaseReport`);
rich and matplotlib are imported only when a table or a plot is made, and a missing one raises
:class:`~vramguard.MissingDependency` with the ``pip install`` to run.
"""

from __future__ import annotations

import typing

from vramguard import _lazy

# Each public name, written once: the module that defines it. Loaded on first use (see
# vramguard._lazy: an eager import here can deadlock across threads).
_LAZY = {
    "load_report": "vramguard.report.json",
    "report_from_dict": "vramguard.report.json",
    "save_report": "vramguard.report.json",
    "plot_report": "vramguard.report.plot",
    "plot_reports": "vramguard.report.plot",
    "make_console": "vramguard.report.text",
    "render": "vramguard.report.text",
    "render_devices": "vramguard.report.text",
}

if typing.TYPE_CHECKING:  # generated from _LAZY: tests/project/test_exported_members.py
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
else:  # hidden from mypy, which then still flags unknown names
    __getattr__, __dir__, __all__ = _lazy.attach(__name__, _LAZY)
