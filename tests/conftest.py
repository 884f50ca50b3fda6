"""Shared test set-up: the ``gpu`` marker skips cleanly without CUDA; ``device`` runs a test on
the host and, marked ``gpu``, on CUDA; every test listed in tests/slow.txt is marked ``slow``, so
``pytest -m "not slow"`` is the inner loop and plain ``pytest`` (what CI runs) is everything."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import settings

# No wall-clock deadline per example: on a busy machine (another process keeping both cores
# busy) Hypothesis's default 200 ms deadline failed a pure function's property test
# (tests/asr/test_align.py). Work is bounded by example counts, never by time.
settings.register_profile("vramguard", deadline=None)
settings.load_profile("vramguard")

os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

HAS_CUDA = torch.cuda.is_available()

SLOW_LIST = Path(__file__).with_name("slow.txt")


def slow_entries(path: Path = SLOW_LIST) -> list[str]:
    """The node-id prefixes in tests/slow.txt: a folder, a module or a test, one a line, ``#`` comments."""
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        entry = line.split("#", 1)[0].strip()
        if entry:
            entries.append(entry.rstrip("/"))
    return entries


def is_listed(nodeid: str, entries: list[str]) -> bool:
    """Whether a node id is one entry or lies under it (a folder's modules, a module's tests, a test's
    parameters), never a mere string prefix: ``tests/core/test_session.py`` does not list
    ``tests/core/test_session_reads.py``."""
    return any(nodeid == e or nodeid.startswith((e + "/", e + "::", e + "[")) for e in entries)


# tryfirst: the marks must be in place before pytest's own hook applies ``-m`` and deselects.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason="needs a CUDA device (marked gpu)")
    slow = slow_entries()
    for item in items:
        if "gpu" in item.keywords and not HAS_CUDA:
            item.add_marker(skip)
        if is_listed(item.nodeid, slow):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request: pytest.FixtureRequest) -> str:
    """Run the test on the host, and again on CUDA under the gpu marker."""
    return str(request.param)
