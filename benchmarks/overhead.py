"""Enter+exit cost of an empty session, beside a bare ``contextlib.nullcontext()``, in one run.

    .venv/bin/python benchmarks/overhead.py [--device cpu] [--runs 2000]
    .venv/bin/python benchmarks/overhead.py --quick   # 200 runs, the budget printed but not judged: CI

Prints the median of many runs for each variant and its ratio to the null context. The budget
(issue 3): an empty session with release off costs at most 50 µs; it applies with the census off.
The census (on by default) scans the heap once at entry and once at exit, and the release runs
gc.collect(): both scale with the number of live Python objects, so they run fewer times here.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="200 runs; exit 0 whatever the budget says (CI)")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs = min(args.runs, 200)
    device = vramguard.resolve_device(args.device)
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
    print(f"device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'host'}), "
          f"torch {torch.__version__}, {len(gc.get_objects())} live gc-tracked objects")
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
    return 0 if off <= BUDGET_RELEASE_OFF_S or args.quick else 1


if __name__ == "__main__":
    sys.exit(main())
