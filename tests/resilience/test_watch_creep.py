"""``vramguard.watch``: the creep watchdog calls back, with what is new since the baseline and
who holds it, when memory grows past the bound; ``check()`` samples now, so nothing sleeps."""

from __future__ import annotations

import math
import threading

import pytest
import torch

import vramguard
from vramguard.resilience import Growth
from vramguard.resilience._watch import parse_duration

MiB = 1024 * 1024


def test_growth_past_the_bound_calls_back_with_the_new_tensors_and_their_holders() -> None:
    seen: list[Growth] = []
    watcher = vramguard.watch(every="1 h", max_growth="4 MiB", on_growth=seen.append, device="cpu", start=False)
    small = torch.ones(MiB // 4)  # 1 MiB: under the bound
    assert watcher.check() is None and seen == []
    creeping_cache = torch.ones(16 * MiB // 4)
    growth = watcher.check()
    assert growth is not None and seen == [growth] and watcher.growths == 1
    assert growth.growth_bytes > 4 * MiB and growth.current_bytes - growth.baseline_bytes == growth.growth_bytes
    assert growth.new_tensor_bytes >= 17 * MiB
    largest = growth.new_tensors[0]
    assert largest.nbytes == 16 * MiB and largest.description == "float32[4194304] cpu"
    assert any("creeping_cache" in holder for holder in largest.holders), largest.holders
    assert "grew by" in str(growth) and "creeping_cache" in str(growth)
    # The baseline moved to the growth: the same memory does not call back again.
    assert watcher.check() is None and len(seen) == 1
    del small, creeping_cache


def test_memory_that_came_and_went_is_not_growth() -> None:
    seen: list[Growth] = []
    watcher = vramguard.watch(max_growth="4 MiB", on_growth=seen.append, device="cpu", start=False)
    for _ in range(3):
        passing = torch.ones(16 * MiB // 4)
        del passing
        assert watcher.check() is None
    assert seen == []


def test_the_thread_samples_on_its_own_and_stops() -> None:
    fired = threading.Event()
    held = torch.ones(1)
    with vramguard.watch(every=0.01, max_growth="1 MiB", on_growth=lambda g: fired.set(), device="cpu") as watcher:
        assert watcher.running
        held = torch.ones(8 * MiB // 4)
        assert fired.wait(timeout=60)
    assert not watcher.running
    assert not [t for t in threading.enumerate() if t.name == "vramguard-watch"]
    watcher.stop()  # a second stop is harmless
    del held


@pytest.mark.parametrize(
    ("text", "seconds"), [("30 s", 30.0), ("500 ms", 0.5), ("2 min", 120.0), ("1 h", 3600.0), (5, 5.0)]
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text, argument="every") == seconds


@pytest.mark.parametrize("bad", ["soon", "", 0, -1, True, float("nan"), math.inf, "1e999 s", "9" * 5000, None, [30]])
def test_bad_intervals_name_the_argument(bad: object) -> None:
    with pytest.raises(vramguard.InvalidArgument, match="invalid every="):
        vramguard.watch(every=bad, on_growth=print, device="cpu", start=False)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "argument"),
    [
        ({"max_growth": "lots"}, "max_growth"),
        ({"on_growth": 5}, "on_growth"),
        ({"metric": "vram"}, "metric"),
        ({"start": "yes"}, "start"),
    ],
)
def test_bad_options_name_the_argument(options: dict[str, object], argument: str) -> None:
    arguments: dict[str, object] = {"on_growth": print, "device": "cpu", "start": False, **options}
    with pytest.raises(vramguard.InvalidArgument, match=f"invalid {argument}="):
        vramguard.watch(**arguments)  # type: ignore[arg-type]
