"""``release`` gives back a model that only a reference cycle holds: dropped, collected, and only
then trimmed, so nothing freed by the collection is left in malloc's free lists."""

from __future__ import annotations

import gc
import sys
from typing import Any

import pytest
import torch

from vramguard import release
from vramguard.probes import malloc_trim, read_heap

MIB = 2**20


class App:
    """The user's application object, as the reclaim benchmark holds its models."""

    def __init__(self) -> None:
        self.model: Any = None
        self.out: Any = None


def _load(app: App) -> None:
    """About 40 MiB of parameters (mid-size tensors, served from malloc's arenas once glibc's mmap
    threshold has risen) and an output, the model caught in a reference cycle."""
    app.model = torch.nn.Sequential(*[torch.nn.Linear(1024, 1024) for _ in range(10)])
    app.model.__dict__["owner_ref"] = app.model  # a module that refers to itself (pytorch #50185)
    with torch.inference_mode():
        app.out = app.model(torch.randn(64, 1024))


def _resident() -> int:
    value = read_heap().resident_anonymous_bytes
    assert value is not None
    return value


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="resident anonymous memory is read from /proc")
def test_release_returns_a_cycle_held_model_to_the_level_before_loading() -> None:
    app = App()
    for _ in range(2):  # warm-up: glibc's dynamic thresholds and torch's lazy allocations settle
        _load(app)
        release(app, attrs=("model", "out"), device="cpu")
    gc.collect()
    malloc_trim()
    before = _resident()
    _load(app)
    loaded = _resident()
    assert loaded - before > 30 * MIB, "the model did not take resident memory: nothing to test"
    was_enabled = gc.isenabled()
    gc.disable()  # only release()'s own collection may free the cycle
    try:
        report = release(app, attrs=("model", "out"), device="cpu")
        after = _resident()
    finally:
        if was_enabled:
            gc.enable()
    assert app.model is None and app.out is None and not report.survivors
    # Within a few MiB of before loading: a trim run before the collection (or anything freed
    # after the trim) would leave tens of MiB in malloc's free lists here.
    assert after - before < 4 * MIB, (before, loaded, after)
