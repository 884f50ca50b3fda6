"""Enter+exit cost of an empty session, beside a bare ``contextlib.nullcontext()``, in one run.

    .venv/bin/python benchmarks/overhead.py [--device cpu|cuda] [--runs 2000] [--json out.json] [--markdown out.md]
    .venv/bin/python benchmarks/overhead.py --quick   # 200 runs, the budget printed but not judged: CI

Prints the median of many runs for each variant and its ratio to the null context, measured
one after the other in the same process, then where a default session's price goes (each
phase's share under cProfile) and how many device reads a session makes (on CUDA: the
``memory_stats()``, snapshot and NVML calls). The budgets (issue 29): an empty default session
(census and release on) costs at most 50 µs, one with census and release off at most 20 µs.
The census costs O(objects the block created) (the heap epoch), the release's collection the
same, so every variant runs as many times. On CUDA, CUDA is initialised (one small tensor)
before anything is timed, as in a program that uses the GPU; the times are wall-clock.
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

BUDGET_DEFAULT_S = 50e-6
BUDGET_BARE_S = 20e-6


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


PHASES: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("session object (options checked)", (("core/_options.py", "options_of"), ("core/_session.py", "__init__"))),
    ("readings (malloc, /proc, allocator)", (("probes/_snapshot.py", "take"), ("_snapshot.py", "take_host_and_peak"))),
    ("host peak (VmHWM reset and fold)", (("core/_run.py", "reset_host_peak"), ("core/_run.py", "_fold_host_hwm"))),
    ("census start", (("census/_census.py", "start"),)),
    ("census look at the block's end", (("census/_census.py", "stop"),)),
    ("release: drop + collection", (("core/_collect.py", "collect"),)),
    ("release: trim / empty_cache decision", (("core/_release.py", "_host_trim"), ("core/_release.py", "empty"))),
    ("census finish (leaks judged)", (("census/_census.py", "finish"),)),
)
"""Each printed phase of a session and the functions whose cumulative time it is."""

PROBES: tuple[tuple[str, str, str], ...] = (
    ("memory_stats()", "torch/cuda/memory.py", "memory_stats"),
    ("memory snapshot", "torch/cuda/memory.py", "_snapshot"),
    ("NVML memory info", "probes/_nvml.py", "memory_info"),
    ("NVML process list", "probes/_nvml.py", "read_nvml"),
    ("synchronize()", "torch/cuda/__init__.py", "synchronize"),
    ("empty_cache()", "core/_release.py", "_raw_empty_cache"),
    ("mallinfo2 (host)", "probes/_host.py", "read_host"),
    ("/proc/self/statm (host)", "probes/_host.py", "resident_bytes"),
    ("/proc/self/status (host)", "probes/_host.py", "_read_status"),
    ("/proc/self/clear_refs write (host)", "probes/_host.py", "_write_clear_refs"),
)
"""Device reads counted per session: (label, file suffix, function)."""


def price_shares(factory: Callable[[], AbstractContextManager[object]], runs: int) -> dict[str, Any]:
    """Where a session's price goes: each phase's share of the session's time under cProfile
    (which inflates Python beside C, so the shares say where a regression came from, not
    absolute times), and how many times each device read ran per session."""
    import cProfile
    import pstats

    profile = cProfile.Profile()
    profile.enable()
    for _ in range(runs):
        with factory():
            pass
    profile.disable()
    stats: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = pstats.Stats(profile).stats  # type: ignore[attr-defined]

    def cumulative(suffix: str, name: str) -> tuple[int, float]:
        calls, seconds = 0, 0.0
        for (path, _, function), (_, ncalls, _, cum, _) in stats.items():
            if function == name and path.replace("\\", "/").endswith(suffix):
                calls, seconds = calls + ncalls, seconds + cum
        return calls, seconds

    total = sum(cumulative("core/_session.py", name)[1] for name in ("__enter__", "__exit__"))
    total += cumulative("vramguard/_api.py", "gpu_session")[1]
    phases = [
        {"phase": label, "share": sum(cumulative(*where)[1] for where in functions) / total if total else 0.0}
        for label, functions in PHASES
    ]
    rest = 1.0 - sum(row["share"] for row in phases)
    phases.append({"phase": "the rest (registry, peaks, report, glue)", "share": max(0.0, rest)})
    probes = [{"probe": label, "per_session": cumulative(suffix, name)[0] / runs} for label, suffix, name in PROBES]
    return {"phases": phases, "probes": probes, "runs": runs}


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
    lines += [
        "",
        f"Budgets: default ≤ {data['budget_default_us']:.0f} µs, "
        f"census and release off ≤ {data['budget_bare_us']:.0f} µs: {verdict}.",
    ]
    shares = data.get("shares")
    if shares:
        lines += ["", f"Where a default session's price goes (cProfile over {shares['runs']} sessions):", ""]
        lines += ["| phase | share |", "|---|---|"]
        lines += [f"| {row['phase']} | {row['share']:.0%} |" for row in shares["phases"]]
        lines += ["", "| device read | per session |", "|---|---|"]
        lines += [f"| {row['probe']} | {row['per_session']:g} |" for row in shares["probes"]]
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
    release_runs = args.runs

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
    off, default = results[1][1], results[-1][1]
    within = off <= BUDGET_BARE_S and default <= BUDGET_DEFAULT_S
    judged = (("default", default, BUDGET_DEFAULT_S), ("census and release off", off, BUDGET_BARE_S))
    for label_, figure, budget in judged:
        verdict = "within" if figure <= budget else "OVER"
        print(f"{label_}: {figure * 1e6:.1f} µs — {verdict} the {budget * 1e6:.0f} µs budget")
    shares = price_shares(session(), release_runs)
    print(f"where a default session's price goes (cProfile over {release_runs} sessions; phases can overlap):")
    for row in shares["phases"]:
        print(f"  {row['phase']:<44} {row['share']:>6.0%}")
    print("device reads per default session:")
    for row in shares["probes"]:
        print(f"  {row['probe']:<44} {row['per_session']:>6g}")
    shown = "--quick" if args.quick else f"--runs {args.runs}"
    data = {
        "device": str(device),
        "device_label": label(env),
        "environment": env,
        "date": datetime.date.today().isoformat(),
        "command": f".venv/bin/python benchmarks/overhead.py --device {device.type} {shown}",
        "gc_objects": objects,
        "budget_default_us": BUDGET_DEFAULT_S * 1e6,
        "budget_bare_us": BUDGET_BARE_S * 1e6,
        "within_budget": within,
        "shares": shares,
        "variants": [
            {"variant": name, "median_s": median, "ratio": median / base, "runs": runs}
            for name, median, runs in results
        ],
    }
    write(data, markdown(data), args.json, args.markdown)
    return 0 if within or args.quick else 1


if __name__ == "__main__":
    sys.exit(main())
