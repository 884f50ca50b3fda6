"""``vramguard devices``: the GPUs NVML sees, their memory and the processes using them.

NVML queries never create a CUDA context, so this is safe to run next to a busy job.
``--watch`` redraws the table in place (like nvitop) until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import threading
import time
from typing import TYPE_CHECKING, Any

from vramguard.core._errors import InvalidArgument
from vramguard.core._run import ActiveSession, active_sessions
from vramguard.probes import list_devices, unavailable_reason
from vramguard.report.text import devices_table, make_console, render_devices

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

HELP = "list the GPUs (total, used, processes and their memory), read through NVML; --watch for a live view"
_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s)?\s*$")


def interval(text: str) -> float:
    """``--every``: seconds as ``1s``, ``500ms`` or a plain number, from 0.05 s to an hour."""
    match = _INTERVAL.match(text)
    seconds = None
    if match is not None:
        seconds = float(match.group(1)) / (1000 if match.group(2) == "ms" else 1)
    if seconds is None or not 0.05 <= seconds <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not an interval from 50ms to 3600s (e.g. 1s, 500ms)")
    return seconds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--watch", action="store_true", help="redraw the table until Ctrl-C")
    parser.add_argument(
        "--every", type=interval, default=1.0, metavar="INTERVAL", help="with --watch: redraw every (default: 1s)"
    )
    # Tests stop the loop after a number of frames instead of sending Ctrl-C.
    parser.add_argument("--frames", type=int, default=None, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    if args.watch:
        if args.json:
            raise InvalidArgument("--json", True, "no --json with --watch (a live table); drop one of them")
        if args.frames is not None and args.frames < 1:
            raise InvalidArgument("--frames", args.frames, "a positive int")
        return watch(args.every, frames=args.frames)
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
