"""The benchmarks' reduced forms run end to end, so the scripts cannot rot: each in a child
process, as a user runs them, asserting on the figures they write."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"


def run_benchmark(name: str, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYANNOTE_METRICS_ENABLED": "false", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *args],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_reclaim_quick_ranks_the_right_order_above_a_bare_del(tmp_path: Path) -> None:
    out, table = tmp_path / "reclaim.json", tmp_path / "reclaim.md"
    strategies = "bare del;whisper-plus, as written;manual order;vramguard.release"
    done = run_benchmark(
        "reclaim.py", "--quick", "--device", "cpu", "--strategies", strategies, "--json", str(out),
        "--markdown", str(table),
    )  # fmt: skip
    data: dict[str, Any] = json.loads(out.read_text())
    cells = data["results"]["plain model"]
    assert set(cells) == set(strategies.split(";"))
    fraction = {name: cell["summary"]["fraction"]["median"] for name, cell in cells.items()}
    # One small model, one process per cell: the host's noise is a few MiB of a few tens, so the
    # bounds are loose; the full run's figures, with their spread, are in docs/benchmarks.md.
    assert fraction["vramguard.release"] > 0.6
    assert fraction["vramguard.release"] > fraction["bare del"] + 0.3
    assert cells["vramguard.release"]["told"] and cells["bare del"]["told"] is None
    assert "CPU" in data["device_label"] and "| vramguard.release |" in table.read_text()
    assert "returned" in done.stdout


@pytest.mark.slow
def test_leak_detection_quick_scores_every_detector(tmp_path: Path) -> None:
    out = tmp_path / "leaks.json"
    run_benchmark("leak_detection.py", "--quick", "--device", "cpu", "--json", str(out))
    data: dict[str, Any] = json.loads(out.read_text())
    small = data["heaps"]["small heap"]["cells"]
    assert set(small) == {"global container", "closure", "reference cycle"}
    census = small["global container"]["vramguard census"]
    assert census["found"] == "exact" and census["holder_named"], census
    diff = small["global container"]["gc.get_objects() diff"]
    assert diff["found"] == "exact" and not diff["holder_named"]
    assert small["global container"]["torch warn_tensor_cycles"] is None  # CUDA tensors only
    assert small["reference cycle"]["vramguard census"]["holder_named"]


@pytest.mark.slow
def test_asr_memory_quick_draws_every_way_on_one_plot(tmp_path: Path) -> None:
    out, png = tmp_path / "asr.json", tmp_path / "asr.png"
    run_benchmark("asr_memory.py", "--quick", "--device", "cpu", "--json", str(out), "--plot", str(png))
    data: dict[str, Any] = json.loads(out.read_text())
    ways = data["files"]
    assert set(ways) == {"whisper-plus (reload per file)", "resident", "resident, release between files"}
    for result in ways.values():
        assert len(result["per_file_s"]) == 2 and len(result["samples"]) >= 2
        assert result["peak_reserved_bytes"] >= result["before_reserved_bytes"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
