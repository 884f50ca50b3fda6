"""The isolation benchmark, reduced: one run measures in process and isolated side by side and
prints the ratios (the full run is ``benchmarks/isolation.py``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).parents[2] / "benchmarks" / "isolation.py"


def test_the_benchmark_reports_start_transfer_and_the_ratio(tmp_path: Path) -> None:
    out = tmp_path / "isolation.json"
    command = [sys.executable, str(SCRIPT), "--repeats", "1", "--sizes", "0,4", "--json", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert "ratio = isolated / in process" in result.stdout
    rows = json.loads(out.read_text())["rows"]
    assert [row["result_mib"] for row in rows] == [0.0, 4.0]
    for row in rows:
        # A child process costs more than the call in process; its start is most of it.
        assert row["isolated_s"] > row["in_process_s"] and row["ratio"] > 1
        assert 0 < row["start_s"] < row["isolated_s"] and row["transfer_s"] >= 0 and row["exit_s"] >= 0
