"""What isolation costs: ``vramguard.isolated`` against the same call in process, in one run.

    .venv/bin/python benchmarks/isolation.py [--device cpu|cuda] [--repeats 3] [--sizes 0,1,64] [--json out.json]

For each result size (MiB of float32 built by the call) the call runs in process (inside the
same session options the child uses) and isolated; the isolated run is split into start (spawn,
imports, unpickling the arguments: until the call begins in the child), run (the call and its
session's release in the child), transfer (pickling, sending and unpickling the result) and exit
(the child's interpreter teardown, waited for: its memory is back only then).
Medians of ``--repeats``. What isolation buys on CUDA (the context, 300-500 MiB per process)
is not measured on the host; figures from a CPU run are CPU figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass

import torch

import vramguard

MiB = 1024 * 1024


def build(mib: float, device: str) -> torch.Tensor:
    """The isolated call: a result of ``mib`` MiB (float32) built on ``device``, returned on the host."""
    return torch.ones(int(mib * MiB) // 4, device=device).cpu()


@dataclass(frozen=True)
class Row:
    result_mib: float
    in_process_s: float
    isolated_s: float
    start_s: float
    run_s: float
    transfer_s: float
    exit_s: float

    @property
    def ratio(self) -> float:
        return self.isolated_s / self.in_process_s if self.in_process_s > 0 else float("inf")


def measure(mib: float, device: str, repeats: int) -> Row:
    in_process: list[float] = []
    runs: list[vramguard.Isolated[torch.Tensor]] = []
    for _ in range(repeats):
        began = time.perf_counter()
        with vramguard.gpu_session("in process", device=device, leaks="ignore", census=False) as session:
            session.keep(build(mib, device))
        in_process.append(time.perf_counter() - began)
        runs.append(vramguard.isolated(build, mib, device, device=device))
    return Row(
        result_mib=mib,
        in_process_s=statistics.median(in_process),
        isolated_s=statistics.median(r.total_s for r in runs),
        start_s=statistics.median(r.start_s for r in runs),
        run_s=statistics.median(r.run_s for r in runs),
        transfer_s=statistics.median(r.transfer_s for r in runs),
        exit_s=statistics.median(r.exit_s for r in runs),
    )


def table(rows: list[Row], device: str) -> list[str]:
    lines = [
        f"isolation cost on {device} (medians; ratio = isolated / in process)",
        f"{'result':>10} {'in process':>11} {'isolated':>10} {'start':>9} {'run':>9} {'transfer':>9} {'exit':>9}"
        f" {'ratio':>8}",
    ]
    for r in rows:
        lines.append(
            f"{r.result_mib:>6g} MiB {r.in_process_s * 1000:>8.1f} ms {r.isolated_s * 1000:>7.0f} ms "
            f"{r.start_s * 1000:>6.0f} ms {r.run_s * 1000:>6.1f} ms {r.transfer_s * 1000:>6.1f} ms "
            f"{r.exit_s * 1000:>6.0f} ms {r.ratio:>7.0f}x"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="0,1,64", help="result sizes in MiB, comma-separated")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args(argv)
    device = str(vramguard.resolve_device(args.device))
    sizes = [float(s) for s in args.sizes.split(",")]
    rows = [measure(mib, device, args.repeats) for mib in sizes]
    for line in table(rows, device):
        print(line)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"device": device, "rows": [{**asdict(r), "ratio": r.ratio} for r in rows]}, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
