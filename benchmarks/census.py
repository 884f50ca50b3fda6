"""What the census costs, side by side in one run: per op, and at a session's exit.

    .venv/bin/python benchmarks/census.py [--objects 0,250000,1000000] [--steps 20] [--repeats 5]

1. A small ``nn.TransformerEncoder`` (2 layers, d_model 64) runs a loop of forward passes
   (inference) and of training steps inside a host session with the census off, on (the
   default heap diff), and on with creation sites (``VRAMGUARD_CENSUS_SITES=1``, a dispatch
   mode). Runs alternate between variants; the medians' ratios to "off" are printed. The
   budget: census on costs at most 10 % more.
2. With extra live Python objects in the process, the census's entry (``start``) and exit
   (``stop`` + ``finish``) with no leak, and with one leak held four levels down a global; as
   ms per 100k live objects and as a ratio to one ``gc.get_objects()`` of the same heap. The
   budget: exit at most 50 ms per 100k live objects.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

import vramguard
from vramguard.census import Census

LEAKS: dict[str, Any] = {}


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
    """(seconds of the whole with-block including entry and exit, seconds of the loop)."""
    os.environ.pop("VRAMGUARD_CENSUS_SITES", None)
    if variant == "on + sites":
        os.environ["VRAMGUARD_CENSUS_SITES"] = "1"
    began = time.perf_counter()
    with vramguard.gpu_session(device="cpu", census=variant != "off", release=False, leaks="ignore"):
        inner = time.perf_counter()
        loop()
        loop_s = time.perf_counter() - inner
    os.environ.pop("VRAMGUARD_CENSUS_SITES", None)
    return time.perf_counter() - began, loop_s


def bench_loops(steps: int, repeats: int) -> None:
    torch.manual_seed(0)
    model = _model()
    x = torch.randn(8, 32, 64)
    variants = ("off", "on", "on + sites")
    print(
        f"\n1. census cost per op: {steps} iterations per block, median of {repeats} blocks, "
        f"{len(gc.get_objects())} live objects"
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


def _ballast(count: int) -> list[Any]:
    """``count`` gc-tracked objects: small lists, as a large program's heap has."""
    return [[i] for i in range(count)]


def _census_costs(leak: bool) -> tuple[float, float, float, int]:
    census = Census(torch.device("cpu"))
    began = time.perf_counter()
    census.start()
    started = time.perf_counter()
    if leak:
        LEAKS["cache"] = {"k": [None, torch.ones(1024)]}
    census.stop([])
    stopped = time.perf_counter()
    leaks, _ = census.finish([])
    finished = time.perf_counter()
    LEAKS.clear()
    assert len(leaks) == int(leak), leaks
    if leak:
        assert leaks[0].holders[0].endswith("LEAKS['cache']['k'][1]"), leaks[0]
    return started - began, stopped - started, finished - stopped, len(leaks)


def bench_exit(object_counts: list[int], repeats: int) -> None:
    print(f"\n2. census cost at entry and exit, median of {repeats}")
    print(f"  {'live objects':>12} {'get_objects ms':>14} {'what':<18} {'ms':>8} {'ms/100k':>8} {'x get_objects':>13}")
    for extra in object_counts:
        ballast = _ballast(extra)
        gc.collect()
        live = len(gc.get_objects())
        reference = statistics.median(_time(gc.get_objects) for _ in range(repeats))
        for leak in (False, True):
            runs = [_census_costs(leak) for _ in range(repeats)]
            start = statistics.median(r[0] for r in runs)
            exit_s = statistics.median(r[1] + r[2] for r in runs)
            rows = [("entry", start), ("exit, one leak" if leak else "exit, no leak", exit_s)]
            for what, seconds in rows if not leak else rows[1:]:
                print(
                    f"  {live:>12} {reference * 1e3:>14.1f} {what:<18} {seconds * 1e3:8.1f} "
                    f"{seconds * 1e3 / (live / 1e5):8.1f} {seconds / reference:13.2f}"
                )
        del ballast
        gc.collect()


def _time(fn: Callable[[], object]) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", default="0,250000,1000000", help="extra live objects, comma-separated")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, one thread, host")
    bench_loops(args.steps, args.repeats)
    bench_exit([int(n) for n in args.objects.split(",") if n], args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
