"""What the census costs, side by side in one run: per op, and per session against the heap's size.

    .venv/bin/python benchmarks/census.py [--objects 300000,1000000,3000000] [--steps 20] [--repeats 5]
    .venv/bin/python benchmarks/census.py --objects 1000000 --profile attr   # cProfile of one session
    .venv/bin/python benchmarks/census.py --breakdown           # CPU time per census function, leak sessions
    .venv/bin/python benchmarks/census.py --quick               # --objects 100000 --steps 2 --repeats 3: CI

Every time is CPU time of the process (``time.process_time()``, all its threads), not wall-clock
time, so a loaded machine's waiting does not count; torch runs one thread.

1. A small ``nn.TransformerEncoder`` (2 layers, d_model 64) runs a loop of forward passes
   (inference) and of training steps inside a host session (release off) with the census off,
   on (the heap epoch), and on with creation sites (``VRAMGUARD_CENSUS_SITES=1``, a dispatch
   mode). Runs alternate between variants; the medians' ratios to "off" are printed. The
   budget: census on costs at most 10 % more per op.
2. With 0.3 M, 1 M and 3 M extra live gc-tracked objects (lists of one-element lists, made once
   per size), a bare ``gc.get_objects()`` and a bare full ``gc.collect()``, then default host
   sessions (``gpu_session(device="cpu", leaks="ignore")``, census and release on): an empty one,
   one whose block creates and drops tensors, and four that leak a tensor each — into a global
   dict, down an attribute chain of plain instances held by a global (``ROOT.a.b.c.t``), into a
   closure kept in a global, and as the cached return value of an ``lru_cache``d function. Each
   leak must be found with a holder path that names the global. Entry is timed from before the
   ``with`` to the block's first statement, exit from the block's last statement to after the
   ``with``. Every figure: the median of ``--repeats`` runs and the spread (min–max).
   The goals, at 1 M extra objects: empty session ≤ 2 ms; the tensor block's session (entry +
   exit) ≤ 100 ms; each leak session's exit ≤ 20 ms per 100k live objects (at every size).
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import gc
import io
import os
import pstats
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

import vramguard
from vramguard import SessionReport

GOAL_OBJECTS = 1_000_000
GOAL_EMPTY_MS = 2.0
GOAL_TENSORS_MS = 100.0
GOAL_LEAK_EXIT_MS_PER_100K = 20.0
LEAK_NUMEL = 1024

# The holders of the leaks (module globals, as an application's caches are).
CACHE: dict[str, torch.Tensor] = {}


class Node:
    """A plain instance: one level of the attribute chain."""

    a: Node
    b: Node
    c: Node
    t: torch.Tensor


ROOT = Node()
CLOSURE: Callable[[], torch.Tensor] | None = None


@functools.lru_cache(maxsize=16)
def cached_weights(numel: int) -> torch.Tensor:
    return torch.ones(numel)


# -- 1. per op ------------------------------------------------------------------------------


def _model() -> torch.nn.Module:
    layer = torch.nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, batch_first=True)
    return torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)


def _loops(model: torch.nn.Module, x: torch.Tensor, steps: int) -> dict[str, Callable[[], None]]:
    def forward() -> None:
        with torch.inference_mode():
            for _ in range(steps):
                model(x)

    def train() -> None:
        for _ in range(steps):
            model(x).sum().backward()
        model.zero_grad(set_to_none=True)

    return {"forward (inference)": forward, "training step": train}


def _timed_block(loop: Callable[[], None], variant: str) -> tuple[float, float]:
    """(CPU seconds of the whole with-block including entry and exit, CPU seconds of the loop)."""
    os.environ.pop("VRAMGUARD_CENSUS_SITES", None)
    if variant == "on + sites":
        os.environ["VRAMGUARD_CENSUS_SITES"] = "1"
    began = time.process_time()
    with vramguard.gpu_session(device="cpu", census=variant != "off", release=False, leaks="ignore"):
        inner = time.process_time()
        loop()
        loop_s = time.process_time() - inner
    os.environ.pop("VRAMGUARD_CENSUS_SITES", None)
    return time.process_time() - began, loop_s


def bench_loops(steps: int, repeats: int) -> None:
    torch.manual_seed(0)
    model = _model()
    x = torch.randn(8, 32, 64)
    variants = ("off", "on", "on + sites")
    print(
        f"\n1. census cost per op: {steps} iterations per block, release off, median of {repeats} blocks, "
        f"{len(gc.get_objects())} live objects (CPU ms)"
    )
    print(f"  {'loop':<22} {'variant':<12} {'loop ms':>9} {'ratio':>7} {'block ms':>9} {'ratio':>7}")
    for name, loop in _loops(model, x, steps).items():
        loop()  # warm-up
        samples: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
        for _ in range(repeats):
            for variant in variants:  # alternate, so drift hits every variant alike
                samples[variant].append(_timed_block(loop, variant))
        base_block = statistics.median(s[0] for s in samples["off"])
        base_loop = statistics.median(s[1] for s in samples["off"])
        for variant in variants:
            block = statistics.median(s[0] for s in samples[variant])
            loop_s = statistics.median(s[1] for s in samples[variant])
            print(
                f"  {name:<22} {variant:<12} {loop_s * 1e3:9.1f} {loop_s / base_loop:7.2f} "
                f"{block * 1e3:9.1f} {block / base_block:7.2f}"
            )


# -- 2. per session, against the heap's size ------------------------------------------------


def _nothing() -> None:
    pass


def _churn() -> None:
    """Creates and drops some tensors (and their autograd graphs); leaks nothing."""
    w = torch.randn(64, 64, requires_grad=True)
    for _ in range(20):
        x = torch.randn(32, 64)
        y = (x @ w).relu().sum()
        del x, y
    del w


def _leak_dict() -> None:
    CACHE["t"] = torch.ones(LEAK_NUMEL)


def _leak_attributes() -> None:
    ROOT.a = Node()
    ROOT.a.b = Node()
    ROOT.a.b.c = Node()
    ROOT.a.b.c.t = torch.ones(LEAK_NUMEL)


def _leak_closure() -> None:
    global CLOSURE
    weights = torch.ones(LEAK_NUMEL)

    def closure() -> torch.Tensor:
        return weights

    CLOSURE = closure


def _leak_lru_cache() -> None:
    cached_weights(LEAK_NUMEL)


def _forget_leaks() -> None:
    global CLOSURE
    CACHE.clear()
    ROOT.__dict__.clear()
    CLOSURE = None
    cached_weights.cache_clear()


@dataclass(frozen=True)
class Shape:
    """A session's block, and the text its first leak's first holder path must contain (None: no leak)."""

    name: str
    block: Callable[[], None]
    holder: str | None


SHAPES = (
    Shape("empty", _nothing, None),
    Shape("tensors", _churn, None),
    Shape("dict", _leak_dict, "CACHE['t']"),
    Shape("attr", _leak_attributes, "ROOT.a.b.c.t"),
    Shape("closure", _leak_closure, "CLOSURE"),
    Shape("lru_cache", _leak_lru_cache, "cached_weights"),
)
LEAK_SHAPES = tuple(s for s in SHAPES if s.holder is not None)


def _session(shape: Shape) -> tuple[float, float, float, SessionReport]:
    """(entry, exit, whole) CPU seconds of one default host session, and its report."""
    began = time.process_time()
    with vramguard.gpu_session(device="cpu", leaks="ignore") as session:
        entered = time.process_time()
        shape.block()
        last = time.process_time()
    ended = time.process_time()
    report = session.report
    assert report is not None
    _check(shape, report)
    _forget_leaks()
    return entered - began, ended - last, ended - began, report


def _check(shape: Shape, report: SessionReport) -> None:
    if shape.holder is None:
        if report.leaks:
            raise SystemExit(f"{shape.name}: the block leaked nothing, yet the census reported {report.leaks}")
        return
    if not report.leaks:
        raise SystemExit(f"{shape.name}: the leak was not found")
    holder = report.leaks[0].holders[0] if report.leaks[0].holders else ""
    if shape.holder not in holder:
        raise SystemExit(f"{shape.name}: holder {holder!r} does not name {shape.holder!r}")


def _cpu(fn: Callable[[], object]) -> float:
    began = time.process_time()
    fn()
    return time.process_time() - began


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, seconds: list[float]) -> Spread:
        return cls(statistics.median(seconds) * 1e3, min(seconds) * 1e3, max(seconds) * 1e3)

    def text(self, per: float = 1.0) -> str:
        return f"{self.median / per:8.2f} ({self.low / per:.2f}–{self.high / per:.2f})"


@dataclass
class SizeResult:
    extra: int
    live: int
    rows: dict[str, Spread]
    details: dict[str, tuple[str, ...]]
    holders: dict[str, str]

    @property
    def per(self) -> float:
        """Hundreds of thousands of live objects."""
        return self.live / 1e5


def _ballast(count: int) -> list[Any]:
    """``count`` cheap gc-tracked objects: one-element lists, as a large program's heap has."""
    return [[i] for i in range(count)]


def bench_size(extra: int, repeats: int) -> SizeResult:
    ballast = _ballast(extra)
    gc.collect()
    live = len(gc.get_objects())
    rows: dict[str, Spread] = {
        "gc.get_objects()": Spread.of([_cpu(gc.get_objects) for _ in range(repeats)]),
        "gc.collect() (full)": Spread.of([_cpu(gc.collect) for _ in range(repeats)]),
    }
    details: dict[str, tuple[str, ...]] = {}
    holders: dict[str, str] = {}
    for shape in SHAPES:
        runs = [_session(shape) for _ in range(repeats)]
        report = runs[-1][3]
        details[shape.name] = tuple(f"{s.name}: {s.detail}" for s in report.release_steps if s.detail)
        if report.leaks:
            holders[shape.name] = report.leaks[0].holders[0]
        rows[f"{shape.name}: entry"] = Spread.of([r[0] for r in runs])
        rows[f"{shape.name}: exit"] = Spread.of([r[1] for r in runs])
        rows[f"{shape.name}: entry + exit"] = Spread.of([r[0] + r[1] for r in runs])
        rows[f"{shape.name}: whole session"] = Spread.of([r[2] for r in runs])
        del runs, report
    del ballast
    gc.collect()
    return SizeResult(extra, live, rows, details, holders)


def print_size(result: SizeResult) -> None:
    reference = result.rows["gc.get_objects()"].median
    print(f"\n  +{result.extra} objects: {result.live} live gc-tracked objects")
    print(f"  {'what':<26} {'CPU ms, median (min–max)':>30} {'ms/100k (min–max)':>26} {'x get_objects':>13}")
    for what, spread in result.rows.items():
        if what.endswith("whole session") and not what.startswith("empty"):
            continue
        print(f"  {what:<26} {spread.text():>30} {spread.text(result.per):>26} {spread.median / reference:13.2f}")
    for name, holder in result.holders.items():
        print(f"  holder found, {name}: {holder}")


@dataclass(frozen=True)
class Goal:
    text: str
    measured: float
    limit: float
    unit: str

    @property
    def passed(self) -> bool:
        return self.measured <= self.limit


def goals(results: list[SizeResult]) -> list[Goal]:
    found: list[Goal] = []
    at = next((r for r in results if r.extra == GOAL_OBJECTS), None)
    if at is not None:
        where = f"+{at.extra // 1000}k ({at.live} live)"
        empty = at.rows["empty: whole session"].median
        found.append(Goal(f"empty session at {where}", empty, GOAL_EMPTY_MS, "ms"))
        tensors = at.rows["tensors: entry + exit"].median
        found.append(Goal(f"tensor block's session (entry + exit) at {where}", tensors, GOAL_TENSORS_MS, "ms"))
    for result in results:
        for shape in LEAK_SHAPES:
            per = result.rows[f"{shape.name}: exit"].median / result.per
            where = f"+{result.extra // 1000}k"
            found.append(Goal(f"{shape.name} leak's exit at {where}", per, GOAL_LEAK_EXIT_MS_PER_100K, "ms/100k"))
    return found


def print_summary(results: list[SizeResult]) -> None:
    shapes = [s.name for s in LEAK_SHAPES]
    print("\n3. summary: CPU ms, medians (leak exits in ms per 100k live objects)")
    head = f"  {'live objects':>12} {'get_objects':>11} {'gc.collect':>10} {'empty':>7} {'tensors':>8}"
    print(head + "".join(f" {name + ' exit':>15}" for name in shapes))
    for r in results:
        line = (
            f"  {r.live:>12} {r.rows['gc.get_objects()'].median:11.1f} {r.rows['gc.collect() (full)'].median:10.1f} "
            f"{r.rows['empty: whole session'].median:7.2f} {r.rows['tensors: entry + exit'].median:8.2f}"
        )
        print(line + "".join(f" {r.rows[f'{name}: exit'].median / r.per:15.2f}" for name in shapes))
    print("\n  goals")
    for goal in goals(results):
        verdict = "PASS" if goal.passed else "FAIL"
        print(f"  {verdict}  {goal.text}: {goal.measured:.2f} {goal.unit} (goal ≤ {goal.limit:g} {goal.unit})")


def print_details(results: list[SizeResult]) -> None:
    result = next((r for r in results if r.extra == GOAL_OBJECTS), results[0])
    print(f"\n  release steps' detail at {result.live} live objects (which collections ran)")
    for name in ("tensors", "dict"):
        print(f"  {name} session:")
        for line in result.details[name]:
            print(f"    {line}")


def bench_sizes(extras: list[int], repeats: int) -> None:
    print(f"\n2. default host sessions against the heap's size: median of {repeats} (CPU ms)")
    for shape in SHAPES:  # warm-up: the census's imports and first-call caches
        _session(shape)
    results = []
    for extra in extras:
        result = bench_size(extra, repeats)
        print_size(result)
        results.append(result)
    print_details(results)
    print_summary(results)


def profile(extra: int, name: str) -> None:
    """One session of a shape under cProfile, with ``extra`` live objects: vramguard's functions
    by cumulative time."""
    shape = next(s for s in SHAPES if s.name == name)
    ballast = _ballast(extra)
    gc.collect()
    _session(shape)  # warm-up
    print(f"\ncProfile of one '{name}' session, {len(gc.get_objects())} live objects")
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    _session(shape)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
    print(out.getvalue())
    del ballast


# The census's steps a leak session's exit goes through: (module, class, method).
BREAKDOWN = (
    ("vramguard.census._census", "Census", "stop"),
    ("vramguard.census._census", "Census", "collect_block"),
    ("vramguard.census._census", "Census", "settle"),
    ("vramguard.census._census", "Census", "_drop_shared"),
    ("vramguard.census._holders", "HolderSearch", "index_heap"),
    ("vramguard.census._holders", "HolderSearch", "_scan"),
    ("vramguard.census._census", "Census", "finish"),
)


def breakdown(extras: list[int], repeats: int) -> None:
    """Each leak shape's exit, and the CPU time of the census's steps in it (each method wrapped
    with ``process_time``; ``HolderSearch._scan`` is one ``gc.get_referrers`` per level)."""
    import importlib

    spent: dict[str, float] = {}
    calls: dict[str, int] = {}

    def timed(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            began = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.process_time() - began
                calls[label] = calls.get(label, 0) + 1

        return wrapper

    for module_name, cls_name, method in BREAKDOWN:
        cls = getattr(importlib.import_module(module_name), cls_name, None)
        if cls is not None and callable(getattr(cls, method, None)):
            setattr(cls, method, timed(f"{cls_name}.{method}", getattr(cls, method)))
    for shape in SHAPES:  # warm-up
        _session(shape)
    print(f"\nCPU time of the census's steps in a leak session's exit, mean of {repeats} sessions")
    for extra in extras:
        ballast = _ballast(extra)
        gc.collect()
        print(f"\n  +{extra} objects: {len(gc.get_objects())} live gc-tracked objects")
        for shape in LEAK_SHAPES:
            spent.clear()
            calls.clear()
            exits = [_session(shape)[1] for _ in range(repeats)]
            print(f"  {shape.name}: exit {statistics.median(exits) * 1e3:.1f} ms (median)")
            for label, seconds in spent.items():
                print(f"    {label:<28} {seconds / repeats * 1e3:8.1f} ms  {calls[label] / repeats:5.1f} calls")
        del ballast
        gc.collect()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", default="300000,1000000,3000000", help="extra live objects, comma-separated")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-loops", action="store_true", help="skip section 1")
    parser.add_argument("--profile", choices=[s.name for s in SHAPES], help="profile one session of this shape")
    parser.add_argument("--breakdown", action="store_true", help="CPU time per census step in leak sessions")
    parser.add_argument("--quick", action="store_true", help="--objects 100000 --steps 2 --repeats 3: seconds")
    args = parser.parse_args(argv)
    if args.quick:
        args.objects, args.steps, args.repeats = "100000", 2, 3
    if args.repeats < 3:
        parser.error("--repeats: at least 3")
    torch.set_num_threads(1)
    extras = [int(n) for n in args.objects.split(",") if n]
    print(f"torch {torch.__version__}, one thread, host; CPU time (time.process_time)")
    if args.profile:
        profile(max(extras, default=0), args.profile)
        return 0
    if args.breakdown:
        breakdown(extras, args.repeats)
        return 0
    if not args.skip_loops:
        bench_loops(args.steps, args.repeats)
    bench_sizes(extras, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
