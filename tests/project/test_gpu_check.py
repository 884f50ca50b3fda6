"""scripts/gpu-check.sh, the prepared command that proves the CUDA path on a lent GPU machine: its
dry run here (no GPU) goes through the same plumbing, and its summary builder maps JUnit results
to issue 24's points."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu-check.sh"
DryRun = tuple[subprocess.CompletedProcess[str], Path, set[Path]]
"""The dry run's process, its OUT folder, and the paths it left new in the checkout."""

# Recorded from pytest 9.2's --junitxml on a file with these five tests and a module that fails to
# import (under --continue-on-collection-errors); tracebacks trimmed, that module renamed.
JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest"
errors="1" failures="1" skipped="2" tests="6" time="0.070" timestamp="2026-12-07T22:56:16.791844+00:00" hostname="vm">
<testcase classname="" name="tests.integrations.test_asgi_metrics" time="0.000"><error message="collection failure"
>ImportError while importing test module 'tests/integrations/test_asgi_metrics.py'.</error></testcase>
<testcase classname="test_fx" name="test_gpu_point01_a_small_block_strands_its_segment" time="0.000" />
<testcase classname="test_fx" name="test_gpu_point02_the_leak_figure_leaves_the_workspace_out" time="0.000"><failure
message="AssertionError: leaked 32 MiB&#10;assert 32 == 0">test_fx.py:7: AssertionError</failure></testcase>
<testcase classname="test_fx" name="test_gpu_point03_blocks_before_cuda_init" time="0.000"><skipped type="pytest.skip"
message="needs a CUDA device (marked gpu)">/tmp/fx/test_fx.py:9: needs a CUDA device (marked gpu)</skipped></testcase>
<testcase classname="test_fx" name="test_session_on_cuda[cuda]" time="0.009" />
<testcase classname="test_fx" name="test_end_to_end_on_cuda" time="0.000"><skipped type="pytest.skip"
message="could not import 'pyannote.audio': No module named 'pyannote'">/tmp/fx/test_fx.py:17: could not import
'pyannote.audio': No module named 'pyannote'</skipped></testcase>
</testsuite></testsuites>"""


def _load(name: str) -> ModuleType:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(ROOT / "scripts"))


@pytest.fixture(scope="module")
def summary() -> ModuleType:
    return _load("gpu_summary")


def _tree() -> set[Path]:
    """The checkout's paths, less git's, the venv's and the caches that other tests (under xdist, at
    the same time) write: bytecode (the script runs with PYTHONDONTWRITEBYTECODE), Hypothesis's
    examples (the script points them under /tmp), mypy's and ruff's."""
    skip = {".git", ".venv", "__pycache__", ".hypothesis", ".mypy_cache", ".ruff_cache"}
    paths: set[Path] = set()
    for folder, folders, files in os.walk(ROOT):
        folders[:] = [name for name in folders if name not in skip]
        paths.update(Path(folder, name) for name in folders + files)
    return paths


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> DryRun:
    out = tmp_path_factory.mktemp("gpu-check-out")
    # The suite's own variables (PYTEST_XDIST_WORKER...) stay out of the nested pytest.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(OUT=str(out), PYTHON=sys.executable)
    before = _tree()
    done = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    return done, out, _tree() - before


def test_the_scripts_parse() -> None:
    for script in ("gpu-check.sh", "gpu-wheels.sh"):
        command = ["bash", "-n", str(ROOT / "scripts" / script)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_the_dry_run_passes_and_reports_every_gpu_test_as_skipped(
    dry_run: DryRun,
) -> None:
    done, out, _ = dry_run
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    suite = ET.parse(out / "gpu-tests.xml").getroot().find("testsuite")
    assert suite is not None
    tests, skipped = int(suite.get("tests", "0")), int(suite.get("skipped", "0"))
    assert tests > 0 and skipped == tests
    assert suite.get("failures") == "0" and suite.get("errors") == "0"
    text = (out / "summary.md").read_text()
    assert "DRY RUN" in text and "**PASSED**" in text
    for number, title in _load("gpu_summary").POINTS:
        row = rf"^\| {number:02d} \| {re.escape(title)} \| (skipped: needs (a|two) CUDA devices?|no test found)"
        assert re.search(row, text, re.M), number
    for name in ("reclaim", "leaks", "overhead", "loop", "park"):
        assert re.search(rf"^\| bench-{name} \| not run: dry run \|", text, re.M)
    assert "pyannote.audio" in text


@pytest.mark.slow
def test_the_dry_run_writes_its_files_under_out_and_nothing_in_the_checkout(
    dry_run: DryRun,
) -> None:
    _, out, new_in_checkout = dry_run
    names = sorted(p.name for p in out.iterdir())
    assert names == ["gpu-check-files.tar.gz", "gpu-check.log", "gpu-tests.xml", "summary.md"]
    assert new_in_checkout == set()


def test_each_point_gets_the_verdict_of_its_tests(summary: ModuleType) -> None:
    rows = {row.number: row for row in summary.point_rows(summary.parse_junit(JUNIT))}
    assert len(rows) == 13
    assert rows[1].verdict == "passed"
    assert rows[2].verdict == "failed" and "leaked 32 MiB" in rows[2].detail and "assert 32" not in rows[2].detail
    assert (rows[3].verdict, rows[3].detail) == ("skipped", "needs a CUDA device (marked gpu)")
    assert all(rows[n].verdict == "no test found" and rows[n].tests == () for n in range(4, 14))


def test_the_summary_counts_the_other_tests_and_fails_the_run(summary: ModuleType, tmp_path: Path) -> None:
    log = tmp_path / "bench-park.log"
    log.write_text("line 1\nRuntimeError: CUDA error: out of memory\n")
    recorded = (
        f"tests\t1\t40\t180\t{tmp_path}/tests.log\tpython3 -m pytest -m gpu\n"
        f"bench-park\t124\t30\t30\t{log}\tpython3 benchmarks/park.py --markdown x.md\n"
    )
    steps = summary.read_steps(recorded)
    text, failures = summary.render("- date: today", steps, summary.parse_junit(JUNIT), dry_run=False)
    assert "**NOT PASSED**" in text
    assert "3 tests: 1 passed, 1 error, 1 skipped." in text
    assert "ERROR `tests.integrations.test_asgi_metrics`: collection failure" in text
    assert "TIMED OUT after 30 s (limit 30 s)" in text and "RuntimeError: CUDA error: out of memory" in text
    assert "gpu tests skipped for it: 1." in text
    assert "failed test_fx::test_gpu_point02_the_leak_figure_leaves_the_workspace_out" in failures
    assert "point 04: no test found" in failures


def test_a_dry_run_passes_on_its_plumbing_but_a_real_run_needs_a_passed_gpu_test(summary: ModuleType) -> None:
    skipped = summary.parse_junit(JUNIT.replace("<failure", "<skipped").replace("</failure>", "</skipped>"))
    skipped = [r for r in skipped if r.outcome == "skipped"]
    steps = summary.read_steps("bench-park\tnot-run\t0\t30\t/nowhere.log\tpython3 benchmarks/park.py\n")
    assert summary.render("", steps, skipped, dry_run=True)[1] == []
    assert "no gpu test passed" in summary.render("", steps, skipped, dry_run=False)[1]
    assert "no JUnit XML: the gpu tests left no report" in summary.render("", steps, None, dry_run=True)[1]


def test_every_requirement_of_the_project_is_placed_for_the_gpu_machine() -> None:
    tomllib = pytest.importorskip("tomllib")
    deps = _load("gpu_deps")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    assert deps.unplaced(requirements) == []
    assert deps.unplaced(["pyannote.audio>=4", "new-package>=1"]) == ["new-package"]
