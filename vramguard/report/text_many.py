"""Rich tables of the composite records: a session over several devices (:class:`MultiDeviceReport`)
and a session across ranks (:class:`ClusterReport`). :func:`vramguard.report.text.render` uses
these for those records; each device's or rank's own session renders as a single session does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from vramguard.core._multi_report import MultiDeviceReport
from vramguard.core._records import SessionReport
from vramguard.core._sizes import format_size
from vramguard.distributed import ClusterReport, RankReport
from vramguard.report._rich import line, plain
from vramguard.report._words import words_for

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table
    from rich.text import Text

Renderer = Callable[[SessionReport | MultiDeviceReport], "list[RenderableType]"]
"""Renders one device's or rank's own session: the single-record tables live in text.py, which
calls these with its own renderer, so this module never imports it back."""


def _table(title: str | None = None) -> Table:
    from rich import box
    from rich.table import Table

    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False)


def _leaked(nbytes: int | None) -> str:
    text = format_size(nbytes)
    return f"[bold red]{text}[/]" if nbytes else text


def devices_table(report: MultiDeviceReport) -> Table:
    """One row per device (peak, peak above start, reclaimed, still cached, kept, leaked) and the total."""
    table = _table()
    table.add_column("device", style="bold")
    cached = words_for(report.devices[0].device).cached if report.devices else "still cached"
    for name in ("peak", "peak above start", "reclaimed", cached, "kept", "leaked"):
        table.add_column(name, justify="right")
    rows: list[tuple[str, SessionReport | MultiDeviceReport]] = [(r.device, r) for r in report.devices]
    for label, r in rows:
        table.add_row(*_figures(label, r))
    table.add_section()
    table.add_row(*_figures("total", report), style="bold")
    return table


def _figures(label: str, r: SessionReport | MultiDeviceReport) -> tuple[str | Text, ...]:
    return (
        plain(label),
        format_size(r.peak_allocated_bytes),
        format_size(r.peak_increase_bytes),
        f"[green]{format_size(r.reclaimed_bytes)}[/]",
        format_size(r.cached_bytes_after),
        format_size(r.kept_bytes),
        _leaked(r.leaked_bytes),
    )


def multi_renderables(report: MultiDeviceReport, each: Renderer, *, verbose: bool = False) -> list[RenderableType]:
    """A device table with the total, then each device's session as ``each`` shows one (text.py
    passes its own :func:`~vramguard.report.text.renderables`)."""
    header = line(
        (f"vramguard session {report.name!r}", "bold"),
        f" on {len(report.devices)} device(s) ({', '.join(report.device_names)}): {report.duration_s * 1000:.1f} ms",
    )
    parts: list[RenderableType] = [header, devices_table(report)]
    if report.incomplete:
        parts.append(line(f"note: some device could not read {', '.join(report.incomplete)}; the totals sum the rest"))
    if report.raised:
        parts.append(line(f"the block raised {report.raised}", style="red"))
    parts += [line(f"evicted: {e}") for e in report.evicted]
    parts += [line(f"note: {n}") for n in report.notes]
    for device in report.devices:
        parts += each(device)
    return parts


def _device(report: RankReport) -> str:
    return report.device if isinstance(report, SessionReport) else ", ".join(report.device_names)


def ranks_table(report: ClusterReport) -> Table:
    """One row per rank: its device(s), peak, peak above start, reclaimed, leaked, and what it raised."""
    table = _table()
    table.add_column("rank", justify="right", style="bold")
    table.add_column("device")
    for name in ("peak", "peak above start", "reclaimed", "leaked"):
        table.add_column(name, justify="right")
    table.add_column("raised")
    for rank, r in zip(report.ranks, report.reports, strict=True):
        table.add_row(
            str(rank),
            plain(_device(r)),
            format_size(r.peak_allocated_bytes),
            format_size(r.peak_increase_bytes),
            f"[green]{format_size(r.reclaimed_bytes)}[/]",
            _leaked(r.leaked_bytes),
            line(r.raised, style="red") if r.raised else "",
        )
    table.add_section()
    table.add_row("all", "", "", "", "", _leaked(report.total_leaked_bytes), "", style="bold")
    return table


def rank_leaks_table(report: ClusterReport) -> Table:
    """Every rank's leaks, largest first, with the rank and device each came from."""
    table = _table(f"[bold red]leaks: {format_size(report.total_leaked_bytes)}[/]")
    table.add_column("rank", justify="right")
    table.add_column("device")
    table.add_column("size", justify="right")
    table.add_column("tensor")
    table.add_column("held by")
    for item in report.leaks:
        holders = "\n".join(item.leak.holders) if item.leak.holders else "holder not found"
        table.add_row(
            str(item.rank),
            plain(item.device),
            format_size(item.leak.nbytes),
            plain(item.leak.description),
            plain(holders),
        )
    return table


def cluster_renderables(report: ClusterReport, each: Renderer, *, verbose: bool = False) -> list[RenderableType]:
    """A rank table with the imbalance, the leaks with their ranks, the failed ranks; ``verbose``
    adds each rank's own session, as ``each`` shows it."""
    imbalance = "unknown" if report.imbalance is None else f"{report.imbalance:.2f}x"
    backend = f" ({report.backend})" if report.backend else ""
    header = line(
        (f"vramguard session {report.name!r}", "bold"),
        f" on {len(report.ranks)} ranks{backend}: peak imbalance (max/min) {imbalance}",
    )
    parts: list[RenderableType] = [header, ranks_table(report)]
    if report.leaks:
        parts.append(rank_leaks_table(report))
    if report.failed_ranks:
        parts.append(f"[red]failed ranks: {', '.join(str(r) for r in report.failed_ranks)}[/]")
    if verbose:
        for rank, r in zip(report.ranks, report.reports, strict=True):
            parts.append(f"[bold]rank {rank}[/]")
            parts += each(r)
    return parts
