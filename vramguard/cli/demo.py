"""``vramguard demo``: a small transformer run with a bare ``del`` and inside a session.

Each run is a fresh process (``vramguard demo --child ...``) that first makes one unmeasured
warm-up run, so neither run inherits the other's heap or cache and one-time lazy allocations count
for neither. Each is repeated (``--repeat``, 3 by default); the headline is the median of the
repetitions with their spread, so two invocations print the same conclusion. The median run of
each is printed as a table and drawn on one figure (``vramguard-demo.png`` unless ``--plot PATH``
or ``--no-plot``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from vramguard._api import gpu_session
from vramguard.cli import _signals
from vramguard.cli._paths import check_plot_file
from vramguard.core._errors import InvalidArgument
from vramguard.core._records import SessionReport
from vramguard.core._release import release
from vramguard.core._sizes import format_size
from vramguard.probes import resolve_device
from vramguard.report._words import words_for
from vramguard.report.plot import plot_reports
from vramguard.report.text import make_console, render

if TYPE_CHECKING:
    from rich.console import Console

HELP = "run a small transformer twice (bare del, then a vramguard session) and show what came back"
DEFAULT_PLOT = "vramguard-demo.png"
SAMPLE_EVERY_S = 0.01
RUNS = ("bare del", "vramguard")
MIB = 2**20

Step = Callable[[], None]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help='"auto", "cpu", "cuda" or "cuda:N" (default: auto)')
    parser.add_argument("--layers", type=int, default=6, help="encoder layers (default: 6)")
    parser.add_argument("--steps", type=int, default=3, help="forward passes per run (default: 3)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="fresh processes per run; the headline is their median (default: 3)"
    )
    parser.add_argument("--child", choices=RUNS, help=argparse.SUPPRESS)
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--plot", metavar="PNG", default=DEFAULT_PLOT, help=f"draw both runs into this image (default: {DEFAULT_PLOT})"
    )
    where.add_argument("--no-plot", dest="plot", action="store_const", const=None, help="draw nothing")


def build_model(layers: int, device: torch.device) -> torch.nn.Module:
    """A small transformer encoder (d_model 512, 8 heads, ffn 2048), built locally."""
    layer = torch.nn.TransformerEncoderLayer(d_model=512, nhead=8, dim_feedforward=2048, batch_first=True)
    return torch.nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False).to(device)


def workload(model: torch.nn.Module, device: torch.device, steps: int, on_step: Step | None = None) -> torch.Tensor:
    """A few inference passes over random token embeddings."""
    out = torch.empty(0)
    with torch.inference_mode():
        for _ in range(steps):
            x = torch.randn(8, 128, 512, device=device)
            out = model(x)
            if on_step is not None:
                on_step()
    return out


def run_bare(layers: int, device: torch.device, steps: int, on_step: Step | None = None) -> SessionReport:
    """What users do today: ``del model, out`` and nothing else (measured, not released)."""
    with gpu_session(
        "bare del", device=device, release=False, leaks="ignore", census=False, sample_every=SAMPLE_EVERY_S
    ) as session:
        model = build_model(layers, device)
        out = workload(model, device, steps, on_step)
        del model, out
    assert session.report is not None
    return session.report


def run_guarded(layers: int, device: torch.device, steps: int, on_step: Step | None = None) -> SessionReport:
    """The same work inside a session that owns the model and releases it in order."""
    with gpu_session("vramguard", device=device, leaks="warn", sample_every=SAMPLE_EVERY_S) as session:
        model = session.own(build_model(layers, device))
        out = workload(model, device, steps, on_step)
        del model, out
    assert session.report is not None
    return session.report


def child(args: argparse.Namespace) -> int:
    """One measured run in this (fresh) process, after a warm-up run; prints its report as JSON."""
    device = resolve_device(args.device)
    if device.type == "cpu":
        # One thread, to take one source of variation away: torch's worker threads allocate from
        # malloc arenas of their own, and which arena a block came from decides whether a bare
        # del's memory stays resident (with the default threads the same run held from about 0
        # to +57 MiB from one process to the next).
        torch.set_num_threads(1)
    # A first, unmeasured run: one-time lazy allocations (kernels, thread pools) are not a leak
    # of the measured run, which then starts from a released state.
    with gpu_session("warm-up", device=device, leaks="ignore", census=False) as warm:
        workload(warm.own(build_model(args.layers, device)), device, args.steps)
    release(device=device)
    measure = run_bare if args.child == "bare del" else run_guarded
    print(json.dumps(measure(args.layers, device, args.steps).to_dict()))
    return 0


def _spawn(which: str, device: torch.device, args: argparse.Namespace) -> SessionReport:
    command = [
        sys.executable, "-m", "vramguard", "demo", "--child", which, "--device", str(device),
        "--layers", str(args.layers), "--steps", str(args.steps), "--no-plot",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    interrupt = _signals.child_interrupt(done.returncode)
    if interrupt is not None:
        # Ctrl-C reaches the whole foreground group (and timeout's SIGTERM its own): the child
        # may see it first; the parent stops as if it had.
        raise interrupt
    if done.returncode != 0:
        raise RuntimeError(f"the demo's {which!r} run failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return SessionReport.from_dict(json.loads(done.stdout.strip().splitlines()[-1]))


def run(args: argparse.Namespace) -> int:
    if args.child:
        return child(args)
    console = make_console()  # first: without rich, MissingDependency says what to install
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

    check_plot_file("--plot", args.plot)

    for name, low, high in (("layers", 1, 64), ("steps", 1, 64), ("repeat", 1, 15)):
        value = getattr(args, name)
        if not low <= value <= high:
            raise InvalidArgument(name, value, f"an int from {low} to {high}")
    device = resolve_device(args.device)
    # Each run builds the model and makes a few passes: seconds on a CPU, so show progress
    # (on stderr, and only on a terminal; it leaves no trace in the output).
    status = make_console(stderr=True)
    reports: dict[str, list[SessionReport]] = {which: [] for which in RUNS}
    stopped: KeyboardInterrupt | None = None
    try:
        with (
            _signals.terminate_as_interrupt(),
            Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                console=status,
                transient=True,
                disable=not status.is_terminal,
            ) as progress,
        ):
            task = progress.add_task("fresh runs", total=len(RUNS) * args.repeat)
            for _ in range(args.repeat):  # interleaved, so a drift of the machine touches both alike
                for which in RUNS:
                    progress.update(task, description=which)
                    reports[which].append(_spawn(which, device, args))
                    progress.advance(task)
    except KeyboardInterrupt as interrupt:
        stopped = interrupt
    done = min(len(runs) for runs in reports.values())
    if stopped is not None:
        # What was finished is kept: the runs done, when each way has one.
        kept = f"the tables show the {done} finished repetition(s)" if done else "no repetition was finished"
        print(f"vramguard demo: stopped by {_signals.describe(stopped)}; {kept}", file=sys.stderr)
        if not done:
            return _signals.exit_code(stopped)
        reports = {which: runs[:done] for which, runs in reports.items()}
    _show(console, reports, args.plot)
    return 0 if stopped is None else _signals.exit_code(stopped)


def _show(console: Console, reports: dict[str, list[SessionReport]], plot: str | None) -> None:
    """Both median runs as tables, the headline and the conclusion; the figure when ``plot``."""
    bare, guarded = (_median_run(reports[which]) for which in RUNS)
    repeat = len(reports["vramguard"])
    render(bare, console=console)
    console.print()
    render(guarded, console=console)
    console.print()
    cached = words_for(bare.device).cached  # on the host not a cache: resident memory malloc is not using
    console.print(
        f"after a bare del the process still held {_spread(reports['bare del'])} more than at the run's start "
        f"({format_size(bare.cached_bytes_after)} {cached}); after the vramguard session, "
        f"{_spread(reports['vramguard'])} ({format_size(guarded.cached_bytes_after)} {cached}). "
        f"Median of {repeat} fresh process(es) each, min–max in brackets; the tables and the plot "
        "show the median runs.",
        soft_wrap=True,
        markup=False,
    )
    console.print(f"conclusion: {conclusion(reports)}", soft_wrap=True, markup=False)
    if plot:
        written = plot_reports([bare, guarded], plot)
        console.print(f"plot of both runs written to {written}", markup=False, soft_wrap=True)


def held_bytes(report: SessionReport) -> int | None:
    """Reserved memory after the run, against its start."""
    after, before = report.after.reserved_bytes, report.before.reserved_bytes
    return None if after is None or before is None else after - before


def _median_run(reports: list[SessionReport]) -> SessionReport:
    """The repetition whose held figure is the (lower) median: a real run, not a blend."""
    ranked = sorted(reports, key=lambda r: held_bytes(r) or 0)
    return ranked[(len(ranked) - 1) // 2]


def _spread(reports: list[SessionReport]) -> str:
    values = [v for v in (held_bytes(r) for r in reports) if v is not None]
    if not values:
        return "n/a"
    median = format_size(int(statistics.median(values)), signed=True)
    if len(values) == 1:
        return median
    return f"{median} [{format_size(min(values), signed=True)} – {format_size(max(values), signed=True)}]"


def conclusion(reports: dict[str, list[SessionReport]]) -> str:
    """One sentence from the repetitions: one way is said to hold more only when every one of its
    runs held more than every run of the other by a margin (1 MiB, or 5% of the model's footprint),
    so that noise between invocations cannot flip it."""
    ranges = {}
    for which, runs in reports.items():
        values = [v for v in (held_bytes(r) for r in runs) if v is not None]
        if not values:
            return "no conclusion: the device's reserved memory could not be read"
        ranges[which] = (min(values), max(values))
    footprint = statistics.median(r.peak_increase_bytes or 0 for r in reports["vramguard"])
    margin = max(MIB, 0.05 * footprint)
    (bare_low, bare_high), (guard_low, guard_high) = ranges["bare del"], ranges["vramguard"]
    if bare_low - guard_high > margin:
        return "a bare del leaves memory held that the vramguard session gives back"
    if guard_low - bare_high > margin:
        return "the vramguard session held more than a bare del"
    return "no difference beyond the noise between a bare del and the vramguard session"
