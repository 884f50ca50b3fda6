"""Leak detectors side by side: twelve planted leaks, on a small heap and on a heap of 1 M objects.

    .venv/bin/python benchmarks/leak_detection.py [--device cpu|cuda] [--heap-objects 1000000] [--json out.json]
        [--markdown out.md] [--quick]

Each heap size runs in a fresh child process. For every (leak, detector) pair the detector starts,
the leak is planted (a tensor of known storage size left reachable from a holder a user would
recognise, or caught in an unreachable cycle), the detector looks, and the leak is removed again.
Detectors: vramguard's census (a ``gpu_session``), pytorch_memlab's ``MemReporter`` (a tensor
inventory before and after), a ``gc.get_objects()`` tensor diff, a ``tracemalloc`` snapshot
diff, objgraph's ``find_backref_chain`` (from the tensors the gc diff found to a module), and
torch's ``warn_tensor_cycles`` (CUDA tensors in collected cycles only; n/a elsewhere). A detector
whose package is not installed (objgraph, pytorch_memlab) is skipped, and its cells say so.

Scores per cell: found the bytes (exact: within 1% of the planted storage bytes; approximate:
within a factor of two; no), named the holder (the holder's own name appears in what the detector
says), and the detector's own time (its start and its look, not the planting). On the host the
times are CPU figures on a shared machine: compare them as ratios within one run, not across
runs. With ``--device cuda`` every planted tensor is a CUDA tensor, and the JSON names the GPU and
the torch and CUDA versions (``environment``, read in the child that measured).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import gc
import importlib.util
import io
import json
import logging
import subprocess
import sys
import threading
import time
import tracemalloc
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from bench_env import environment, label, resolve

import vramguard

N = 2**18  # float32 elements per planted tensor: 1 MiB
HOLDERS: dict[str, Any] = {}  # module globals the planted leaks hang from, cleared after each


@dataclass
class Planted:
    """A planted leak: its storage bytes, the name a good report would show, and how to undo it."""

    nbytes: int
    holder: str
    undo: Callable[[], None]
    cycle: bool = False


def _t(device: torch.device, n: int = N) -> torch.Tensor:
    return torch.rand(n, device=device)


def _global(name: str, value: Any) -> Callable[[], None]:
    module = sys.modules[__name__]
    setattr(module, name, value)

    def undo() -> None:
        delattr(module, name)

    return undo


def plant_global(device: torch.device) -> Planted:
    return Planted(4 * N, "LEAK_CACHE", _global("LEAK_CACHE", {"last": [_t(device)]}))


def plant_attribute(device: torch.device) -> Planted:
    class Encoder:
        pass

    class App:
        pass

    app = App()
    app.encoder = Encoder()  # type: ignore[attr-defined]
    app.encoder.cache = _t(device)  # type: ignore[attr-defined]
    return Planted(4 * N, "LEAK_APP", _global("LEAK_APP", app))


def plant_closure(device: torch.device) -> Planted:
    def make() -> Callable[[], torch.Tensor]:
        kept = _t(device)
        return lambda: kept

    return Planted(4 * N, "LEAK_HANDLERS", _global("LEAK_HANDLERS", [make()]))


def plant_hook(device: torch.device) -> Planted:
    model = torch.nn.Linear(4, 4).to(device)  # older than the leak only in name: created here
    activation = _t(device)
    model.register_forward_hook(lambda module, inputs, output: activation)
    nbytes = 4 * N + sum(p.numel() * 4 for p in model.parameters())
    return Planted(nbytes, "LEAK_MODEL", _global("LEAK_MODEL", model))


def plant_traceback(device: torch.device) -> Planted:
    def forward() -> None:
        hidden = _t(device)
        raise RuntimeError(f"failed after {hidden.shape}")

    try:
        forward()
    except RuntimeError as error:
        return Planted(4 * N, "LEAK_ERROR", _global("LEAK_ERROR", error))
    raise AssertionError("unreachable")


def plant_autograd(device: torch.device) -> Planted:
    x = _t(device).requires_grad_()
    out = (x.exp() * 2).sum()  # exp saves its result for backward
    del x  # only the graph holds x's and exp's storages now
    return Planted(2 * 4 * N, "LEAK_OUT", _global("LEAK_OUT", out))


def plant_cycle(device: torch.device) -> Planted:
    class Node:
        pass

    node = Node()
    node.me = node  # type: ignore[attr-defined]
    node.tensor = _t(device)  # type: ignore[attr-defined]
    del node  # unreachable: only a collection frees it

    def undo() -> None:
        gc.collect()

    return Planted(4 * N, "cycle", undo, cycle=True)


def plant_lru_cache(device: torch.device) -> Planted:
    @functools.lru_cache(maxsize=8)
    def leak_features(n: int) -> torch.Tensor:
        return _t(device, n)

    leak_features(N)
    return Planted(4 * N, "LEAK_FEATURES", _global("LEAK_FEATURES", leak_features))


def plant_thread_local(device: torch.device) -> Planted:
    local = threading.local()
    local.buffer = _t(device)
    return Planted(4 * N, "LEAK_TLS", _global("LEAK_TLS", local))


def plant_optimizer(device: torch.device) -> Planted:
    weight = torch.nn.Parameter(torch.zeros(N, device=device))
    optimizer = torch.optim.Adam([weight])
    weight.grad = torch.ones_like(weight)
    optimizer.step()
    weight.grad = None
    # The parameter itself, exp_avg and exp_avg_sq (the step counter is a scalar on the host).
    nbytes = 3 * 4 * N
    return Planted(nbytes, "LEAK_OPT", _global("LEAK_OPT", optimizer))


def plant_gradient(device: torch.device) -> Planted:
    model = torch.nn.Linear(512, 512, bias=False).to(device)
    model(torch.ones(1, 512, device=device)).sum().backward()
    return Planted(2 * 4 * 512 * 512, "LEAK_NET", _global("LEAK_NET", model))  # weight and its .grad


def plant_sparse(device: torch.device) -> Planted:
    nnz = N // 4
    indices = torch.randint(0, 4096, (2, nnz), device=device)
    values = torch.rand(nnz, device=device)
    sparse = torch.sparse_coo_tensor(indices, values, (4096, 4096))
    del indices, values
    nbytes = nnz * 2 * 8 + nnz * 4
    return Planted(nbytes, "LEAK_SPARSE", _global("LEAK_SPARSE", sparse))


LEAKS: dict[str, Callable[[torch.device], Planted]] = {
    "global container": plant_global,
    "attribute chain": plant_attribute,
    "closure": plant_closure,
    "forward hook": plant_hook,
    "traceback": plant_traceback,
    "autograd graph": plant_autograd,
    "reference cycle": plant_cycle,
    "lru_cache": plant_lru_cache,
    "thread-local": plant_thread_local,
    "optimizer state": plant_optimizer,
    "gradient": plant_gradient,
    "sparse tensor": plant_sparse,
}


# --- Detectors: start(), then look() -> (bytes found or None, what they said) ----------------


def _storage_bytes(tensors: list[torch.Tensor]) -> int:
    seen: dict[int, int] = {}
    for t in tensors:
        parts = [t._indices(), t._values()] if t.is_sparse else [t]
        for part in parts:
            storage = part.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def _tensors() -> list[torch.Tensor]:
    found = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for obj in gc.get_objects():
            try:
                if isinstance(obj, torch.Tensor):
                    found.append(obj)
            except ReferenceError:
                continue
    return found


class Census:
    name = "vramguard census"

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def run(self, plant: Callable[[], Planted]) -> tuple[Planted, int | None, str, float]:
        began = time.perf_counter()
        session = vramguard.gpu_session("leak", device=self.device, leaks="ignore")
        session.__enter__()
        entered = time.perf_counter()
        planted = plant()
        planted_at = time.perf_counter()
        session.__exit__(None, None, None)
        done = time.perf_counter()
        report = session.report
        assert report is not None
        said = "\n".join([str(leak) for leak in report.leaks] + list(report.cycles))
        return planted, report.leaked_bytes, said, (entered - began) + (done - planted_at)


class GcDiff:
    name = "gc.get_objects() diff"

    def run(self, plant: Callable[[], Planted]) -> tuple[Planted, int | None, str, float]:
        began = time.perf_counter()
        before = {id(t) for t in _tensors()}
        entered = time.perf_counter()
        planted = plant()
        planted_at = time.perf_counter()
        new = [t for t in _tensors() if id(t) not in before]
        found = _storage_bytes(new)
        said = ", ".join(f"{t.dtype} {tuple(t.shape)}" for t in new)
        del new
        done = time.perf_counter()
        return planted, found, said, (entered - began) + (done - planted_at)


class Objgraph:
    name = "objgraph find_backref_chain"
    requires = "objgraph"

    def run(self, plant: Callable[[], Planted]) -> tuple[Planted, int | None, str, float]:
        import objgraph

        began = time.perf_counter()
        before = {id(t) for t in _tensors()}
        entered = time.perf_counter()
        planted = plant()
        planted_at = time.perf_counter()
        new = [t for t in _tensors() if id(t) not in before]
        found = _storage_bytes(new)
        chains = []
        for tensor in new[:1]:  # one chain costs a heap walk per step (gc.get_referrers)
            chain = objgraph.find_backref_chain(tensor, objgraph.is_proper_module, max_depth=12)
            chains.append(" -> ".join(_short(obj) for obj in chain))
            del chain
        del new
        done = time.perf_counter()
        return planted, found, "\n".join(chains), (entered - began) + (done - planted_at)


def _short(obj: Any) -> str:
    if isinstance(obj, dict):
        return "{" + ", ".join(str(k) for k in list(obj)[:200] if isinstance(k, str) and k.startswith("LEAK_")) + "}"
    return type(obj).__name__


class MemReporterDiff:
    name = "pytorch_memlab MemReporter"
    requires = "pytorch_memlab"

    def _inventory(self) -> tuple[int, list[str]]:
        from pytorch_memlab import MemReporter

        reporter = MemReporter()
        reporter.collect_tensor()
        reporter.get_stats()
        total, names = 0, []
        for stats in reporter.device_tensor_stat.values():
            for name, _shape, _numel, size in stats:
                total += size
                names.append(name)
        return total, names

    def run(self, plant: Callable[[], Planted]) -> tuple[Planted, int | None, str, float]:
        began = time.perf_counter()
        before, _ = self._inventory()
        entered = time.perf_counter()
        planted = plant()
        planted_at = time.perf_counter()
        after, names = self._inventory()
        done = time.perf_counter()
        return planted, after - before, " ".join(names), (entered - began) + (done - planted_at)


class Tracemalloc:
    name = "tracemalloc diff"

    def run(self, plant: Callable[[], Planted]) -> tuple[Planted, int | None, str, float]:
        began = time.perf_counter()
        tracemalloc.start(8)
        before = tracemalloc.take_snapshot()
        entered = time.perf_counter()
        planted = plant()
        planted_at = time.perf_counter()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        stats = after.compare_to(before, "traceback")
        found = sum(max(0, s.size_diff) for s in stats)
        said = "\n".join(str(s.traceback[0]) for s in stats[:3])
        done = time.perf_counter()
        return planted, found, said, (entered - began) + (done - planted_at)


class TensorCycles:
    name = "torch warn_tensor_cycles"

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def run(self, plant: Callable[[], Planted]) -> tuple[Planted, int | None, str, float] | None:
        if self.device.type != "cuda":
            return None  # it watches collected cycles for CUDA tensors only
        from torch.utils.viz._cycles import warn_tensor_cycles

        messages: list[str] = []
        handler = logging.Handler()
        handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
        logger = logging.getLogger("torch.utils.viz._cycles")
        logger.addHandler(handler)
        began = time.perf_counter()
        stop = warn_tensor_cycles()
        entered = time.perf_counter()
        planted = plant()
        planted_at = time.perf_counter()
        gc.collect()
        stop()
        done = time.perf_counter()
        # observe_tensor_cycles turned on the allocator's history (torch/utils/viz/_cycles.py,
        # observe_tensor_cycles: _record_memory_history(max_entries=100000)) and its stop leaves
        # it on: turned off here (enabled=None, torch/cuda/memory.py:943-947), or every later
        # detector in this child would run with each allocation's stack being recorded.
        torch.cuda.memory._record_memory_history(enabled=None)
        logger.removeHandler(handler)
        found = planted.nbytes if messages else 0  # it says a cycle held a CUDA tensor, not how much
        return planted, found if planted.cycle else None, "\n".join(messages), (entered - began) + (done - planted_at)


def _clear_leaks() -> None:
    """Remove whatever a planted leak left on this module (after a detector failed mid-way)."""
    module = sys.modules[__name__]
    for name in [n for n in vars(module) if n.startswith("LEAK_")]:
        delattr(module, name)
    gc.collect()


def _score(found: int | None, planted: int) -> str:
    if found is None:
        return "no"
    if abs(found - planted) <= 0.01 * planted:
        return "exact"
    if planted / 2 <= found <= planted * 2:
        return "approximate"
    return "no"


def missing(detector: object) -> str | None:
    """Why the detector cannot run here (its package is not installed), or None."""
    package = getattr(detector, "requires", None)
    if package is None or importlib.util.find_spec(package) is not None:
        return None
    return f"{package} is not installed"


def child(device: torch.device, heap_objects: int, leaks: list[str]) -> dict[str, Any]:
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        for package in ("objgraph", "pytorch_memlab"):  # pytorch_memlab prints a line when there is no GPU
            if importlib.util.find_spec(package) is not None:
                importlib.import_module(package)
    heap = [[i] for i in range(heap_objects)]  # lists stay tracked by the collector (tuples of ints do not)
    tracked = len(gc.get_objects())
    detectors = [Census(device), MemReporterDiff(), GcDiff(), Tracemalloc(), Objgraph(), TensorCycles(device)]
    skipped = {detector.name: reason for detector in detectors if (reason := missing(detector)) is not None}
    # A warm-up of every detector on one leak: first-use costs (imports, caches) count for none.
    for detector in detectors:
        if detector.name in skipped:
            continue
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                result = detector.run(lambda: plant_global(device))
        except Exception:
            result = None
        if result is not None:
            result[0].undo()
        _clear_leaks()
    gc.collect()
    cells: dict[str, dict[str, Any]] = {}
    for leak in leaks:
        cells[leak] = {}
        for detector in detectors:
            if detector.name in skipped:
                cells[leak][detector.name] = {"skipped": skipped[detector.name]}
                continue
            gc.collect()
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    result = detector.run(lambda leak=leak: LEAKS[leak](device))  # type: ignore[misc]
            except Exception as error:
                cells[leak][detector.name] = {"error": f"{type(error).__name__}: {error}"}
                _clear_leaks()
                continue
            if result is None:
                cells[leak][detector.name] = None
                gc.collect()
                continue
            planted, found, said, took = result
            named = planted.holder in said if not planted.cycle else ("cycle" in said.lower())
            cells[leak][detector.name] = {
                "planted_bytes": planted.nbytes,
                "found_bytes": found,
                "found": _score(found, planted.nbytes),
                "holder_named": named,
                "time_s": took,
            }
            planted.undo()
            del planted, result
    del heap
    return {"gc_objects": tracked, "cells": cells, "environment": environment(device)}


def _any_skipped(data: dict[str, Any]) -> bool:
    return any(
        isinstance(cell, dict) and "skipped" in cell
        for run in data["heaps"].values()
        for cells in run["cells"].values()
        for cell in cells.values()
    )


def markdown(data: dict[str, Any]) -> str:
    lines = [
        f"Device: {data['device_label']}. Date: {data['date']}. Command: `{data['command']}`.",
        "",
        "Each cell: found the bytes (exact / approximate / no), named the holder (yes / no), the "
        "detector's time (ms). n/a: the detector does not apply."
        + (" Not installed: the detector's package is missing where this ran." if _any_skipped(data) else ""),
    ]
    for heap, run in data["heaps"].items():
        detectors = [d for d in next(iter(run["cells"].values()))]
        lines += ["", f"**{heap}** ({run['gc_objects']:,} gc-tracked objects):", ""]
        lines += ["| leak | " + " | ".join(detectors) + " |", "|---|" + "---|" * len(detectors)]
        for leak, cells in run["cells"].items():
            row = []
            for name in detectors:
                cell = cells[name]
                if cell is None:
                    row.append("n/a")
                elif "skipped" in cell:
                    row.append("not installed")
                elif "error" in cell:
                    row.append("failed")
                else:
                    named = "holder" if cell["holder_named"] else "no holder"
                    row.append(f"{cell['found']}, {named}, {cell['time_s'] * 1000:.0f}")
            lines.append(f"| {leak} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", default="auto", help='"auto", "cpu" or "cuda" (default: auto)')
    parser.add_argument("--heap-objects", type=int, default=1_000_000, help="the large heap (default: 1 M)")
    parser.add_argument("--quick", action="store_true", help="three leaks on the small heap, one child: seconds")
    parser.add_argument("--json", help="write every figure to this file")
    parser.add_argument("--markdown", help="write the tables to this file")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--leaks", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    device = resolve(args.device, "leak_detection.py")
    if args.child is not None:
        print(json.dumps(child(device, args.child, args.leaks.split(","))))
        return 0
    leaks = ["global container", "closure", "reference cycle"] if args.quick else list(LEAKS)
    heaps = {"small heap": 0, f"heap of {args.heap_objects:,} objects": args.heap_objects}
    if args.quick:  # the large heap runs the same code with a bigger --child count: CI keeps to one child
        heaps = {"small heap": 0}
    results = {}
    for heap, objects in heaps.items():
        command = [sys.executable, __file__, "--child", str(objects), "--leaks", ",".join(leaks)]
        command += ["--device", str(device)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"the {heap} run failed:\n{done.stderr[-4000:]}")
        results[heap] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{heap}: done", flush=True)
    # Named by the child that measured: this process never touches CUDA.
    env = results["small heap"].pop("environment")
    for run in results.values():
        run.pop("environment", None)
    device_label = label(env) if device.type == "cuda" else f"CPU, torch {torch.__version__}; times are CPU figures"
    shown = f"--device {device.type} " + ("--quick" if args.quick else f"--heap-objects {args.heap_objects}")
    data = {
        "device": str(device),
        "device_label": device_label,
        "environment": env,
        "date": datetime.date.today().isoformat(),
        "command": f".venv/bin/python benchmarks/leak_detection.py {shown}",
        "heaps": results,
        "planted": {leak: None for leak in leaks},
    }
    table = markdown(data)
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=2, default=asdict))
    if args.markdown:
        Path(args.markdown).write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
