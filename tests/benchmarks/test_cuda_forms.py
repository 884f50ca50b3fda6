"""The benchmarks' CUDA forms: on a machine without CUDA each refuses in one line with exit 2 (after
its flags parsed); the logic that does not need a device (the CUDA tables from recorded children,
the step-time calibration, the skipped detectors and pipeline) runs here on recorded values; and,
marked gpu, the session-overhead benchmark runs on CUDA and names the GPU."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from vramguard.probes import cuda_available

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"
MiB = 2**20

# Exactly as scripts/gpu-check.sh calls them, the outputs in a scratch folder.
CUDA_COMMANDS = {
    "reclaim.py": ["--quick", "--json", "reclaim-cuda.json", "--markdown", "reclaim-cuda.md", "--plot", "r.png"],
    "leak_detection.py": ["--quick", "--json", "leaks-cuda.json", "--markdown", "leaks-cuda.md"],
    "overhead.py": ["--quick", "--json", "overhead-cuda.json", "--markdown", "overhead-cuda.md"],
    "inference_loop.py": ["--quick", "--step-ms", "4,20", "--json", "loop-cuda.json", "--markdown", "loop-cuda.md"],
    "park.py": ["--quick", "--json", "park-cuda.json", "--markdown", "park-cuda.md"],
}


def _run(script: str, args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYANNOTE_METRICS_ENABLED": "false", "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def bench() -> Iterator[dict[str, ModuleType]]:
    """The benchmark modules, imported as their scripts import each other (benchmarks/ on the path)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        names = ("reclaim_tables", "inference_loop", "leak_detection", "park")
        yield {name: importlib.import_module(name) for name in names}
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.mark.skipif(cuda_available(), reason="this machine has CUDA: the refusal is for machines without it")
@pytest.mark.parametrize("script", list(CUDA_COMMANDS))
def test_device_cuda_without_cuda_exits_2_in_one_line(script: str, tmp_path: Path) -> None:
    done = _run(script, ["--device", "cuda", *CUDA_COMMANDS[script]], tmp_path, timeout=120)
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    lines = done.stderr.strip().splitlines()
    # One line, ours: argparse would have answered an unknown flag with "usage:" and the same code.
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"{script}: --device cuda: no CUDA device on this machine"), lines
    assert "usage:" not in done.stderr and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing measured, nothing written


def _snap(device: str, reserved: int, allocated: int, process: int | None) -> dict[str, Any]:
    return {
        "reserved_bytes": reserved, "allocated_bytes": allocated, "cached_bytes": reserved - allocated,
        "rss_bytes": 900 * MiB, "process_used_bytes": process, "device": device,
    }  # fmt: skip


def _child(after_reserved: int, after_process: int | None, told: str | None) -> dict[str, Any]:
    """A CUDA child's reading as reclaim.py's child writes it: 500 MiB of context before loading,
    40 MiB reserved by the load, and what the strategy left."""
    return {
        "before": _snap("cuda:0", 2 * MiB, 0, 502 * MiB),
        "loaded": _snap("cuda:0", 42 * MiB, 30 * MiB, 542 * MiB),
        "after": _snap("cuda:0", after_reserved, 0, after_process),
        "release_s": 0.004,
        "told": told,
        "device": "cuda:0",
        "main_arena": True,
        "environment": {"device": "cuda:0", "device_name": "NVIDIA H100 80GB HBM3", "torch": "2.11.0+cu130",
                        "cuda": "13.0", "driver": "580.159.04", "python": "3.12.3"},
    }  # fmt: skip


def test_cuda_tables_put_nvml_beside_reserved(bench: dict[str, ModuleType], tmp_path: Path) -> None:
    tables = bench["reclaim_tables"]
    kept = tables.summarise([_child(42 * MiB, 542 * MiB, None)])  # del while the cache holds it all
    returned = tables.summarise([_child(2 * MiB, 506 * MiB, "report: nothing left")])
    unread = tables.summarise([_child(2 * MiB, None, None)])  # NVML could not be read: n/a, never 0
    assert kept["environment"]["device_name"] == "NVIDIA H100 80GB HBM3"
    figures = returned["runs"][0]
    assert figures["fraction"] == pytest.approx(1.0)
    assert figures["process_fraction"] == pytest.approx(36 / 40)
    assert figures["process_above_before_bytes"] == 4 * MiB
    assert unread["runs"][0]["process_fraction"] is None
    data = {
        "device": "cuda:0", "device_label": "NVIDIA H100 80GB HBM3 (cuda:0)", "date": "2026-12-07", "repeat": 1,
        "command": "benchmarks/reclaim.py --device cuda --quick", "strategies": ["bare del", "manual order", "x"],
        "results": {"plain model": {"bare del": kept, "manual order": returned, "x": unread}},
        "skipped": {"ASR + diarization pipeline": "pyannote.audio is not installed (its diarizer needs it)"},
    }  # fmt: skip
    table = tables.markdown(data)
    assert "by NVML's figure for this process" in table
    assert "(loading and one run added 40.0 MiB reserved, 40.0 MiB by NVML)" in table
    assert "| returned (reserved) | returned (NVML) | NVML above before (MiB) |" in table
    assert "| bare del | 0.00 | 0.00 | 40.0 | 40.0 | 0.0 | 4 (4–4) | no |" in table
    assert "| manual order | 1.00 | 0.90 | 4.0 | 0.0 | 0.0 | 4 (4–4) | report: nothing left |" in table
    assert "| x | 1.00 | n/a | n/a |" in table
    assert "'ASR + diarization pipeline' skipped: pyannote.audio is not installed" in table
    png = tmp_path / "reclaim.png"
    tables.plot(data, str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_calibration_reaches_each_target_within_its_bounds(
    bench: dict[str, ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step that costs 0.5 ms per batch element: doubling reaches 4 ms at 8 and stops there; 20 ms
    lies between 32 and 64, and the interpolated batch is 40. Recorded times, no clock."""
    loop = bench["inference_loop"]
    seen: list[int] = []

    def step_s(shape: Any, *_: object) -> float:
        seen.append(shape.batch)
        return 0.0005 * shape.batch

    monkeypatch.setattr(loop, "_plain_step_s", step_s)
    base = loop.Shape(d_model=8, layers=1, batch=1, length=4)
    shape, tried = loop.calibrate(base, 0.004, torch.device("cpu"), lambda: 0.0)
    assert shape.batch == 8 and seen == [1, 2, 4, 8]
    seen.clear()
    shape, tried = loop.calibrate(base, 0.020, torch.device("cpu"), lambda: 0.0)
    assert shape.batch == 40 and seen == [1, 2, 4, 8, 16, 32, 64, 40]
    assert tried[-1] == (40, pytest.approx(0.020))
    seen.clear()
    shape, tried = loop.calibrate(base, 10.0, torch.device("cpu"), lambda: 0.0)  # out of reach: bounded
    assert shape.batch == loop.MAX_BATCH and len(seen) == loop.CALIBRATION_SIZES
    with pytest.raises(SystemExit, match="--step-ms"):
        loop._targets("4,-1")
    assert loop._targets("4,20") == [4.0, 20.0]


def test_a_missing_detector_package_is_a_skipped_column(
    bench: dict[str, ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    leaks = bench["leak_detection"]
    monkeypatch.setitem(sys.modules, "objgraph", None)  # find_spec answers None: not installed
    assert leaks.missing(leaks.Objgraph()) == "objgraph is not installed"
    assert leaks.missing(leaks.GcDiff()) is None
    cell = {"found": "exact", "holder_named": True, "time_s": 0.011}
    data = {
        "device_label": "NVIDIA H100 80GB HBM3 (cuda:0)", "date": "2026-12-07", "command": "leak_detection.py",
        "heaps": {"small heap": {"gc_objects": 1000, "cells": {"closure": {
            "vramguard census": cell, "objgraph find_backref_chain": {"skipped": "objgraph is not installed"},
        }}}},
    }  # fmt: skip
    table = leaks.markdown(data)
    assert "| closure | exact, holder, 11 | not installed |" in table
    assert "Not installed: the detector's package is missing where this ran." in table


def test_park_without_pyannote_skips_the_pipeline_and_compares_with_pinned_copies(
    bench: dict[str, ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    park = bench["park"]
    # An earlier test in this process may have imported pyannote.audio; find_spec would then
    # answer from sys.modules without looking at the parent package.
    monkeypatch.delitem(sys.modules, "pyannote.audio", raising=False)
    monkeypatch.setitem(sys.modules, "pyannote", None)
    assert park.pyannote_missing() == "pyannote.audio is not installed (the pipeline's diarizer needs it)"
    nbytes = 100 * MiB
    row = {
        "nbytes": nbytes, "load_s": 0.5, "park_cpu_s": 0.01, "wake_cpu_s": 0.004, "park_disk_first_s": 0.3,
        "park_disk_s": 0.2, "wake_disk_s": 0.05, "wake_cpu_of_pinned": 0.5, "park_cpu_of_pinned": 0.25,
        "pinned": {"h2d_bytes_per_s": nbytes / 0.002, "d2h_bytes_per_s": nbytes / 0.0025},
    }  # fmt: skip
    data = {
        "device": "cuda:0", "device_label": "NVIDIA H100 80GB HBM3 (cuda:0)", "date": "2026-12-07",
        "command": "park.py --device cuda --quick", "models": {"base": row},
        "pipeline": {"skipped": park.pyannote_missing()},
    }  # fmt: skip
    table = park.markdown(data)
    assert "| pinned host→device GB/s | wake / pinned |" in table
    assert "| whisper-base | 100.0 | 500.0 | 10.0 / 4.0 | 300.0 / 200.0 | 50.0 | 26.2 | 52.4 | 0.50 |" in table
    assert "Pipeline: skipped: pyannote.audio is not installed" in table


@pytest.mark.gpu
def test_gpu_overhead_quick_on_cuda_names_the_device(tmp_path: Path) -> None:
    out = tmp_path / "overhead-cuda.json"
    table = tmp_path / "o.md"
    done = _run("overhead.py", ["--device", "cuda", "--quick", "--json", str(out), "--markdown", str(table)], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    data: dict[str, Any] = json.loads(out.read_text())
    env = data["environment"]
    assert data["device"].startswith("cuda:") and env["device_name"] == torch.cuda.get_device_name(0)
    assert env["torch"] == torch.__version__ and env["cuda"] == torch.version.cuda
    names = [row["variant"] for row in data["variants"]]
    assert names[0] == "nullcontext()" and all(row["median_s"] > 0 for row in data["variants"])
    assert env["device_name"] in table.read_text()
