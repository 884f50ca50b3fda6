"""The release sequences users write today against vramguard, side by side in one run.

    .venv/bin/python benchmarks/release_orders.py [--device cpu|cuda] [--json out.json] [--jobs 1]
    .venv/bin/python benchmarks/release_orders.py --quick   # a 1-layer encoder, one child per scenario: CI

Each (sequence, scenario) pair runs in a fresh child process, so no variant inherits another's
heap or cache: load a model, run it, release it the given way, and read memory. Scenarios: a plain
model held by a pipeline object, and the same pipeline caught in a reference cycle. On the host,
"empty_cache" is ``vramguard.empty_cache("cpu")`` (malloc_trim); accelerate's ``release_memory``
is called as users call it. Figures are relative to the child's level before loading, after one
warm-up load+run+release (lazy one-time caches are not a leak). ``--quick`` (CI) runs a small
pipeline and every sequence of a scenario in one child, one after the other: the same code, in seconds.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gc
import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import torch

import vramguard

SEQUENCES = {
    "bare del": "del pipe",
    "whisper-plus (empty_cache, then = None)": "empty_cache(); pipe.model = None; pipe.head = None; del pipe",
    "whisperX README (gc, empty_cache, del)": "gc.collect(); empty_cache(); del pipe",
    "accelerate release_memory(pipe.model, pipe.head)": "release_memory(pipe.model, pipe.head); del pipe",
    "del, gc.collect(), empty_cache()": "del pipe; gc.collect(); empty_cache()",
    "vramguard.release(pipe, attrs=(...))": "vramguard.release(pipe, attrs=('model', 'head'), device=DEVICE); del pipe",
    "vramguard session, s.own(pipe)": (
        "with vramguard.gpu_session(device=DEVICE, leaks='ignore', census=False) as s:\n    s.own(pipe)\n    del pipe"
    ),
}
OURS = "vramguard.release(pipe, attrs=(...))"
SCENARIOS = ("plain", "cycle")
# (width, encoder layers, head layers, batch, sequence length): the full run's, and --quick's (4 MiB of weights).
SIZES = {"full": (512, 6, 40, 8, 128), "quick": (256, 1, 4, 1, 8)}


class Pipeline:
    """A model held as an attribute, as whisper-plus's and whisperX's pipelines hold theirs."""

    def __init__(self, device: torch.device, cycle: bool, size: str = "full") -> None:
        width, layers, heads, self.batch, self.length = SIZES[size]
        layer = torch.nn.TransformerEncoderLayer(d_model=width, nhead=8, dim_feedforward=4 * width, batch_first=True)
        self.model: Any = torch.nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False).to(device)
        self.head: Any = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(heads)]).to(device)
        self.myself = self if cycle else None  # a reference cycle: only gc.collect() frees it

    def __call__(self, device: torch.device) -> None:
        with torch.inference_mode():
            for _ in range(3):
                self.head(self.model(torch.randn(self.batch, self.length, self.head[0].in_features, device=device)))


def _child(sequence: str, scenario: str, device_name: str, size: str = "full") -> dict[str, Any]:
    device = vramguard.resolve_device(device_name)

    def empty_cache() -> None:
        vramguard.empty_cache(device)

    def release_memory(*objects: Any) -> Any:
        from accelerate.utils import release_memory as accelerate_release

        return accelerate_release(*objects)

    def cycle_once(code: str) -> None:
        pipe = Pipeline(device, scenario == "cycle", size)
        pipe(device)
        namespace: dict[str, Any] = {
            "pipe": pipe,
            "gc": gc,
            "empty_cache": empty_cache,
            "release_memory": release_memory,
            "vramguard": vramguard,
            "DEVICE": device,
        }
        del pipe
        exec(code, namespace)  # the user's sequence, verbatim
        namespace.clear()

    cycle_once("del pipe; gc.collect(); empty_cache()")  # warm-up: lazy one-time caches
    before = vramguard.snapshot(device)
    cycle_once(SEQUENCES[sequence])
    after = vramguard.snapshot(device)
    gc.collect()  # what a later collection would find: the cost of not collecting in time
    later = vramguard.snapshot(device)
    return {
        "allocated_delta_bytes": _delta(after.allocated_bytes, before.allocated_bytes),
        "reserved_delta_bytes": _delta(after.reserved_bytes, before.reserved_bytes),
        "cached_after_bytes": after.cached_bytes,
        "process_used_delta_bytes": _delta(after.process_used_bytes, before.process_used_bytes),
        "allocated_until_gc_bytes": _delta(after.allocated_bytes, later.allocated_bytes),
    }


def _delta(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a - b


def _run_child(sequence: str, scenario: str, device: str, quick: bool = False) -> dict[str, Any]:
    """One child's figures; ``sequence`` "*" (with ``quick``): every sequence's, by name, in one child."""
    result = subprocess.run(
        [sys.executable, __file__, "--child", sequence, scenario, "--device", device, *(["--quick"] if quick else [])],
        capture_output=True, text=True, check=True,
    )
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--jobs", type=int, default=1, help="child processes at a time (memory is per process)")
    parser.add_argument("--quick", action="store_true", help="a small pipeline, one child per scenario: seconds")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        size = "quick" if args.quick else "full"
        if args.quick:
            torch.set_num_threads(1)  # two children side by side; a tiny model gains nothing from more
        wanted = list(SEQUENCES) if args.child[0] == "*" else [args.child[0]]
        rows = {seq: _child(seq, args.child[1], args.device, size) for seq in wanted}
        print(json.dumps(rows if args.child[0] == "*" else rows[args.child[0]]))
        return 0
    device = vramguard.resolve_device(args.device)
    label = torch.cuda.get_device_name(device) if device.type == "cuda" else "host (CPU heap: malloc + resident memory)"
    print(f"device: {device} — {label}; torch {torch.__version__}")
    print("figures: change against the level before loading; 'still allocated' is live memory, 'held' is reserved")
    fmt: Callable[[int | None], str] = lambda n: vramguard.format_size(n, signed=True)  # noqa: E731
    results: dict[str, dict[str, dict[str, Any]]] = {}
    quick_rows: dict[str, dict[str, dict[str, Any]]] = {}
    if args.quick:  # one child per scenario, side by side
        with concurrent.futures.ThreadPoolExecutor(len(SCENARIOS)) as pool:
            futures = {scenario: pool.submit(_run_child, "*", scenario, str(device), True) for scenario in SCENARIOS}
            quick_rows = {scenario: future.result() for scenario, future in futures.items()}
    for scenario in SCENARIOS:
        print(f"\nscenario: {scenario}")
        header = f"{'still allocated':>16} {'held (reserved)':>16} {'cached after':>13} {'freed by a later gc':>20}"
        print(f"  {'sequence':<44} {header}")
        if args.quick:
            rows = quick_rows[scenario]
        else:
            with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
                futures = {seq: pool.submit(_run_child, seq, scenario, str(device)) for seq in SEQUENCES}
                rows = {seq: future.result() for seq, future in futures.items()}
        results[scenario] = rows
        for seq, row in rows.items():
            print(
                f"  {seq:<44} {fmt(row['allocated_delta_bytes']):>16} {fmt(row['reserved_delta_bytes']):>16} "
                f"{vramguard.format_size(row['cached_after_bytes']):>13} {fmt(row['allocated_until_gc_bytes']):>20}"
            )
        ours = rows[OURS]["reserved_delta_bytes"] or 0
        for seq, row in rows.items():
            held = row["reserved_delta_bytes"] or 0
            if seq.startswith("vramguard"):
                continue
            extra = held - ours
            print(f"  -> {seq}: holds {vramguard.format_size(extra, signed=True)} more than vramguard")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"device": str(device), "label": label, "results": results}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
