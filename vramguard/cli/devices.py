"""``vramguard devices``: the GPUs NVML sees, their memory and the processes using them.

NVML queries never create a CUDA context, so this is safe to run next to a busy job.
``--watch`` redraws the table in place (like nvitop) until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from vramguard.cli._durations import FORMS, duration
from vramguard.core._errors import InvalidArgument
from vramguard.core._run import ActiveSession, active_sessions
from vramguard.probes import list_devices, unavailable_reason
from vramguard.report.text import devices_table, make_console, render_devices

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

HELP = "list the GPUs (total, used, processes and their memory), read through NVML; --watch for a live view"
DEFAULT_EVERY_S = 1.0
interval = duration("an interval", 0.05, 3600.0)
"""``--every``: ``1s``, ``500ms``, ``2m`` or bare seconds, from 50 ms to an hour."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--watch", action="store_true", help="redraw the table until Ctrl-C")
    parser.add_argument(
        "--every",
        type=interval,
        metavar="INTERVAL",
        help=f"redraw every INTERVAL ({FORMS}); implies --watch (default: {DEFAULT_EVERY_S:g}s)",
    )
    # Tests stop the loop after a number of frames instead of sending Ctrl-C.
    parser.add_argument("--frames", type=int, default=None, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    if args.every is not None:
        args.watch = True  # an interval only means something for a view that redraws
    if args.watch:
        if args.json:
            raise InvalidArgument("--json", True, "no --json with --watch or --every (a live table); drop one of them")
        if args.frames is not None and args.frames < 1:
            raise InvalidArgument("--frames", args.frames, "a positive int")
        return watch(DEFAULT_EVERY_S if args.every is None else args.every, frames=args.frames)
    devices = list_devices()
    reason = None if devices else unavailable_reason()
    if args.json:
        print(json.dumps({"devices": devices, "unavailable_reason": reason}, indent=2))
        return 0
    render_devices(devices, reason, console=make_console())
    return 0


def sessions_table(sessions: tuple[ActiveSession, ...]) -> RenderableType:
    """This process's sessions inside their blocks now (when ``watch`` runs in the process that
    holds them: a notebook, a service's debug thread)."""
    from rich.table import Table
    from rich.text import Text

    if not sessions:
        return Text("this process: no session inside its block", style="dim")
    table = Table(title="this process's sessions", title_justify="left")
    for column in ("session", "device", "running", "concurrent"):
        table.add_column(column)
    for session in sessions:
        running = f"{session.running_s:.1f} s"
        table.add_row(session.name, session.device, running, "yes" if session.concurrent else "")
    return table


def frame(devices: list[dict[str, Any]], reason: str | None, every_s: float) -> RenderableType:
    """One redraw: the device table (or why there is none), this process's sessions, the footer."""
    from rich.console import Group
    from rich.text import Text

    stamp = time.strftime("%H:%M:%S")
    mine = os.getpid()
    footer = Text(f"{stamp}  every {every_s:g} s  (this process: pid {mine})  Ctrl-C to stop", style="dim")
    sessions = sessions_table(active_sessions())
    if devices:
        return Group(devices_table(devices), sessions, footer)
    why = reason or "NVML is running but lists no devices"
    return Group(Text(f"no GPU visible: {why}"), sessions, footer)


def watch(every_s: float, *, frames: int | None = None, console: Console | None = None) -> int:
    """Redraw every ``every_s`` seconds until Ctrl-C (or ``frames`` redraws); exit code 0."""
    from rich.live import Live

    console = console or make_console()
    stop = threading.Event()  # waited on, not slept: Ctrl-C interrupts the wait at once
    drawn = 0
    try:
        with Live(console=console, auto_refresh=False, transient=False) as live:
            while frames is None or drawn < frames:
                if drawn:
                    stop.wait(every_s)
                devices = list_devices()
                live.update(frame(devices, None if devices else unavailable_reason(), every_s), refresh=True)
                drawn += 1
    except KeyboardInterrupt:
        console.print("stopped", style="dim")
    return 0
