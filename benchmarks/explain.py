"""What ``vramguard.explain("cpu")`` costs beside a bare ``gc.get_objects()``, at a heap size.

    .venv/bin/python benchmarks/explain.py [--objects 3000000] [--repeats 5] [--holder library]
    .venv/bin/python benchmarks/explain.py --quick     # --objects 100000 --repeats 3: CI

The process holds a small model, an AdamW optimizer after one step and a few planted tensors
(a list of them, one alone), all in one list, plus ``--objects`` extra live gc-tracked objects
(one-element lists). That list is a global of the program (``--holder program``, the default:
the ledger's walk down from the program's globals names every owner, no heap scan) or of a
library module (``--holder library``: ``logging``'s namespace, out of the walk's reach, so the
holder search climbs to it with heap scans). After one untimed warm-up, each run times a bare
``gc.get_objects()`` (the list dropped) and one ``explain("cpu")``, alternating; the medians are
printed side by side and as a ratio (explain / bare pass), with the per-run spread. CPU time of
the process (``time.process_time()``), so a loaded machine's waiting does not count. The goal
(issue 26): explain costs at most 3 x the bare pass at 3 M objects.
"""

from __future__ import annotations

import argparse
import gc
import logging
import statistics
import time
from typing import Any

import torch

import vramguard

PLANTED: list[Any] = []


def _time(fn: Any) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def _bare() -> None:
    found = gc.get_objects()
    found.clear()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=3_000_000, help="extra live gc-tracked objects")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="--objects 100000 --repeats 3")
    parser.add_argument(
        "--holder",
        choices=("program", "library"),
        default="program",
        help="whose global holds the planted objects (default: program)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.objects, args.repeats = 100_000, 3
    torch.set_num_threads(1)
    model = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 16))
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(8, 256)).sum().backward()
    optimizer.step()
    planted = PLANTED if args.holder == "program" else []
    planted[:] = [model, optimizer, [torch.ones(1000) for _ in range(10)], torch.zeros(10_000)]
    logging._vramguard_benchmark = planted if args.holder == "library" else None  # type: ignore[attr-defined]
    del model, optimizer
    heap = [[i] for i in range(args.objects)]
    vramguard.explain("cpu")  # warm-up: the first call imports and caches
    bare: list[float] = []
    explain: list[float] = []
    ledger = None
    for _ in range(args.repeats):
        bare.append(_time(_bare))
        start = time.process_time()
        ledger = vramguard.explain("cpu")
        explain.append(time.process_time() - start)
    assert ledger is not None
    ratios = [e / b for e, b in zip(explain, bare, strict=True)]
    print(
        f"heap: {len(gc.get_objects())} gc-tracked objects ({args.objects} extra), {args.repeats} runs, "
        f"the owners held by a global of the {args.holder}"
    )
    print(
        f"explain {1000 * statistics.median(explain):.0f} ms beside a bare gc.get_objects() "
        f"{1000 * statistics.median(bare):.0f} ms (CPU time, medians): "
        f"{statistics.median(explain) / statistics.median(bare):.2f}x (per run {min(ratios):.2f}-{max(ratios):.2f}x)"
    )
    print(
        f"ledger: {len(ledger.lines)} lines, residual {100 * (ledger.residual_fraction or 0):.2f} % of the resident set"
    )
    del heap
    planted.clear()
    logging._vramguard_benchmark = None  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
