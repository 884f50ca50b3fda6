"""A long-running process stays flat: sessions with the census on and off, each loading and
releasing a small model, leave resident memory, threads, open files and live tensors where
they were. Reduced here (``VRAMGUARD_SOAK_SESSIONS``, default 200); the full 10,000-session
form is ``benchmarks/soak.py``."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).parents[2] / "benchmarks" / "soak.py"


def _soak_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vramguard_benchmark_soak", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def test_many_sessions_leave_the_process_flat() -> None:
    sessions = int(os.environ.get("VRAMGUARD_SOAK_SESSIONS", "200"))
    soak = _soak_module()
    result = soak.soak(sessions=sessions, window=max(1, sessions // 5), warmup=30)
    message = "\n".join(result.lines())
    assert result.rss_drift_bytes <= soak.MiB, message
    assert result.last.threads <= result.first.threads, message
    assert result.last.open_files <= result.first.open_files, message
    assert result.last.live_tensors <= result.first.live_tensors, message
    assert result.flat(), message


def test_growth_in_any_figure_is_not_flat() -> None:
    """The judgement can fail: each figure past its bound makes the run not flat."""
    soak = _soak_module()
    first = soak.Window(0, 100 * soak.MiB, threads=3, open_files=5, live_tensors=0, live_objects=1000, duration_s=1.0)
    grown = {
        "rss_median_bytes": 101 * soak.MiB + 1,
        "threads": 4,
        "open_files": 6,
        "live_tensors": 1,
        "live_objects": 1000 + soak.ONE_OFF_OBJECTS + 1,
    }
    assert soak.Soak(10, 2, first, first).flat()
    for field, value in grown.items():
        last = soak.Window(**{**first.__dict__, field: value})
        assert not soak.Soak(10, 2, first, last).flat(), field


def test_the_command_line_prints_the_windows_writes_json_and_exits_by_the_judgement(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    command = [sys.executable, str(SCRIPT), "--sessions", "40", "--window", "10", "--warmup", "10", "--json", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    saved = json.loads(out.read_text())
    assert done.returncode == (0 if saved["flat"] else 1), done.stderr[-2000:]
    assert saved["sessions"] == 40 and saved["window"] == 10
    assert saved["rss_drift_bytes"] == saved["last"]["rss_median_bytes"] - saved["first"]["rss_median_bytes"]
    assert "40 sessions (census on and off alternately), windows of 10" in done.stdout
    assert f"flat: {saved['flat']}" in done.stdout


@pytest.mark.parametrize(
    ("options", "named"), [(["--window", "30"], "--window 30"), (["--window", "10", "--warmup", "-1"], "--warmup -1")]
)
def test_the_command_line_refuses_a_window_or_warmup_out_of_range(options: list[str], named: str) -> None:
    command = [sys.executable, str(SCRIPT), "--sessions", "40", *options]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2 and named in done.stderr, done.stderr
