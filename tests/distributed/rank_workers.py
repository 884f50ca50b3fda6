"""Rank programs for the distributed tests, run in subprocesses (never imported by pytest's
collection as tests): ``python rank_workers.py SCENARIO WORLD OUTDIR`` starts WORLD gloo ranks with
torch.multiprocessing; under torchrun, ``python rank_workers.py --torchrun SCENARIO OUTDIR`` is one rank.

Each rank writes ``OUTDIR/rank{N}.json``: what it saw (the cluster report, or the error).
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import vramguard
from vramguard.core._errors import ClusterError

HELD: list[torch.Tensor] = []


def _block(scenario: str, rank: int) -> dict[str, Any]:
    """Run the scenario's session on this rank; what it saw, as JSON-safe data."""
    if scenario == "absent" and rank == 1:
        return {"absent": True}  # never enters the session: the others must not wait for ever
    group = None
    if scenario == "group":
        group = dist.new_group([0, 1])  # every rank creates it, as torch requires
        if rank not in (0, 1):
            return {"outside": True}
    timeout = 3.0 if scenario == "absent" else 60.0
    device = f"cuda:{rank}" if scenario.startswith("nccl") else "cpu"
    if scenario == "gatherfail":
        _break_the_gather()
    if scenario.startswith("nccl"):
        _watch_the_gather_device()
    session = vramguard.gpu_session(
        f"step-{scenario}",
        device=device,
        leaks="ignore",
        distributed=group is None,
        group=group,
        gather_timeout=timeout,
    )
    seen: dict[str, Any] = {}
    try:
        with session:
            # Rank-dependent sizes: rank r holds (r + 1) MiB at its peak.
            work = torch.ones((rank + 1) * 256 * 1024, device=device)
            if rank == 1 or scenario.startswith("nccl"):
                HELD.append(torch.zeros(64 * 1024, device=device))  # 256 KiB kept alive by a global: a leak
            if scenario in ("raise", "gatherfail") and rank == 1:
                raise RuntimeError("rank 1 failed inside its block")
            del work
    except RuntimeError as error:
        seen["raised"] = str(error)
        seen["raised_type"] = type(error).__name__
        seen["notes"] = list(getattr(error, "__notes__", []))
    except ClusterError as error:
        seen["cluster_error"] = {"missing_ranks": list(error.missing_ranks), "message": str(error)}
    if session.cluster_report is not None:
        seen["cluster"] = session.cluster_report.to_dict()
    if GATHER_DEVICES:
        seen["gather_devices"] = GATHER_DEVICES
    return seen


GATHER_DEVICES: list[int] = []


def _watch_the_gather_device() -> None:
    """Record the current CUDA device while all_gather_object runs: under NCCL torch moves the
    payload to it (distributed_c10d.py, all_gather_object)."""
    real = dist.all_gather_object

    def watched(*args: Any, **kwargs: Any) -> None:
        GATHER_DEVICES.append(torch.cuda.current_device())
        real(*args, **kwargs)

    dist.all_gather_object = watched


def _break_the_gather() -> None:
    """The collective fails after every rank checked in through the store, as a backend failure
    does (NCCL raises DistBackendError, a RuntimeError)."""

    def broken(*args: Any, **kwargs: Any) -> None:
        raise dist.DistBackendError("the collective failed (injected by the test)")

    dist.all_gather_object = broken


def _write(outdir: str, rank: int, seen: dict[str, Any]) -> None:
    Path(outdir, f"rank{rank}.json").write_text(json.dumps(seen), encoding="utf-8")


def _spawned(rank: int, scenario: str, world: int, port: int, outdir: str) -> None:
    backend = "gloo"
    if scenario.startswith("nccl"):  # one rank per GPU; on a single GPU, one rank
        backend = "nccl"
    if scenario == "nccl":  # "nccl-noset": the ranks never select a device, as the old docs had it
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        _write(outdir, rank, _block(scenario, rank))
    finally:
        if scenario != "absent":
            dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(argv: list[str]) -> int:
    if argv[0] == "--torchrun":
        scenario, outdir = argv[1], argv[2]
        dist.init_process_group("gloo")
        rank = dist.get_rank()
        try:
            _write(outdir, rank, _block(scenario, rank))
        finally:
            if scenario != "absent":
                dist.destroy_process_group()
        return 0
    scenario, world, outdir = argv[0], int(argv[1]), argv[2]
    mp.spawn(_spawned, args=(scenario, world, _free_port(), outdir), nprocs=world, join=True)  # type: ignore[attr-defined,no-untyped-call]
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
