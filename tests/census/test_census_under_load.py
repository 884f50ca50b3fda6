"""The holder search is bounded by counts, never the clock: its answers must not change while
other processes take every core."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BURNERS = 2


@pytest.mark.slow
def test_the_census_tests_pass_while_other_processes_burn_the_cores() -> None:
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(BURNERS)]
    try:
        assert all(b.poll() is None for b in burners), "a burner exited"
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "tests/census",
                f"--ignore={Path(__file__).relative_to(ROOT)}",
                "-q",
                "-p",
                "no:cacheprovider",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert all(b.poll() is None for b in burners), "a burner exited: the tests ran without the load"
    finally:
        for burner in burners:
            burner.kill()
        for burner in burners:
            burner.wait()
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    summary = run.stdout.strip().splitlines()[-1]
    assert " passed" in summary and " failed" not in summary and "error" not in summary, summary
