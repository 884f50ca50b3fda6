"""``vramguard run`` under torchrun: one report file per rank, each rank on its own GPU.

torchrun sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` in every process it starts; with them,
``--json out.json`` becomes ``out-rank{N}.json`` (``report-rank{N}.json`` without ``--json``),
``--plot`` likewise, and ``--device auto`` becomes ``cuda:LOCAL_RANK`` where CUDA is present.
``vramguard report report-rank*.json`` merges the files into one table and one plot.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping

DEFAULT_RANK_REPORT = "report.json"


def torchrun_rank(environ: Mapping[str, str] | None = None) -> tuple[int, int] | None:
    """(rank, local rank) when started by torchrun (or any launcher setting its variables), else None."""
    env = os.environ if environ is None else environ
    try:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
    except (KeyError, ValueError):
        return None
    local = env.get("LOCAL_RANK", str(rank))
    return (rank, int(local)) if world >= 1 and local.isdigit() else None


def rank_path(path: str, rank: int) -> str:
    """``out.json`` → ``out-rank3.json``: the file of one rank, beside the others."""
    root, ext = os.path.splitext(path)
    return f"{root}-rank{rank}{ext}"


def per_rank_outputs(args: argparse.Namespace) -> int | None:
    """Under torchrun, point ``args.json`` and ``args.plot`` at this rank's files and
    ``--device auto`` at this rank's GPU; returns the rank (None outside torchrun)."""
    found = torchrun_rank()
    if found is None:
        return None
    rank, local = found
    args.json = rank_path(args.json or DEFAULT_RANK_REPORT, rank)
    if args.plot:
        args.plot = rank_path(args.plot, rank)
    if str(args.device).strip().lower() == "auto":
        from vramguard.probes import cuda_device_count

        # NVML's count: is_available() would call cuInit in the launcher's child before the script runs.
        if local < cuda_device_count():
            args.device = f"cuda:{local}"
    return rank
