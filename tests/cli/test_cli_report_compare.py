"""``vramguard report`` with several files, through the real CLI: the rank files of one run merge
into one session across ranks; any other set of reports is compared side by side, never summed
into "ranks" with a "peak imbalance"."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

OK = "import torch\nx = torch.ones(2**18)\ndel x\n"
LEAKS = "import torch\nCACHE = [torch.ones(2**18)]\n"


def vramguard(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vramguard", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, "COLUMNS": "160", **(env or {})},
    )


def run_script(folder: Path, name: str, source: str, json_name: str, env: dict[str, str] | None = None) -> None:
    (folder / name).write_text(source)
    done = vramguard("run", "--device", "cpu", "--leaks", "ignore", "--json", json_name, name, cwd=folder, env=env)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two unrelated runs (ok1.json, ok3.json: the second leaks 1 MiB) and the two rank files of
    one run of train.py under torchrun's variables (out-rank0.json, out-rank1.json)."""
    folder = tmp_path_factory.mktemp("runs")
    run_script(folder, "ok1.py", OK, "ok1.json")
    run_script(folder, "ok3.py", LEAKS, "ok3.json")
    for rank in (0, 1):
        env = {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2"}
        run_script(folder, "train.py", OK, "out.json", env=env)
    return folder


def test_two_unrelated_runs_are_compared_not_merged_as_ranks(runs: Path) -> None:
    done = vramguard("report", "ok1.json", "ok3.json", "--plot", "both.png", cwd=runs)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "on 2 ranks" not in out and "imbalance" not in out, out
    assert out.startswith("vramguard: 2 reports compared")
    header = next(line for line in out.splitlines() if "1: ok1.json" in line)
    assert "2: ok3.json" in header and "2 − 1" in header
    session = next(line for line in out.splitlines() if line.split()[:1] == ["session"])
    assert session.split()[1:] == ["ok1.py", "ok3.py"]
    leaked = next(line for line in out.splitlines() if line.split()[:1] == ["leaked"])
    assert leaked.split()[1:] == ["0", "B", "1.00", "MiB", "+1.00", "MiB"], leaked
    assert "leaks of 2: ok3.json" in out and "CACHE" in out
    assert "1: ok1.json: leaked 0 B" in out
    assert (runs / "both.png").stat().st_size > 0


def test_rank_files_of_one_run_merge(runs: Path) -> None:
    done = vramguard("report", "out-rank1.json", "out-rank0.json", cwd=runs)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("vramguard session 'train.py' on 2 ranks: peak imbalance")
    assert "compared" not in done.stdout


def test_rank_files_of_different_runs_are_compared(runs: Path) -> None:
    (runs / "other-rank1.json").write_text((runs / "ok1.json").read_text().replace('"ok1.py"', '"ok1.py [rank 1]"'))
    done = vramguard("report", "out-rank0.json", "other-rank1.json", cwd=runs)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("vramguard: 2 reports compared"), done.stdout
    # One rank given twice is not two ranks either.
    done = vramguard("report", "out-rank0.json", "out-rank0.json", cwd=runs)
    assert done.stdout.startswith("vramguard: 2 reports compared"), done.stdout


def test_a_cluster_report_cannot_be_compared(runs: Path) -> None:
    from vramguard.report import save_report
    from vramguard.report.merge import merge_rank_reports

    save_report(merge_rank_reports([runs / "out-rank0.json", runs / "out-rank1.json"]), runs / "cluster.json")
    done = vramguard("report", "cluster.json", "ok1.json", cwd=runs)
    assert done.returncode == 2
    assert "cluster.json" in done.stderr and "compare" in done.stderr and "Traceback" not in done.stderr
