"""``gpu_session(distributed=True)`` across real gloo ranks, started by torch.multiprocessing and by
torchrun. Each run is a subprocess with a hard timeout, so a gather that deadlocks fails the test
instead of hanging CI; each rank writes what it saw (see rank_workers.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
WORKERS = HERE / "rank_workers.py"
TORCHRUN = Path(sys.executable).with_name("torchrun")
HARD_TIMEOUT_S = 240  # far above a run's time here (20-40 s on a loaded 2-core machine)
KIB = 1024

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent.parent), env.get("PYTHONPATH")]))
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _ranks(outdir: Path, world: int) -> list[dict[str, Any]]:
    return [json.loads((outdir / f"rank{r}.json").read_text()) for r in range(world)]


def _spawn(tmp_path_factory: pytest.TempPathFactory, scenario: str, world: int) -> list[dict[str, Any]]:
    outdir = tmp_path_factory.mktemp(scenario)
    command = [sys.executable, str(WORKERS), scenario, str(world), str(outdir)]
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=HARD_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-4000:]
    return _ranks(outdir, world)


def _torchrun(tmp_path: Path, command: list[str], world: int) -> subprocess.CompletedProcess[str]:
    launcher = [str(TORCHRUN), "--standalone", f"--nproc-per-node={world}", "--max-restarts=0"]
    return subprocess.run(
        [*launcher, *command], env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=HARD_TIMEOUT_S
    )


@pytest.fixture(scope="module")
def ok_ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return _spawn(tmp_path_factory, "ok", 2)


def test_every_rank_gets_every_rank_s_report(ok_ranks: list[dict[str, Any]]) -> None:
    clusters = [seen["cluster"] for seen in ok_ranks]
    assert clusters[0] == clusters[1]  # the same ClusterReport on every rank
    cluster = clusters[0]
    assert cluster["ranks"] == [0, 1] and cluster["backend"] == "gloo"
    assert cluster["failed_ranks"] == []
    # Rank 1 keeps a 256 KiB tensor in a global: its leak, named with its rank; rank 0 leaks nothing.
    leaked = [report["leaked_bytes"] for report in cluster["reports"]]
    assert leaked == [0, 256 * KIB]
    assert cluster["total_leaked_bytes"] == 256 * KIB
    holders = cluster["reports"][1]["leaks"][0]["holders"]
    assert any("HELD" in h for h in holders)
    # Rank r held (r + 1) MiB at its peak: rank 1 peaked above rank 0.
    increases = [report["peak_increase_bytes"] for report in cluster["reports"]]
    assert increases[1] > increases[0] >= 1024 * KIB
    assert cluster["imbalance"] >= 1.0


def test_a_rank_that_raised_is_named_and_the_others_are_not_blocked(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    ranks = _spawn(tmp_path_factory, "raise", 3)
    for seen in (ranks[0], ranks[2]):
        assert seen["cluster"]["failed_ranks"] == [1]
        assert seen["cluster"]["reports"][1]["raised"] == "RuntimeError"
    failed = ranks[1]
    assert failed["raised"] == "rank 1 failed inside its block"  # its own exception, not replaced
    assert any("failed ranks: 1" in note for note in failed["notes"])


def test_a_rank_that_never_arrives_times_out_and_is_named(tmp_path_factory: pytest.TempPathFactory) -> None:
    ranks = _spawn(tmp_path_factory, "absent", 3)
    assert ranks[1] == {"absent": True}
    for seen in (ranks[0], ranks[2]):
        assert seen["cluster_error"]["missing_ranks"] == [1]
        assert "rank 1 did not reach the end of session 'step-absent' within 3 s" in seen["cluster_error"]["message"]
        assert "cluster" not in seen


def test_a_subgroup_gathers_only_its_ranks(tmp_path_factory: pytest.TempPathFactory) -> None:
    ranks = _spawn(tmp_path_factory, "group", 3)
    assert ranks[0]["cluster"]["ranks"] == ranks[1]["cluster"]["ranks"] == [0, 1]
    assert ranks[2] == {"outside": True}


def test_under_torchrun_a_raising_rank_does_not_deadlock_the_other(tmp_path: Path) -> None:
    done = _torchrun(tmp_path, [str(WORKERS), "--torchrun", "raise", str(tmp_path)], 2)
    assert done.returncode == 0, done.stderr[-4000:]
    ranks = _ranks(tmp_path, 2)
    assert ranks[0]["cluster"]["failed_ranks"] == [1]
    assert ranks[0]["cluster"]["ranks"] == [0, 1]
    assert ranks[1]["raised"] == "rank 1 failed inside its block"


def test_vramguard_run_under_torchrun_writes_a_report_per_rank_and_report_merges_them(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(
        "import torch\n"
        "import torch.distributed as dist\n"
        "dist.init_process_group('gloo')\n"
        "rank = dist.get_rank()\n"
        "CACHE = [torch.zeros(65536)] if rank == 1 else []\n"
        "t = torch.ones(4)\n"
        "dist.all_reduce(t)\n"
        "del t\n"
        "dist.destroy_process_group()\n",
        encoding="utf-8",
    )
    done = _torchrun(tmp_path, ["-m", "vramguard", "run", "--device", "cpu", "train.py"], 2)
    assert done.returncode == 0, done.stderr[-4000:]
    assert sorted(p.name for p in tmp_path.glob("report-rank*.json")) == ["report-rank0.json", "report-rank1.json"]
    rank1 = json.loads((tmp_path / "report-rank1.json").read_text())
    assert rank1["name"] == "train.py [rank 1]" and rank1["leaked_bytes"] == 256 * KIB
    merged = subprocess.run(
        [sys.executable, "-m", "vramguard", "report", "report-rank0.json", "report-rank1.json", "--plot", "all.png"],
        env={**_env(), "COLUMNS": "140"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=HARD_TIMEOUT_S,
    )
    assert merged.returncode == 0, merged.stderr
    assert "'train.py' on 2 ranks" in merged.stdout
    leak_rows = [line.split() for line in merged.stdout.splitlines() if "__main__.CACHE[0]" in line]
    assert [row[0] for row in leak_rows] == ["1"]
    assert (tmp_path / "all.png").stat().st_size > 0


@pytest.mark.gpu
def test_nccl_ranks_gather_their_gpu_reports(tmp_path_factory: pytest.TempPathFactory) -> None:
    import torch

    world = min(2, torch.cuda.device_count())  # a single GPU: one rank, the per-device path only
    ranks = _spawn(tmp_path_factory, "nccl", world)
    cluster = ranks[0]["cluster"]
    assert cluster["backend"] == "nccl" and cluster["ranks"] == list(range(world))
    assert [r["device"] for r in cluster["reports"]] == [f"cuda:{r}" for r in range(world)]
    assert [r["leaked_bytes"] for r in cluster["reports"]] == [256 * KIB] * world


def test_a_failing_collective_keeps_the_block_s_own_exception(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Every rank checks in through the store, then the collective itself fails (a backend error).
    ranks = _spawn(tmp_path_factory, "gatherfail", 2)
    failed = ranks[1]
    assert failed["raised"] == "rank 1 failed inside its block"  # the block's, not the backend's
    assert failed["raised_type"] == "RuntimeError"
    gather_notes = [note for note in failed["notes"] if "could not gather" in note]
    assert len(gather_notes) == 1 and "DistBackendError: the collective failed" in gather_notes[0]
    assert "cluster" not in failed
    # Rank 0's block raised nothing: the gather's failure is what it gets.
    assert ranks[0]["raised_type"] == "DistBackendError"
    assert "cluster" not in ranks[0]


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


@pytest.mark.gpu
def test_gpu_point04_gather_without_set_device_runs_on_each_rank_s_device(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    if _gpu_count() < 2:
        pytest.skip("needs two GPUs: with one, every rank's device is cuda:0 and no rank can gather on the wrong one")
    # The ranks never call set_device: before the fix both gathered on cuda:0 (NCCL: duplicate GPU).
    ranks = _spawn(tmp_path_factory, "nccl-noset", 2)
    for rank, seen in enumerate(ranks):
        assert seen["gather_devices"] == [rank]
        cluster = seen["cluster"]
        assert cluster["backend"] == "nccl" and cluster["ranks"] == [0, 1]
        assert [r["device"] for r in cluster["reports"]] == ["cuda:0", "cuda:1"]


@pytest.mark.gpu
def test_gpu_point04_nccl_gather_runs_under_the_session_s_device(tmp_path_factory: pytest.TempPathFactory) -> None:
    # One rank, NCCL, no set_device: the gather selects the session's device and comes back.
    ranks = _spawn(tmp_path_factory, "nccl-noset", 1)
    seen = ranks[0]
    assert seen["gather_devices"] == [0]
    assert seen["cluster"]["backend"] == "nccl"
    assert [r["leaked_bytes"] for r in seen["cluster"]["reports"]] == [256 * KIB]
