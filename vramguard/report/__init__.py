"""Turning records into things people read: rich tables, JSON files and plots.

Built from the plain records (:class:`~vramguard.SessionReport`, :class:`~vramguard.ReleaseReport`);
rich and matplotlib are imported only when a table or a plot is made, and a missing one raises
:class:`~vramguard.MissingDependency` with the ``pip install`` to run.
"""

from __future__ import annotations

import importlib
import typing

if typing.TYPE_CHECKING:
    from vramguard.report.json import load_report, report_from_dict, save_report
    from vramguard.report.plot import plot_report, plot_reports
    from vramguard.report.text import make_console, render, render_devices

# Names load on first use: a package whose __init__ imports its own submodules can deadlock
# against a thread that imports one of them directly (Python locks a submodule before its
# parent package), so nothing here imports a submodule at import time.
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
