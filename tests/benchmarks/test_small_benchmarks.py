"""The smaller benchmarks' reduced forms (``--quick``) run end to end in CI, each in a child process
as a user runs it: every row is printed and every ratio computed. No time is judged here; the
speed targets are the full runs' (docs/benchmarks.md)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
MiB = 1024 * 1024


def run_benchmark(name: str, *args: str, timeout: float = 600) -> str:
    """The script's stdout, after asserting it exited 0."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *args],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=BENCHMARKS.parent, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _row(stdout: str, name: str) -> list[str]:
    """The fields after ``name`` on the line that starts with it (after indentation)."""
    for line in stdout.splitlines():
        if line.strip().startswith(name):
            return line.strip()[len(name) :].split()
    raise AssertionError(f"no row {name!r} in:\n{stdout}")


OVERHEAD_VARIANTS = (
    "nullcontext()",
    "session, release off, census off",
    "session, release off (census on)",
    "session, release on, census off",
    "session, release on (census on)",
)


def test_overhead_quick_prints_every_variant_against_the_null_context() -> None:
    stdout = run_benchmark("overhead.py", "--quick", "--device", "cpu")
    assert re.search(r"variant +median +x nullcontext +runs", stdout), stdout
    rows = {name: _row(stdout, name) for name in OVERHEAD_VARIANTS}
    assert rows["nullcontext()"][2:] == ["1", "200"]  # median, "µs", ratio, runs
    for name, fields in rows.items():
        assert fields[1] == "µs" and float(fields[0]) > 0 and int(fields[2]) >= 1, (name, fields)
    # The quick form prints the budget's verdict but exits 0 either way: a loaded CI machine is no measurement.
    assert re.search(r"default: [\d.]+ µs — (within|OVER) the 50 µs budget", stdout), stdout
    assert re.search(r"census and release off: [\d.]+ µs — (within|OVER) the 20 µs budget", stdout), stdout
    # Where the price goes, by phase, and the device reads a session makes (issue 29).
    assert "where a default session's price goes" in stdout and "the rest (registry, peaks, report, glue)" in stdout
    reads = dict(re.findall(r"^  (mallinfo2 \(host\)|memory_stats\(\)) +([\d.]+)$", stdout, flags=re.MULTILINE))
    assert reads == {"mallinfo2 (host)": "2", "memory_stats()": "0"}, stdout


INFERENCE_VARIANTS = (
    "plain",
    "session (defaults)",
    "session, census off",
    "session, release off",
    "session, census + release off",
    "plain + malloc_trim",
    "defaults, trim stubbed (diagnostic)",
)


def test_inference_loop_quick_prints_every_variant_and_its_ratio_to_plain() -> None:
    stdout = run_benchmark("inference_loop.py", "--quick")
    assert "d_model 32, 1 layers, batch 2×8" in stdout and "median of 5 rounds" in stdout, stdout
    assert "× plain" in stdout
    ratios = {name: float(_row(stdout, name)[2]) for name in INFERENCE_VARIANTS}
    assert ratios["plain"] == 1.0
    assert all(ratio > 0 for ratio in ratios.values()), ratios
    verdict = re.search(
        r"(PASS|FAIL) +default session per step: ([\d.]+)× the plain [\d.]+ ms step, -?\d+ µs per session", stdout
    )
    assert verdict is not None, stdout
    assert float(verdict.group(2)) == ratios["session (defaults)"]
    assert "last session's release, gc:" in stdout  # the default session's release ran and said what it did


def test_census_quick_finds_every_leak_with_its_holder() -> None:
    stdout = run_benchmark("census.py", "--quick")
    assert "2 iterations per block, release off, median of 3 blocks" in stdout, stdout
    for loop in ("forward (inference)", "training step"):
        for variant in ("off", "on", "on + sites"):
            assert re.search(rf"{re.escape(loop)} +{re.escape(variant)} +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+\n", stdout)
    assert "+100000 objects" in stdout
    # The script exits non-zero when a leak is missed or its holder not named; the holders, as printed:
    for shape, holder in (
        ("dict", "CACHE['t']"),
        ("attr", "ROOT.a.b.c.t"),
        ("closure", "CLOSURE"),
        ("lru_cache", "cached_weights"),
    ):
        found = _row(stdout, f"holder found, {shape}:")
        assert holder in " ".join(found), (shape, found)
        assert re.search(rf"(PASS|FAIL)  {shape} leak's exit at \+100k: [\d.]+ ms/100k", stdout), stdout
    assert "3. summary" in stdout


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("accelerate") is None, reason="accelerate is not installed")
def test_release_orders_quick_measures_every_sequence_in_both_scenarios(tmp_path: Path) -> None:
    out = tmp_path / "orders.json"
    stdout = run_benchmark("release_orders.py", "--quick", "--device", "cpu", "--json", str(out))
    data: dict[str, Any] = json.loads(out.read_text())
    spec = importlib.util.spec_from_file_location("vramguard_bench_orders", BENCHMARKS / "release_orders.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sequences: dict[str, str] = module.SEQUENCES
    assert set(data["results"]) == {"plain", "cycle"}
    for scenario, rows in data["results"].items():
        assert list(rows) == list(sequences), scenario
        for row in rows.values():
            assert isinstance(row["allocated_delta_bytes"], int) and isinstance(row["reserved_delta_bytes"], int)
    # Live memory, not the allocator's caching: a cycle keeps the pipeline's 4 MiB of weights until a
    # collection, after a bare del and after accelerate's release_memory; vramguard collects it.
    cycle = data["results"]["cycle"]
    for kept in ("bare del", "accelerate release_memory(pipe.model, pipe.head)"):
        assert cycle[kept]["allocated_until_gc_bytes"] > 3 * MiB, (kept, cycle[kept])
    for ours in ("vramguard.release(pipe, attrs=(...))", "vramguard session, s.own(pipe)"):
        for scenario in ("plain", "cycle"):
            row = data["results"][scenario][ours]
            assert abs(row["allocated_until_gc_bytes"]) < MiB and row["allocated_delta_bytes"] < MiB, (scenario, row)
    compared = [line for line in stdout.splitlines() if line.strip().startswith("-> ")]
    assert len(compared) == 2 * sum(not name.startswith("vramguard") for name in sequences), stdout
    assert all("more than vramguard" in line for line in compared)
