"""The benchmark's reduced form: a tiny Whisper, one repeat, no pipeline; its goals hold."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

TORCHCODEC = r"ignore:\s*torchcodec is not installed correctly:UserWarning"
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings(TORCHCODEC)]

BENCHMARK = Path(__file__).parents[2] / "benchmarks" / "park.py"


def test_wake_beats_a_reload_and_disk_returns_resident_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("transformers")
    monkeypatch.syspath_prepend(str(BENCHMARK.parent))  # the benchmarks share bench_env.py beside them
    from vramguard.asr.testing import build_tiny_whisper

    spec = importlib.util.spec_from_file_location("park_benchmark", BENCHMARK)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    row = bench.whisper_row("tiny", build_tiny_whisper(tmp_path / "w"), repeats=1)
    assert row["load_s"] >= 10 * row["wake_cpu_s"]
    assert abs(row["between_disk_mib"] / row["before_mib"] - 1) <= 0.05
    assert row["between_cpu_mib"] > row["between_disk_mib"]  # the host copy is resident
