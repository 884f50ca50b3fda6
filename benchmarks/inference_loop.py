"""A session per inference step: its CPU cost beside the plain step, side by side in one run.

    .venv/bin/python benchmarks/inference_loop.py [--steps 100] [--rounds 7] [--objects 171000]
    .venv/bin/python benchmarks/inference_loop.py --quick   # 2 steps, 5 rounds, a tiny model: CI

A small ``nn.TransformerEncoder`` (d_model 256, 4 layers, batch 8×32, under
``torch.inference_mode()``: about 15–20 ms of CPU per step on a 2-core development machine;
8×64 takes twice that) runs ``--steps`` steps per round. The process holds ``--objects``
gc-tracked objects in all (the torch import's own, topped up with one-element lists), as a
small application's heap. Variants, alternated within every round so drift hits them alike:

- plain: the step function, undecorated;
- session: the same function decorated with ``@vramguard.gpu_session(device="cpu",
  leaks="ignore")``, the defaults (census and release on): one session per step, its output
  kept (the decorator keeps the return value);
- census off, release off: the same decorator with ``census=False`` or ``release=False``;
- census + release off: the bare session (snapshots, the host peak's VmHWM reset, the sampler
  thread that looks every 5 ms);
- plain + malloc_trim: the plain step followed by vramguard's host ``malloc_trim(0)`` alone (the
  release's last host step), to show what handing freed pages back to the OS at every step
  costs: the trim itself, and the page faults of the next step that takes them back;
- defaults, trim stubbed (diagnostic): the default session with the release's ``malloc_trim``
  replaced by a no-op for the call (``vramguard.core._release.malloc_trim``), which is what the
  session would cost if the host release skipped the trim when there is little to hand back.

Times are CPU time of the process (``time.process_time()``, all its threads), not wall-clock
time; torch runs one thread. Printed: the median over rounds of the CPU time per step, its
ratio to plain, and the part of it spent in the kernel (``getrusage``'s system time).
The goal: the default session costs at most 1.10× the plain step.
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

import vramguard
from vramguard.probes import malloc_trim

GOAL_RATIO = 1.10


def _model(d_model: int, layers: int) -> torch.nn.Module:
    layer = torch.nn.TransformerEncoderLayer(d_model, 4, 4 * d_model, dropout=0.0, batch_first=True)
    return torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False).eval()


def _variants(model: torch.nn.Module) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    def step(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(x)  # type: ignore[no-any-return]

    def session(**options: Any) -> Callable[[torch.Tensor], torch.Tensor]:
        decorate = vramguard.gpu_session(device="cpu", leaks="ignore", **options)
        return decorate(step)

    def trimmed(x: torch.Tensor) -> torch.Tensor:
        out = step(x)
        malloc_trim()
        return out

    variants = {
        "plain": step,
        "session (defaults)": session(),
        "session, census off": session(census=False),
        "session, release off": session(release=False),
        "session, census + release off": session(census=False, release=False),
        "plain + malloc_trim": trimmed,
    }
    release = sys.modules.get("vramguard.core._release")
    if callable(getattr(release, "malloc_trim", None)):
        defaults = session()

        def untrimmed(x: torch.Tensor) -> torch.Tensor:
            original = release.malloc_trim  # type: ignore[union-attr]
            release.malloc_trim = _no_trim  # type: ignore[union-attr]
            try:
                return defaults(x)
            finally:
                release.malloc_trim = original  # type: ignore[union-attr]

        variants["defaults, trim stubbed (diagnostic)"] = untrimmed
    return variants


def _no_trim() -> bool:
    return True


def _round(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, steps: int) -> tuple[float, float]:
    """(CPU seconds, of which system seconds) per step over ``steps`` steps."""
    began, kernel = time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_stime
    for _ in range(steps):
        out = fn(x)
        del out
    cpu = time.process_time() - began
    return cpu / steps, (resource.getrusage(resource.RUSAGE_SELF).ru_stime - kernel) / steps


def _ballast(target: int) -> list[Any]:
    """One-element lists up to ``target`` gc-tracked objects in the process."""
    gc.collect()
    return [[i] for i in range(max(0, target - len(gc.get_objects())))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--objects", type=int, default=171_000, help="gc-tracked objects in the process")
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch", default="8x32", help="batch × sequence length")
    parser.add_argument("--quick", action="store_true", help="2 steps, 5 rounds, d_model 32, 1 layer, 2x8, no ballast")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.rounds, args.objects, args.d_model, args.layers, args.batch = 2, 5, 0, 32, 1, "2x8"
    if args.rounds < 5:
        parser.error("--rounds: at least 5")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    batch, length = (int(n) for n in args.batch.split("x"))
    model = _model(args.d_model, args.layers)
    x = torch.randn(batch, length, args.d_model)
    variants = _variants(model)
    for fn in variants.values():  # warm-up: kernels, the census's imports, the sampler thread
        _round(fn, x, 3)
    ballast = _ballast(args.objects)
    gc.collect()
    live = len(gc.get_objects())
    print(
        f"torch {torch.__version__}, one thread, host; CPU time (time.process_time)\n"
        f"TransformerEncoder d_model {args.d_model}, {args.layers} layers, batch {batch}×{length}, "
        f"inference_mode; {live} gc-tracked objects ({len(ballast)} of them added lists); "
        f"{args.steps} steps per round, median of {args.rounds} rounds"
    )
    samples: dict[str, list[float]] = {name: [] for name in variants}
    kernel: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, fn in variants.items():  # alternate within each round
            cpu, system = _round(fn, x, args.steps)
            samples[name].append(cpu)
            kernel[name].append(system)
    base = statistics.median(samples["plain"])
    print(
        f"\n  {'variant':<36} {'CPU ms/step, median (min–max)':>30} {'× plain':>8} {'+ms/step':>9} {'of it sys ms':>12}"
    )
    for name, seconds in samples.items():
        median = statistics.median(seconds)
        spread = f"{median * 1e3:7.2f} ({min(seconds) * 1e3:.2f}–{max(seconds) * 1e3:.2f})"
        system = statistics.median(kernel[name]) * 1e3
        print(f"  {name:<36} {spread:>30} {median / base:8.3f} {(median - base) * 1e3:9.2f} {system:12.2f}")
    ratio = statistics.median(samples["session (defaults)"]) / base
    verdict = "PASS" if ratio <= GOAL_RATIO else "FAIL"
    print(f"\n  {verdict}  default session per step: {ratio:.3f}× the plain step (goal ≤ {GOAL_RATIO:.2f}×)")
    report = variants["session (defaults)"].vram_report  # type: ignore[attr-defined]
    if report is not None:
        for step in report.release_steps:
            if step.detail:
                print(f"  last session's release, {step.name}: {step.detail}")
    del ballast
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
