"""A session per inference step: its cost beside the plain step, side by side in one run.

    .venv/bin/python benchmarks/inference_loop.py [--steps 100] [--rounds 7] [--objects 171000]
    .venv/bin/python benchmarks/inference_loop.py --quick   # 2 steps, 5 rounds, a tiny model: CI
    .venv/bin/python benchmarks/inference_loop.py --device cuda [--step-ms 4,20] [--quick]

A small ``nn.TransformerEncoder`` (d_model 256, 4 layers, batch 8×32, under
``torch.inference_mode()``: about 15–20 ms of CPU per step on a 2-core development machine;
8×64 takes twice that) runs ``--steps`` steps per round. The process holds ``--objects``
gc-tracked objects in all (the torch import's own, topped up with one-element lists), as a
small application's heap. Variants, alternated within every round so drift hits them alike:

- plain: the step function, undecorated;
- session: the same function decorated with ``@vramguard.gpu_session(device=...,
  leaks="ignore")``, the defaults (census and release on): one session per step, its output
  kept (the decorator keeps the return value);
- census off, release off: the same decorator with ``census=False`` or ``release=False``;
- census + release off: the bare session (snapshots, the host peak's VmHWM reset, the sampler
  thread that looks every 5 ms);
- plain + malloc_trim (host) / plain + empty_cache (CUDA): the plain step followed by the
  release's last step alone, to show what handing freed memory back at every step costs: the
  call itself, and the next step taking the memory back (page faults; cudaMalloc);
- defaults, trim stubbed (diagnostic, host only): the default session with the release's
  ``malloc_trim`` replaced by a no-op for the call (``vramguard.core._release.malloc_trim``),
  which is what the session would cost if the host release skipped the trim when there is
  little to hand back.

On the host, times are CPU time of the process (``time.process_time()``, all its threads), not
wall-clock time; torch runs one thread. On CUDA they are wall-clock (``time.perf_counter()``),
and every step ends with ``torch.cuda.synchronize()``, so a step's time is its kernels' and not
their launch. ``--step-ms 4,20`` (the default, but for ``--quick`` on the host) sizes the batch for each target: a few
plain steps are timed at batch 1, 2, 4, ... (at most 12 sizes) until a step takes the target,
then once at the size interpolated between the last two; the achieved step time is printed and
saved. Printed per loop: the median over rounds of the time per step, its ratio to plain (the
median of the per-round ratios: drift between rounds cancels), the part of it spent in the
kernel (``getrusage``'s system time), and the default session's price in µs per step. The
goals (issue 29): the default session costs at most 1.05× a 4 ms plain step and 1.02× a 20 ms
one. Then where that price goes inside the loop: the default session's entry and exit (wall
clock around a step, the step excluded), and, on the host, what each read a session makes
costs as the first thing after a step (cold caches: several times what ``overhead.py``'s
back-to-back empty sessions show).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from bench_env import environment, label, resolve, write

import vramguard
from vramguard.probes import malloc_trim

GOALS = ((4.0, 1.05), (20.0, 1.02))
"""(plain step in ms, the most a default session per step may cost as a ratio to it): issue 29."""


def goal_for(step_ms: float) -> float:
    """The goal of the nearest target step (a fixed-size loop is judged by its achieved step)."""
    return min(GOALS, key=lambda goal: abs(goal[0] - step_ms))[1]


CALIBRATION_SIZES = 12  # batch 1 to 2048: the search is bounded by a count, never by time
CALIBRATION_STEPS = 5
MAX_BATCH = 2048

Step = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Shape:
    """One loop's model and input."""

    d_model: int
    layers: int
    batch: int
    length: int


def _model(shape: Shape, device: torch.device) -> torch.nn.Module:
    layer = torch.nn.TransformerEncoderLayer(shape.d_model, 4, 4 * shape.d_model, dropout=0.0, batch_first=True)
    return torch.nn.TransformerEncoder(layer, shape.layers, enable_nested_tensor=False).eval().to(device)


def _plain(model: torch.nn.Module, device: torch.device) -> Step:
    def step(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            out: torch.Tensor = model(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # the step's time is its kernels', not their launch
        return out

    return step


def _variants(model: torch.nn.Module, device: torch.device) -> dict[str, Step]:
    step = _plain(model, device)

    def session(**options: Any) -> Step:
        decorate = vramguard.gpu_session(device=device, leaks="ignore", **options)
        return decorate(step)

    def trimmed(x: torch.Tensor) -> torch.Tensor:
        out = step(x)
        malloc_trim()
        return out

    def emptied(x: torch.Tensor) -> torch.Tensor:
        out = step(x)
        torch.cuda.empty_cache()
        return out

    variants = {
        "plain": step,
        "session (defaults)": session(),
        "session, census off": session(census=False),
        "session, release off": session(release=False),
        "session, census + release off": session(census=False, release=False),
    }
    if device.type == "cuda":
        variants["plain + empty_cache"] = emptied
        return variants
    variants["plain + malloc_trim"] = trimmed
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


def _clock(device: torch.device) -> Callable[[], float]:
    """Host: the process's CPU time; CUDA: the wall clock (the step synchronizes)."""
    return time.perf_counter if device.type == "cuda" else time.process_time


def _round(fn: Step, x: torch.Tensor, steps: int, clock: Callable[[], float]) -> tuple[float, float]:
    """(seconds, of which system CPU seconds) per step over ``steps`` steps."""
    began, kernel = clock(), resource.getrusage(resource.RUSAGE_SELF).ru_stime
    for _ in range(steps):
        out = fn(x)
        del out
    took = clock() - began
    return took / steps, (resource.getrusage(resource.RUSAGE_SELF).ru_stime - kernel) / steps


def _input(shape: Shape, device: torch.device) -> torch.Tensor:
    return torch.randn(shape.batch, shape.length, shape.d_model, device=device)


def _plain_step_s(shape: Shape, model: torch.nn.Module, device: torch.device, clock: Callable[[], float]) -> float:
    """The median time of a few plain steps at this shape, after two untimed ones."""
    step, x = _plain(model, device), _input(shape, device)
    _round(step, x, 2, clock)
    return statistics.median(_round(step, x, 1, clock)[0] for _ in range(CALIBRATION_STEPS))


def calibrate(
    base: Shape, target_s: float, device: torch.device, clock: Callable[[], float]
) -> tuple[Shape, list[tuple[int, float]]]:
    """The batch whose plain step takes about ``target_s``: doubling from 1 until a step takes
    the target (at most :data:`CALIBRATION_SIZES` sizes), then the size interpolated linearly
    between the last two. Returns the shape and every (batch, seconds) measured."""
    model = _model(base, device)
    tried: list[tuple[int, float]] = []
    batch = 1
    for _ in range(CALIBRATION_SIZES):
        tried.append((batch, _plain_step_s(Shape(base.d_model, base.layers, batch, base.length), model, device, clock)))
        if tried[-1][1] >= target_s or batch >= MAX_BATCH:
            break
        batch *= 2
    chosen = tried[-1][0]
    if len(tried) >= 2 and tried[-1][1] > target_s:
        (low, low_s), (high, high_s) = tried[-2], tried[-1]
        if high_s > low_s:
            chosen = max(1, round(low + (target_s - low_s) * (high - low) / (high_s - low_s)))
        if chosen not in (low, high):
            tried.append(
                (chosen, _plain_step_s(Shape(base.d_model, base.layers, chosen, base.length), model, device, clock))
            )
    del model
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return Shape(base.d_model, base.layers, chosen, base.length), tried


def _ballast(target: int) -> list[Any]:
    """One-element lists up to ``target`` gc-tracked objects in the process."""
    gc.collect()
    return [[i] for i in range(max(0, target - len(gc.get_objects())))]


def run_loop(
    shape: Shape, device: torch.device, args: argparse.Namespace, clock: Callable[[], float]
) -> dict[str, Any]:
    """Every variant at this shape, alternated within each round; the medians and ratios."""
    torch.manual_seed(0)
    model = _model(shape, device)
    x = _input(shape, device)
    variants = _variants(model, device)
    for fn in variants.values():  # warm-up: kernels, the census's imports, the sampler thread
        _round(fn, x, 3, clock)
    ballast = _ballast(args.objects)
    gc.collect()
    live = len(gc.get_objects())
    print(
        f"TransformerEncoder d_model {shape.d_model}, {shape.layers} layers, batch {shape.batch}×{shape.length}, "
        f"inference_mode; {live} gc-tracked objects ({len(ballast)} of them added lists); "
        f"{args.steps} steps per round, median of {args.rounds} rounds"
    )
    samples: dict[str, list[float]] = {name: [] for name in variants}
    kernel: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, fn in variants.items():  # alternate within each round
            seconds, system = _round(fn, x, args.steps, clock)
            samples[name].append(seconds)
            kernel[name].append(system)
    base = statistics.median(samples["plain"])
    # Each variant's ratio is the median of its per-round ratios to the plain step of the same
    # round: the variants alternate within a round, so a machine that drifts between rounds (a
    # shared VM's plain step moved by 8 % between two runs) moves both sides of each ratio alike.
    plain = samples["plain"]
    ratios = {
        name: statistics.median(t / p for t, p in zip(times, plain, strict=True)) for name, times in samples.items()
    }
    unit = "ms/step" if device.type == "cuda" else "CPU ms/step"
    print(f"\n  {'variant':<36} {unit + ', median (min–max)':>30} {'× plain':>8} {'+ms/step':>9} {'of it sys ms':>12}")
    rows = []
    for name, times in samples.items():
        median = statistics.median(times)
        spread = f"{median * 1e3:7.2f} ({min(times) * 1e3:.2f}–{max(times) * 1e3:.2f})"
        system = statistics.median(kernel[name])
        print(f"  {name:<36} {spread:>30} {ratios[name]:8.3f} {(median - base) * 1e3:9.2f} {system * 1e3:12.2f}")
        rows.append(
            {"variant": name, "median_s": median, "min_s": min(times), "max_s": max(times),
             "ratio": ratios[name], "system_s": system}
        )  # fmt: skip
    ratio = ratios["session (defaults)"]
    session = base * ratio
    goal = goal_for(base * 1e3)
    verdict = "PASS" if ratio <= goal else "FAIL"
    print(
        f"\n  {verdict}  default session per step: {ratio:.3f}× the plain {base * 1e3:.2f} ms step, "
        f"{(session - base) * 1e6:.0f} µs per session (goal ≤ {goal:.2f}×)"
    )
    split = _session_split(model, x, device, args.steps)
    print(
        f"  inside the loop (wall clock, median of {args.steps} steps): the default session's entry "
        f"{split['entry_us']:.0f} µs, its exit {split['exit_us']:.0f} µs (beside overhead.py's empty "
        "session: after a step the session's code and the kernel's data are cold)"
    )
    cold = _cold_reads(model, x, device, max(5, args.rounds * 3)) if device.type == "cpu" else {}
    if cold:
        shown = ", ".join(f"{name} {us:.1f} µs" for name, us in cold.items())
        print(f"  each read as the first after a step: {shown}")
    report = variants["session (defaults)"].vram_report  # type: ignore[attr-defined]
    if report is not None:
        for step in report.release_steps:
            if step.detail:
                print(f"  last session's release, {step.name}: {step.detail}")
    del ballast, variants, model, x
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {
        "model": asdict(shape),
        "gc_objects": live,
        "plain_step_s": base,
        "default_ratio": ratio,
        "session_us": (session - base) * 1e6,
        "goal_ratio": goal,
        "verdict": verdict,
        "variants": rows,
        "session_entry_us": split["entry_us"],
        "session_exit_us": split["exit_us"],
        "first_read_after_a_step_us": cold,
    }


def _session_split(model: torch.nn.Module, x: torch.Tensor, device: torch.device, steps: int) -> dict[str, float]:
    """The default session's entry and exit inside the loop: wall-clock time from ``with`` to the
    block's first line, and from its last line to after ``with`` (the step itself excluded)."""
    step = _plain(model, device)
    entry, leave = [], []
    for _ in range(steps):
        began = time.perf_counter()
        with vramguard.gpu_session("step", device=device, leaks="ignore") as s:
            inside = time.perf_counter()
            s.keep(step(x))
            done = time.perf_counter()
        entry.append(inside - began)
        leave.append(time.perf_counter() - done)
    return {"entry_us": statistics.median(entry) * 1e6, "exit_us": statistics.median(leave) * 1e6}


def _cold_reads(model: torch.nn.Module, x: torch.Tensor, device: torch.device, steps: int) -> dict[str, float]:
    """What each host read a session makes costs when it is the first thing after a step (the
    kernel's and malloc's data cold), beside a Python call that reads nothing: the floor of a
    session's price inside a loop, where an empty session's figures do not apply."""
    from vramguard.probes import _host

    libc = _host._get_libc()
    reads: dict[str, Callable[[], object]] = {
        "a Python call": lambda: None,
        "mallinfo2": libc.mallinfo2 if libc.mallinfo2 is not None else lambda: None,
        "/proc/self/statm": _host.resident_bytes,
        "/proc/self/status": _host._read_status,
        "/proc/self/clear_refs write": _host.reset_resident_peak,
    }
    step = _plain(model, device)
    found: dict[str, list[float]] = {name: [] for name in reads}
    for _ in range(steps):
        for name, read in reads.items():
            step(x)
            began = time.perf_counter()
            read()
            found[name].append(time.perf_counter() - began)
    return {name: statistics.median(times) * 1e6 for name, times in found.items()}


def _targets(text: str | None) -> list[float]:
    if not text:
        return []
    try:
        targets = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        targets = []
    if not targets or any(t <= 0 for t in targets):
        raise SystemExit(f"--step-ms: positive milliseconds separated by commas, e.g. 4,20 (got {text!r})")
    return targets


def markdown(data: dict[str, Any]) -> str:
    """One table per loop: each variant's time per step and its ratio to the plain step."""
    lines = [
        f"Device: {data['device_label']}. Date: {data['date']}. Clock: {data['clock']}. "
        f"{data['steps']} steps per round, median of {data['rounds']} rounds. Command: `{data['command']}`."
    ]
    for loop in data["loops"]:
        shape = loop["model"]
        target = loop.get("target_ms")
        heading = f"target {target:g} ms, achieved {loop['plain_step_s'] * 1e3:.2f} ms" if target else "fixed size"
        lines += [
            "",
            f"**{heading}** (TransformerEncoder d_model {shape['d_model']}, {shape['layers']} layers, "
            f"batch {shape['batch']}×{shape['length']}; {loop['gc_objects']:,} gc-tracked objects):",
            "",
            "| variant | ms/step, median (min–max) | × plain | + ms/step |",
            "|---|---|---|---|",
        ]
        base = loop["plain_step_s"]
        for row in loop["variants"]:
            lines.append(
                f"| {row['variant']} | {row['median_s'] * 1e3:.2f} ({row['min_s'] * 1e3:.2f}–{row['max_s'] * 1e3:.2f}) "
                f"| {row['ratio']:.3f} | {(row['median_s'] - base) * 1e3:.2f} |"
            )
        lines += [
            "",
            f"Inside the loop the default session's entry took {loop['session_entry_us']:.0f} µs and its exit "
            f"{loop['session_exit_us']:.0f} µs (wall clock, medians).",
        ]
        cold = loop.get("first_read_after_a_step_us") or {}
        if cold:
            shown = ", ".join(f"{name} {us:.1f} µs" for name, us in cold.items())
            lines.append(f"Each read as the first thing after a step: {shown}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--device", default="cpu", help='"cpu" or "cuda" (default: cpu)')
    parser.add_argument("--steps", type=int, help="steps per round (default: 100; --quick: 2, on CUDA 10)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--objects", type=int, help="gc-tracked objects in the process (default: 171000; --quick: 0)")
    parser.add_argument("--d-model", type=int, help="default: 256 (CUDA: 1024)")
    parser.add_argument("--layers", type=int, help="default: 4")
    parser.add_argument("--batch", help="batch × sequence length (default: 8x32; CUDA: the length is 256)")
    parser.add_argument("--step-ms", help="target plain-step times in ms, comma-separated: the batch is sized to "
                        "reach each (default on CUDA: 4,20; on the host: the --batch given)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="2 steps, 5 rounds, d_model 32, 1 layer, 2x8, no ballast "
                        "(CUDA: 10 steps, 5 rounds, the model sized by --step-ms)")  # fmt: skip
    parser.add_argument("--json", help="write every figure to this file")
    parser.add_argument("--markdown", help="write the tables to this file")
    args = parser.parse_args(argv)
    device = resolve(args.device, "inference_loop.py")
    cuda = device.type == "cuda"
    targets = _targets(args.step_ms if args.step_ms is not None else ("" if args.quick and not cuda else "4,20"))
    if args.quick:
        args.rounds = 5
        if args.steps is None:
            args.steps = 10 if cuda else 2
        if args.objects is None:
            args.objects = 0
        if not cuda:
            args.d_model = args.d_model or 32
            args.layers = args.layers or 1
            args.batch = args.batch or "2x8"
    args.steps = 100 if args.steps is None else args.steps
    args.objects = 171_000 if args.objects is None else args.objects
    if args.rounds < 5:
        parser.error("--rounds: at least 5")
    if args.steps < 1:
        parser.error("--steps: at least 1")
    batch, length = (int(n) for n in (args.batch or ("8x256" if cuda else "8x32")).split("x"))
    base = Shape(args.d_model or (1024 if cuda else 256), args.layers or 4, batch, length)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    env = environment(device)
    clock = _clock(device)
    clock_text = (
        "wall-clock time (time.perf_counter), torch.cuda.synchronize() at the end of every step"
        if cuda
        else "CPU time (time.process_time)"
    )
    print(
        f"{label(env)}, one thread; {clock_text}"
        if cuda
        else f"torch {torch.__version__}, one thread, host; {clock_text}"
    )
    loops = []
    sizes: list[float | None] = [*targets] or [None]
    for target_ms in sizes:
        shape, tried = base, list[tuple[int, float]]()
        if target_ms is not None:
            shape, tried = calibrate(base, target_ms / 1e3, device, clock)
            measured = ", ".join(f"batch {b}: {s * 1e3:.2f} ms" for b, s in tried)
            achieved = dict(tried).get(shape.batch)
            print(
                f"\ntarget {target_ms:g} ms per plain step: batch {shape.batch}×{shape.length} "
                f"(calibration: {measured}); achieved " + ("n/a" if achieved is None else f"{achieved * 1e3:.2f} ms")
            )
        loop = run_loop(shape, device, args, clock)
        loop["target_ms"] = target_ms
        loop["calibration"] = [{"batch": b, "plain_step_s": s} for b, s in tried]
        if target_ms is not None:
            achieved_ms = loop["plain_step_s"] * 1e3
            print(f"  achieved plain step in the measured rounds: {achieved_ms:.2f} ms (target {target_ms:g})")
        loops.append(loop)
    shown = f"--device {device.type}" + (" --quick" if args.quick else f" --steps {args.steps} --rounds {args.rounds}")
    if targets:
        shown += " --step-ms " + ",".join(f"{t:g}" for t in targets)
    data = {
        "device": str(device),
        "device_label": label(env),
        "environment": env,
        "date": datetime.date.today().isoformat(),
        "command": f".venv/bin/python benchmarks/inference_loop.py {shown}",
        "clock": clock_text,
        "steps": args.steps,
        "rounds": args.rounds,
        "goals": [{"step_ms": step, "ratio": ratio} for step, ratio in GOALS],
        "loops": loops,
    }
    write(data, markdown(data), args.json, args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
