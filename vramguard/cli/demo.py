"""``vramguard demo``: a small transformer run twice, with a bare ``del`` and inside a session.

Both runs record a timeline; the two reports are printed as tables and drawn on one figure
(``vramguard-demo.png`` unless ``--plot PATH`` or ``--no-plot``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch

from vramguard.core._errors import InvalidArgument
from vramguard.core._records import SessionReport
from vramguard.core._release import release
from vramguard.core._session import gpu_session
from vramguard.core._sizes import format_size
from vramguard.probes import resolve_device
from vramguard.report.plot import plot_reports
from vramguard.report.text import make_console, render

HELP = "run a small transformer twice (bare del, then a vramguard session) and show what came back"
DEFAULT_PLOT = "vramguard-demo.png"
SAMPLE_EVERY_S = 0.01

Step = Callable[[], None]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help='"auto", "cpu", "cuda" or "cuda:N" (default: auto)')
    parser.add_argument("--layers", type=int, default=6, help="encoder layers (default: 6)")
    parser.add_argument("--steps", type=int, default=3, help="forward passes per run (default: 3)")
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


def run(args: argparse.Namespace) -> int:
    console = make_console()  # first: without rich, MissingDependency says what to install
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

    for name in ("layers", "steps"):
        value = getattr(args, name)
        if not 1 <= value <= 64:
            raise InvalidArgument(name, value, "an int from 1 to 64")
    device = resolve_device(args.device)
    # Each run builds the model and makes a few passes: seconds on a CPU, so show progress
    # (on stderr, and only on a terminal; it leaves no trace in the output).
    status = make_console(stderr=True)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=status,
        transient=True,
        disable=not status.is_terminal,
    ) as progress:
        task = progress.add_task("warm-up", total=3 * args.steps)

        def advance() -> None:
            progress.advance(task)

        # A first, unmeasured run: one-time lazy allocations (kernels, thread pools) are not a
        # leak of either run. Each measured run then starts from a released state.
        with gpu_session("warm-up", device=device, leaks="ignore", census=False) as warm:
            workload(warm.own(build_model(args.layers, device)), device, args.steps, advance)
        progress.update(task, description="bare del")
        bare = run_bare(args.layers, device, args.steps, advance)
        release(device=device)
        progress.update(task, description="vramguard session")
        guarded = run_guarded(args.layers, device, args.steps, advance)
    render(bare, console=console)
    console.print()
    render(guarded, console=console)
    console.print()
    console.print(
        f"after a bare del the process still held {_held(bare)} more than at the run's start "
        f"({format_size(bare.cached_bytes_after)} cached); after the vramguard session, {_held(guarded)} "
        f"({format_size(guarded.cached_bytes_after)} cached).",
        soft_wrap=True,
        markup=False,
    )
    if args.plot:
        written = plot_reports([bare, guarded], args.plot)
        console.print(f"plot of both runs written to {written}", markup=False, soft_wrap=True)
    return 0


def _held(report: SessionReport) -> str:
    """Reserved memory after the run, against its start."""
    after, before = report.after.reserved_bytes, report.before.reserved_bytes
    return format_size(None if after is None or before is None else after - before, signed=True)
