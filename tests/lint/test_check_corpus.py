"""The corpus benchmark, reduced to accelerate: it completes, prints its counts, and finds the known cases."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "check_corpus.py"


@pytest.mark.skipif(importlib.util.find_spec("accelerate") is None, reason="accelerate is not installed")
def test_corpus_benchmark_over_accelerate() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--packages", "accelerate,not-a-package", "--findings"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    lines = done.stdout.splitlines()
    row = re.match(
        r"accelerate +files=(\d+) +lines=(\d+) +findings=(\d+) +VG001=1 VG002=1 VG003=1 VG004=0 VG005=0 ", lines[0]
    )
    assert row is not None, lines[0]
    assert int(row.group(1)) > 50 and int(row.group(2)) > 20_000 and int(row.group(3)) == 3
    assert "ms/1000 lines" in lines[0]
    found = {(Path(line.split(":")[0]).name, line.split()[1]) for line in lines[1:4]}
    assert found == {("accelerator.py", "VG001"), ("accelerator.py", "VG002"), ("memory.py", "VG003")}
    assert lines[4] == "not-a-package   skipped: not installed"
    assert lines[5].startswith("total           files=")
