"""Enter+exit cost of an empty session, beside a bare ``contextlib.nullcontext()``, in one run.

    .venv/bin/python benchmarks/overhead.py [--device cpu|cuda] [--runs 2000] [--json out.json] [--markdown out.md]
    .venv/bin/python benchmarks/overhead.py --quick   # 200 runs, the budget printed but not judged: CI

Prints the median of many runs for each variant and its ratio to the null context, measured
one after the other in the same process. The budget (issue 3): an empty session with release
off costs at most 50 µs; it applies with the census off. The census (on by default) scans the
heap once at entry and once at exit, and the release runs gc.collect() (on CUDA also
synchronize and empty_cache): both scale with the number of live Python objects, so they run
fewer times here. On CUDA, CUDA is initialised (one small tensor) before anything is timed, as
in a program that uses the GPU; the times are wall-clock.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch
from bench_env import environment, label, resolve, write

import vramguard

BUDGET_RELEASE_OFF_S = 50e-6


def measure(factory: Callable[[], AbstractContextManager[object]], runs: int) -> float:
    """Median seconds of one ``with factory(): pass``."""
    for _ in range(min(50, runs)):  # warm-up: imports, the sampler thread, caches
        with factory():
            pass
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        with factory():
            pass
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def markdown(data: dict[str, Any]) -> str:
    """The run as a Markdown table."""
    lines = [
        f"Device: {data['device_label']}. Date: {data['date']}. {data['gc_objects']:,} live gc-tracked objects. "
        f"Command: `{data['command']}`.",
        "",
        "| variant | median (µs) | × nullcontext() | runs |",
        "|---|---|---|---|",
    ]
    for row in data["variants"]:
        lines.append(f"| {row['variant']} | {row['median_s'] * 1e6:.1f} | {row['ratio']:.0f} | {row['runs']} |")
    verdict = "within" if data["within_budget"] else "over"
    lines += ["", f"Release off, census off: {verdict} the {data['budget_us']:.0f} µs budget."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--device", default="auto", help='"auto", "cpu" or "cuda" (default: auto)')
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="200 runs; exit 0 whatever the budget says (CI)")
    parser.add_argument("--json", help="write every figure to this file")
    parser.add_argument("--markdown", help="write the table to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs = min(args.runs, 200)
    device = resolve(args.device, "overhead.py")
    env = environment(device)
    if device.type == "cuda":
        torch.zeros(1, device=device)  # a context, as any program that uses the GPU has one
        torch.cuda.synchronize(device)
    release_runs = max(20, args.runs // 50)

    def session(**options: object) -> Callable[[], AbstractContextManager[object]]:
        return lambda: vramguard.gpu_session(device=device, **options)  # type: ignore[call-overload,no-any-return]

    variants: list[tuple[str, Callable[[], AbstractContextManager[object]], int]] = [
        ("nullcontext()", contextlib.nullcontext, args.runs),
        ("session, release off, census off", session(release=False, census=False), args.runs),
        ("session, release off (census on)", session(release=False), release_runs),
        ("session, release on, census off", session(census=False), release_runs),
        ("session, release on (census on)", session(), release_runs),
    ]
    objects = len(gc.get_objects())
    print(f"device: {label(env)}; {objects} live gc-tracked objects")
    results = []
    for name, factory, runs in variants:
        results.append((name, measure(factory, runs), runs))
    base = results[0][1]
    print(f"{'variant':<36} {'median':>12} {'x nullcontext':>14} {'runs':>6}")
    for name, median, runs in results:
        print(f"{name:<36} {median * 1e6:>9.1f} µs {median / base:>14.0f} {runs:>6}")
    off = results[1][1]
    verdict = "within" if off <= BUDGET_RELEASE_OFF_S else "OVER"
    print(f"release off, census off: {off * 1e6:.1f} µs — {verdict} the {BUDGET_RELEASE_OFF_S * 1e6:.0f} µs budget")
    shown = "--quick" if args.quick else f"--runs {args.runs}"
    data = {
        "device": str(device),
        "device_label": label(env),
        "environment": env,
        "date": datetime.date.today().isoformat(),
        "command": f".venv/bin/python benchmarks/overhead.py --device {device.type} {shown}",
        "gc_objects": objects,
        "budget_us": BUDGET_RELEASE_OFF_S * 1e6,
        "within_budget": off <= BUDGET_RELEASE_OFF_S,
        "variants": [
            {"variant": name, "median_s": median, "ratio": median / base, "runs": runs}
            for name, median, runs in results
        ],
    }
    write(data, markdown(data), args.json, args.markdown)
    return 0 if off <= BUDGET_RELEASE_OFF_S or args.quick else 1


if __name__ == "__main__":
    sys.exit(main())
