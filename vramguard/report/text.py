"""Rich tables of the records, rendered to any stream.

Every table is built from the plain records alone, so a report loaded from JSON renders the same
as a live one. ``render(report, file=..., width=...)`` prints to any text stream; tests pin the
width. rich comes with the ``cli`` extra and is imported only here, when a table is made.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

from vramguard.core._multi_report import MultiDeviceReport
from vramguard.core._records import NO_HOLDER, Leak, ReleaseReport, ReleaseStep, SessionReport
from vramguard.core._sizes import format_size
from vramguard.distributed import ClusterReport
from vramguard.report._rich import line, plain, require_rich
from vramguard.report._words import words_for
from vramguard.report.text_many import cluster_renderables, multi_renderables

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.table import Table
    from rich.text import Text

Report = SessionReport | ReleaseReport | MultiDeviceReport | ClusterReport


def make_console(file: IO[str] | None = None, *, width: int | None = None, stderr: bool = False) -> Console:
    """A rich Console on ``file`` (default stdout). A fixed ``width`` gives reproducible output."""
    require_rich()
    from rich.console import Console

    return Console(file=file, width=width, stderr=stderr, highlight=False, emoji=False)


def _size(nbytes: int | None, *, signed: bool = False, bad: bool = False) -> str:
    text = format_size(nbytes, signed=signed)
    return f"[bold red]{text}[/]" if bad and nbytes else text


def _table(title: str | None = None, **options: Any) -> Table:
    from rich import box
    from rich.table import Table

    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, **options)


def legend(device: str) -> list[RenderableType]:
    """The line under a host report's tables that says what their labels mean (the host's figures
    are not an allocator's); none on CUDA. A Text, not markup: printed as written."""
    from rich.padding import Padding

    words = words_for(device).legend
    # Padded: a block, not a line, so render() follows it with a blank line as it does a table.
    return [] if words is None else [Padding(line(words, style="dim"), 0)]


def session_header(report: SessionReport) -> Text:
    """The line above a session's tables: its name, device and duration."""
    concurrent = " (concurrent sessions on this device: figures are process-wide)" if report.concurrent else ""
    return line(
        (f"vramguard session {report.name!r}", "bold"),
        f" on {report.device}: {report.duration_s * 1000:.1f} ms{concurrent}",
    )


def session_table(report: SessionReport) -> Table:
    """Allocated and reserved bytes before, at peak, at the block's exit and after the release
    (on the host: malloc's in-use bytes and the resident memory)."""
    words = words_for(report.device)
    table = _table()
    table.add_column("", style="bold")
    for moment in ("before", "peak", "at exit", "after"):
        table.add_column(moment, justify="right")
    snaps = (report.before, report.at_exit, report.after)
    table.add_row(
        words.allocated,
        format_size(report.before.allocated_bytes),
        format_size(report.peak_allocated_bytes),
        *(format_size(snap.allocated_bytes) for snap in snaps[1:]),
    )
    table.add_row(
        words.reserved,
        format_size(report.before.reserved_bytes),
        format_size(report.peak_reserved_bytes),
        *(format_size(snap.reserved_bytes) for snap in snaps[1:]),
    )
    return table


def outcome_table(report: SessionReport) -> Table:
    """One row: the peak above the start, what the release gave back, what stays cached (on the
    host: resident beyond malloc's in-use bytes), what was kept and leaked."""
    table = _table()
    for name in ("peak above start", "reclaimed", words_for(report.device).cached, "kept", "leaked"):
        table.add_column(name, justify="right")
    table.add_row(
        format_size(report.peak_increase_bytes),
        f"[green]{format_size(report.reclaimed_bytes)}[/]",
        format_size(report.cached_bytes_after),
        format_size(report.kept_bytes),
        _size(report.leaked_bytes, bad=True),
    )
    return table


def steps_table(steps: Sequence[ReleaseStep]) -> Table:
    """Each release step: its time and the allocated and reserved bytes it freed."""
    table = _table("release steps")
    table.add_column("step")
    table.add_column("time", justify="right")
    table.add_column("freed", justify="right")
    table.add_column("returned", justify="right")
    table.add_column("detail")
    for step in steps:
        table.add_row(
            plain(step.name),
            f"{step.duration_s * 1000:.2f} ms",
            format_size(step.allocated_freed_bytes, signed=True),
            format_size(step.reserved_freed_bytes, signed=True),
            plain(step.detail),
        )
    return table


def leaks_table(report: SessionReport, *, verbose: bool = False) -> Table:
    """The leaks grouped by the module or container that holds them, largest first: one row per
    group (its total, what owns it and how many tensors, the holder and any other holders), a lone tensor as its
    own row; with ``verbose`` each tensor of a group as a row under it. The "created at" column
    is there only when the census recorded creation sites (:func:`sites_hint` says how to)."""
    sites = any(leak.created_at for leak in report.leaks)
    table = _table(f"[bold red]leaks: {format_size(report.leaked_bytes)}[/]")
    table.add_column("size", justify="right")
    table.add_column("tensor")
    if sites:
        table.add_column("created at")
    table.add_column("held by")
    for group in report.leak_groups:
        if group.count == 1 and not group.owner_kind:
            _leak_row(table, group.leaks[0], sites=sites)
            continue
        holders = "\n".join((group.holder, *(f"also {path}" for path in group.other_holders)))
        what = f"{group.count} tensor{'s' * (group.count != 1)}"
        if group.owner_kind:
            what = f"{group.owner_kind} ({what})"
        table.add_row(format_size(group.nbytes), plain(what), *[""] * sites, plain(holders), style="bold")
        if verbose:
            for leak in group.leaks:
                _leak_row(table, leak, indent="  ", sites=sites)
    return table


def sites_hint(report: SessionReport) -> str | None:
    """The line under the leaks that says how to record creation sites, when none were."""
    from vramguard.census._sites import ENV_VAR

    if not report.leaks or any(leak.created_at for leak in report.leaks):
        return None
    return f"created at: not recorded ({ENV_VAR}=1 records where each tensor was made)"


def _leak_row(table: Table, leak: Leak, indent: str = "", *, sites: bool = True) -> None:
    holders = "\n".join(leak.holders) if leak.holders else NO_HOLDER
    site = [plain(leak.created_at or "")] if sites else []
    table.add_row(format_size(leak.nbytes), plain(indent + leak.description), *site, plain(holders))


def release_table(report: ReleaseReport) -> Table:
    """A release's before and after, and what it reclaimed."""
    words = words_for(report.device)
    table = _table()
    table.add_column("", style="bold")
    table.add_column(words.allocated, justify="right")
    table.add_column(words.reserved, justify="right")
    table.add_row("before", format_size(report.before.allocated_bytes), format_size(report.before.reserved_bytes))
    table.add_row("after", format_size(report.after.allocated_bytes), format_size(report.after.reserved_bytes))
    table.add_section()
    table.add_row(
        "freed", format_size(report.freed_allocated_bytes), f"[green]{format_size(report.reclaimed_bytes)}[/]"
    )
    table.add_row(words.cached, "", format_size(report.cached_bytes_after))
    return table


def renderables(report: Report, *, verbose: bool = False) -> list[RenderableType]:
    """Everything :func:`render` prints for ``report``, in order (``verbose``: each leaked tensor
    under its group)."""
    require_rich()
    if not isinstance(report, (SessionReport, ReleaseReport)):  # a session over devices or ranks
        each = functools.partial(renderables, verbose=verbose)
        if isinstance(report, MultiDeviceReport):
            return multi_renderables(report, each, verbose=verbose)
        return cluster_renderables(report, each, verbose=verbose)
    if isinstance(report, ReleaseReport):
        header = line(("vramguard release", "bold"), f" on {report.device}: {report.duration_s * 1000:.1f} ms")
        parts: list[RenderableType] = [header, release_table(report), *legend(report.device)]
        if report.steps:
            parts.append(steps_table(report.steps))
        parts += [line(f"dropped: {d}") for d in report.dropped]
        parts += [line(f"evicted: {e}") for e in report.evicted]
        parts += [line(f"still alive elsewhere: {s}", style="yellow") for s in report.survivors]
        return parts
    parts = [session_header(report), session_table(report), outcome_table(report), *legend(report.device)]
    if report.release_steps:
        parts.append(steps_table(report.release_steps))
    elif not report.released:
        parts.append(line("release was off (release=False)"))
    if report.leaks:
        parts.append(leaks_table(report, verbose=verbose))
        hint = sites_hint(report)
        if hint is not None:
            parts.append(line(hint))
    parts += [line(f"evicted: {e}") for e in report.evicted]
    parts += [line(f"order: {v}", style="yellow") for v in report.order_violations]
    if report.raised:
        parts.append(line(f"the block raised {report.raised}", style="red"))
    parts += [line(f"note: {n}") for n in report.notes]
    parts += [line(f"cycle: {c}") for c in report.cycles]
    return parts


def render(
    report: Report,
    *,
    file: IO[str] | None = None,
    width: int | None = None,
    console: Console | None = None,
    verbose: bool = False,
) -> None:
    """Print ``report`` as rich tables to ``console``, or to ``file`` (default stdout).

    Leaks show one row per module or container that holds them; ``verbose`` adds a row per tensor.
    """
    console = console or make_console(file, width=width)
    print_parts(renderables(report, verbose=verbose), console)


def print_parts(parts: Sequence[RenderableType], console: Console) -> None:
    """Print ``parts`` (lines and tables) to ``console``, a blank line after each table."""
    from rich.text import Text

    for index, part in enumerate(parts):
        console.print(part)
        if not isinstance(part, (str, Text)) and index + 1 < len(parts):
            console.print()  # a blank line after each table


def devices_table(devices: Sequence[dict[str, Any]]) -> Table:
    """The GPUs NVML sees (:func:`vramguard.probes.list_devices`): memory and processes."""
    require_rich()
    table = _table("GPUs (NVML)")
    table.add_column("index", justify="right")
    table.add_column("name")
    table.add_column("total", justify="right")
    table.add_column("used", justify="right")
    table.add_column("free", justify="right")
    table.add_column("processes")
    for device in devices:
        total, used = device.get("total_bytes"), device.get("used_bytes")
        free = None if total is None or used is None else total - used
        processes = "\n".join(
            f"pid {p['pid']}: {format_size(p.get('used_bytes'))}" for p in device.get("processes", ())
        )
        table.add_row(
            str(device.get("index", "")),
            plain(str(device.get("name", ""))),
            format_size(total),
            format_size(used),
            format_size(free),
            processes or "none",
        )
    return table


def render_devices(
    devices: Sequence[dict[str, Any]],
    reason: str | None,
    *,
    file: IO[str] | None = None,
    width: int | None = None,
    console: Console | None = None,
) -> None:
    """Print the GPU table, or one line saying why there is none (``reason`` from NVML)."""
    console = console or make_console(file, width=width)
    if devices:
        console.print(devices_table(devices))
    elif reason:
        console.print(f"no GPU visible: {reason}", markup=False, soft_wrap=True)
    else:
        console.print("no GPU visible: NVML is running but lists no devices")
