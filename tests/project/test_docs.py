"""The documentation site builds with ``mkdocs build --strict``: every page in the nav exists,
every link and anchor resolves, and the API reference renders from the docstrings."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "gpu_session" in api and "SessionReport" in api


def test_every_nav_page_exists_and_every_docs_page_is_in_the_nav() -> None:
    config = (ROOT / "mkdocs.yml").read_text()
    nav = re.findall(r":\s*([\w./-]+\.md)\s*$", config, flags=re.MULTILINE)
    assert nav, "mkdocs.yml has no nav"
    for page in nav:
        assert (ROOT / "docs" / page).is_file(), f"{page} is in the nav but missing"
    assert "gpu-results.md" in nav
    assert "not measured yet" in (ROOT / "docs" / "gpu-results.md").read_text().lower()


def test_figures_on_the_benchmarks_page_name_their_command_and_device() -> None:
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    for script in ("reclaim.py", "leak_detection.py", "asr_memory.py"):
        assert f"benchmarks/{script}" in page
    assert "CPU" in page
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page):
        assert (ROOT / "docs" / image).is_file(), image


@pytest.mark.parametrize(
    ("renderer", "saved_run"),
    [("reclaim_tables", "reclaim-cpu.json"), ("leak_detection", "leak-detection-cpu.json")],
)
def test_the_benchmark_tables_on_the_page_are_the_saved_runs(renderer: str, saved_run: str) -> None:
    """A benchmark's tables on the page are its committed JSON rendered by its own ``markdown``,
    word for word: a figure on the page cannot drift from the run that measured it."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        markdown = importlib.import_module(renderer).markdown
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    saved = json.loads((ROOT / "docs" / "data" / saved_run).read_text())
    assert saved["device_label"].startswith("CPU") and "cuda" not in saved["device"]
    assert markdown(saved) in (ROOT / "docs" / "benchmarks.md").read_text()
