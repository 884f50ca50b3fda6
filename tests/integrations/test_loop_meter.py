"""The training-loop meter both callbacks share, on real sessions: each holder warned once,
each release-order call site warned once, figures as log entries."""

from __future__ import annotations

import warnings

import pytest
import torch

import vramguard
from vramguard.integrations._loop import LoopMeter

HOARD: list[torch.Tensor] = []


def windows(meter: LoopMeter, count: int, body: object) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(1, count + 1):
            meter.begin_train(f"step {step}")
            body()  # type: ignore[operator]
            assert meter.window_ends(step, epoch_end=False)
            meter.end_train(())
    return caught


def test_each_holder_is_warned_once_and_the_figures_wait_for_the_log() -> None:
    meter = LoopMeter("step", "warn", None, "cpu", 0)
    try:
        caught = windows(meter, 3, lambda: HOARD.append(torch.ones(256)))
    finally:
        HOARD.clear()
    leaks = [str(w.message) for w in caught if issubclass(w.category, vramguard.LeakWarning)]
    assert len(leaks) == 1, leaks
    assert leaks[0].startswith("training loop session 'step 1' leaked 1.00 KiB: ")
    assert f"global {__name__}.HOARD" in leaks[0]
    pending = meter.take_pending()
    assert pending["vram_leaked_bytes"] == 1024 and "vram_peak_bytes" in pending
    assert meter.take_pending() == {}, "taken once, by the next log entry"


OUT: torch.Tensor | None = None


def test_an_owner_whose_kind_changes_between_windows_is_warned_once() -> None:
    """An output kept with its graph, a step deeper each window: the kind's count of saved
    tensors changes, the holder (the key) does not."""
    weight = torch.ones(64, requires_grad=True)
    depth = [0]

    def keep() -> None:
        global OUT
        depth[0] += 1
        x = torch.ones(64) * weight
        for _ in range(depth[0]):
            x = x.exp()
        OUT = x.sum()

    meter = LoopMeter("step", "warn", None, "cpu", 0)
    kinds: list[str | None] = []
    original = meter.judge

    def judge(report: vramguard.SessionReport) -> None:
        kinds.extend(g.owner_kind for g in report.leak_groups)
        original(report)

    meter.judge = judge  # type: ignore[method-assign]
    global OUT
    try:
        caught = windows(meter, 3, keep)
    finally:
        OUT = None
    assert len(set(kinds)) == 3 and all(k and k.startswith("output with its autograd graph, ") for k in kinds), kinds
    leaks = [str(w.message) for w in caught if issubclass(w.category, vramguard.LeakWarning)]
    assert len(leaks) == 1, leaks
    assert f"held by global {__name__}.OUT" in leaks[0]


def test_release_order_violations_are_warned_once_per_call_site() -> None:
    held: dict[str, object] = {}

    def cache_first() -> None:
        held["model"] = torch.nn.Linear(512, 512)
        vramguard.empty_cache("cpu")  # before the reference goes: returns nothing
        held.clear()

    meter = LoopMeter("step", "warn", None, "cpu", 0)
    caught = windows(meter, 2, cache_first)
    order = [str(w.message) for w in caught if issubclass(w.category, vramguard.ReleaseOrderWarning)]
    assert len(order) == 1, order
    assert "empty_cache() at " in order[0] and "cache_first" in order[0]


def test_every_n_and_epoch_windows() -> None:
    meter = LoopMeter(3, "ignore", None, "cpu", 0)
    assert [meter.window_ends(s, epoch_end=False) for s in range(1, 7)] == [False, False, True] * 2
    assert not meter.window_ends(3, epoch_end=True)
    epoch = LoopMeter("epoch", "ignore", None, "cpu", 0)
    assert epoch.window_ends(5, epoch_end=True) and not epoch.window_ends(5, epoch_end=False)


def test_max_peak_raises_at_the_window_end() -> None:
    meter = LoopMeter("step", "ignore", "1 MiB", "cpu", 0)
    meter.begin_train("step 1")
    big = torch.ones(8 * 2**20)  # 32 MiB at the peak
    del big
    with pytest.raises(vramguard.PeakExceeded):
        meter.end_train(())
