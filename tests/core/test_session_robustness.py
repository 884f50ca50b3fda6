"""A session never leaves anything behind and never replaces the block's own error, whatever fails."""

from __future__ import annotations

import asyncio
import threading
import warnings
from typing import Any

import pytest
import torch

from vramguard import InvalidArgument, LeakWarning, SessionReport, gpu_session
from vramguard.core import _hooks, _lifecycle, _release, _run
from vramguard.core._sampler import SAMPLER

MIB = 2**20


def _registry_is_clean() -> bool:
    return all(not runs for runs in _run._active.values()) and not _hooks.empty_cache_listeners


def _failing_release(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("CUDA error: device-side assert triggered")


def test_a_failing_release_does_not_replace_the_blocks_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_release, "run_release", _failing_release)
    with pytest.raises(ValueError, match="the block's own") as info, gpu_session(device="cpu", sample_every=0.01):
        raise ValueError("the block's own error")
    notes = getattr(info.value, "__notes__", [])
    assert any("could not measure or release" in n and "device-side assert" in n for n in notes)
    assert _registry_is_clean()
    assert not SAMPLER._subs


def test_a_failing_release_after_a_clean_block_raises_and_cleans_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_release, "run_release", _failing_release)
    with pytest.raises(RuntimeError, match="device-side assert"), gpu_session(device="cpu"):
        pass
    assert _registry_is_clean()
    assert not SAMPLER._subs
    assert torch.cuda.empty_cache is _release._original_empty_cache  # the census unwrapped it


class Interrupted(BaseException):
    """Stands for a KeyboardInterrupt arriving in the middle of a session's entry."""


def test_a_failed_entry_leaves_nothing_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise Interrupted

    monkeypatch.setattr(_lifecycle, "_start_census", interrupted)
    session = gpu_session(device="cpu", sample_every=0.01)
    with pytest.raises(Interrupted), session:
        pass
    assert _registry_is_clean()
    assert not SAMPLER._subs
    monkeypatch.undo()
    with session:  # the object is usable again
        pass
    assert session.report is not None


def test_keeping_a_sparse_tensor_works() -> None:
    with gpu_session(device="cpu", leaks="raise") as s:
        sparse = s.keep(torch.sparse_coo_tensor([[0, 1]], [1.0, 2.0], (4,), check_invariants=True))
    # Values (2 float32) and indices (1×2 int64) are both kept memory, counted once each.
    assert s.report is not None and s.report.kept_bytes == 2 * 4 + 2 * 8
    assert s.report.leaked_bytes == 0
    del sparse


def test_generator_functions_are_rejected() -> None:
    def numbers() -> Any:
        yield 1

    async def anumbers() -> Any:
        yield 1

    for fn in (numbers, anumbers):
        with pytest.raises(InvalidArgument, match="generator"):
            gpu_session(fn)


def test_leak_warning_points_at_the_users_code() -> None:
    kept: list[torch.Tensor] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with gpu_session(device="cpu"):
            kept.append(torch.ones(MIB))
    leak = [w for w in caught if issubclass(w.category, LeakWarning)]
    assert leak and leak[0].filename == __file__


def test_overlapping_asyncio_tasks_are_marked_concurrent() -> None:
    async def block(started: asyncio.Event, other: asyncio.Event) -> SessionReport | None:
        async with gpu_session(device="cpu", leaks="ignore") as s:
            started.set()
            await other.wait()
        return s.report

    async def main() -> list[SessionReport | None]:
        a, b = asyncio.Event(), asyncio.Event()
        return list(await asyncio.gather(block(a, b), block(b, a)))

    reports = asyncio.run(main())
    assert all(r is not None and r.concurrent for r in reports)


def test_sequential_sessions_in_one_thread_are_not_concurrent() -> None:
    with gpu_session(device="cpu") as first:
        pass
    done = threading.Event()

    def other() -> None:
        with gpu_session(device="cpu"):
            pass
        done.set()

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    with gpu_session(device="cpu") as second:
        pass
    assert first.report is not None and second.report is not None
    assert not first.report.concurrent and not second.report.concurrent and done.is_set()
