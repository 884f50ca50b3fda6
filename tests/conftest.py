"""Shared test set-up: the ``gpu`` marker skips cleanly without CUDA; ``device`` runs a test on
the host and, marked ``gpu``, on CUDA."""

from __future__ import annotations

import os

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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason="needs a CUDA device (marked gpu)")
    for item in items:
        if "gpu" in item.keywords and not HAS_CUDA:
            item.add_marker(skip)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request: pytest.FixtureRequest) -> str:
    """Run the test on the host, and again on CUDA under the gpu marker."""
    return str(request.param)
