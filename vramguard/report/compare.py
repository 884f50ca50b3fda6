"""Reports of different runs side by side (``vramguard report a.json b.json``): one column per
report, the differences from the first, and each report's leaks.

Several files merge into one session across ranks only when they are the rank files of one run
(:func:`vramguard.report.merge.one_run`); any other set is compared here, never summed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vramguard.core._multi_report import MultiDeviceReport
from vramguard.core._records import ReleaseReport, SessionReport
from vramguard.core._sizes import format_size
from vramguard.report._rich import line, plain
from vramguard.report._words import CUDA, HOST, Words, is_host
from vramguard.report.text import leaks_table, legend

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table

Comparable = SessionReport | ReleaseReport | MultiDeviceReport
COMPARABLE = (SessionReport, ReleaseReport, MultiDeviceReport)


@dataclass(frozen=True)
class Compared:
    """One report in the comparison and the label its column goes by (its file's name)."""

    label: str
    report: Comparable


def _devices(report: Comparable) -> tuple[str, ...]:
    return report.device_names if isinstance(report, MultiDeviceReport) else (report.device,)


def _sum(values: Sequence[int | None]) -> int | None:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def _snapshot(moment: str, figure: str) -> Callable[[Comparable], int | None]:
    """``before`` or ``after``'s ``allocated_bytes`` or ``reserved_bytes``, summed over a
    multi-device report's devices."""

    def read(report: Comparable) -> int | None:
        sessions = report.devices if isinstance(report, MultiDeviceReport) else (report,)
        values: list[int | None] = [getattr(getattr(r, moment), figure) for r in sessions]
        return _sum(values)

    return read


def _session_figure(name: str) -> Callable[[Comparable], int | None]:
    """A figure only sessions have (a release has no peak, kept or leaked bytes): None for a release."""

    def read(report: Comparable) -> int | None:
        if isinstance(report, ReleaseReport):
            return None
        value: int | None = getattr(report, name)
        return value

    return read


def _rows(words: Words) -> tuple[tuple[str, Callable[[Comparable], int | None]], ...]:
    return (
        (f"{words.allocated} before", _snapshot("before", "allocated_bytes")),
        (f"{words.allocated} peak", _session_figure("peak_allocated_bytes")),
        (f"{words.allocated} after", _snapshot("after", "allocated_bytes")),
        (f"{words.reserved} before", _snapshot("before", "reserved_bytes")),
        (f"{words.reserved} peak", _session_figure("peak_reserved_bytes")),
        (f"{words.reserved} after", _snapshot("after", "reserved_bytes")),
        ("peak above start", _session_figure("peak_increase_bytes")),
        ("reclaimed", lambda r: r.reclaimed_bytes),
        (f"{words.cached} after", lambda r: r.cached_bytes_after),
        ("kept", _session_figure("kept_bytes")),
        ("leaked", _session_figure("leaked_bytes")),
    )


def _words(items: Sequence[Compared]) -> Words:
    """The host's words when every report is of the host, the allocator's when none is; mixed, both."""
    kinds = {is_host(device) for item in items for device in _devices(item.report)}
    if kinds == {True}:
        return HOST
    if kinds == {False}:
        return CUDA
    return Words(
        allocated=f"{CUDA.allocated} / {HOST.allocated}",
        reserved=f"{CUDA.reserved} / {HOST.reserved}",
        cached=f"{CUDA.cached} / {HOST.cached}",
        peak=CUDA.peak,
        legend=HOST.legend,
    )


def _difference(value: int | None, first: int | None) -> str:
    return format_size(None if value is None or first is None else value - first, signed=True)


def compare_table(items: Sequence[Compared]) -> Table:
    """One column per report (its session, device and figures), then one per difference from the first."""
    from rich import box
    from rich.table import Table

    table = Table(title="compared", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False)
    table.add_column("", style="bold")
    for index, item in enumerate(items, 1):
        table.add_column(plain(f"{index}: {item.label}"), justify="right")
    for index in range(2, len(items) + 1):
        table.add_column(f"{index} − 1", justify="right")
    reports = [item.report for item in items]
    table.add_row("session", *(plain(_name(r)) for r in reports), *[""] * (len(items) - 1))
    table.add_row("device", *(plain(", ".join(_devices(r))) for r in reports), *[""] * (len(items) - 1))
    table.add_section()
    for label, figure in _rows(_words(items)):
        values = [figure(r) for r in reports]
        table.add_row(label, *(format_size(v) for v in values), *(_difference(v, values[0]) for v in values[1:]))
    return table


def _name(report: Comparable) -> str:
    return "release" if isinstance(report, ReleaseReport) else report.name


def compare_renderables(items: Sequence[Compared], *, verbose: bool = False) -> list[RenderableType]:
    """The header, the side-by-side table, the host legend where a report is the host's, and the
    leaks of each report (``verbose``: each leaked tensor under its group)."""
    count = len(items)
    parts: list[RenderableType] = [
        line(
            (f"vramguard: {count} reports compared", "bold"),
            " (not the ranks of one run: each column is its own report; differences from the first)",
        ),
        compare_table(items),
    ]
    parts += legend("cpu") if _words(items).legend is not None else []
    for index, item in enumerate(items, 1):
        report = item.report
        if isinstance(report, ReleaseReport):
            continue
        sessions = report.devices if isinstance(report, MultiDeviceReport) else (report,)
        for session in sessions:
            where = f"{index}: {item.label}" + (f" ({session.device})" if len(sessions) > 1 else "")
            if session.leaks:
                parts.append(line(f"leaks of {where}", style="bold"))
                parts.append(leaks_table(session, verbose=verbose))
            elif session.leaked_bytes:
                parts.append(line(f"{where}: leaked {format_size(session.leaked_bytes)} (census off: no tensor named)"))
            else:
                parts.append(line(f"{where}: leaked {format_size(session.leaked_bytes)}"))
    return parts
