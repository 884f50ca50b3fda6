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
