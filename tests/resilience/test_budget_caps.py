"""The arithmetic of a CUDA hard budget, apart from the device: the cap bounds the block's
allocated peak, the fraction sets that cap to the byte, and hard budgets active at once (nested,
or in several threads) leave in any order and restore the fraction they found.

The CUDA edge (``set/get_per_process_memory_fraction``, the allocator's figures) cannot run
here: a fake allocator stands in for it, recording every fraction set."""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Iterator

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vramguard.core import _release
from vramguard.resilience import _budget
from vramguard.resilience._caps import FractionStack, fraction_for, plan_cap

MiB = 1024 * 1024
DEVICE_BYTES = 85_030_994_944  # an 80 GB-class device


@settings(max_examples=300)
@given(st.integers(1, 2**40), st.integers(0, 2**40))
def test_the_fraction_sets_the_cap_to_the_byte(total: int, cap: int) -> None:
    """torch keeps ``static_cast<size_t>(fraction * total)`` bytes: never below the cap."""
    fraction = fraction_for(cap, total)
    assert 0.0 <= fraction <= 1.0
    if cap >= total:
        assert fraction == 1.0
    else:
        assert cap <= int(fraction * float(total)) <= cap + 1


def test_a_budget_exactly_at_a_segment_boundary_is_not_a_byte_short() -> None:
    cap = 1270 * MiB  # e.g. 1206 MiB allocated + a budget of 64 MiB
    assert int((cap / DEVICE_BYTES) * float(DEVICE_BYTES)) < cap  # the plain quotient loses a byte here
    assert int(fraction_for(cap, DEVICE_BYTES) * float(DEVICE_BYTES)) == cap


@given(st.integers(0, 2**36), st.integers(0, 2**36), st.integers(0, 2**36))
def test_the_cap_bounds_the_allocated_peak_by_the_budget_or_the_slack(
    budget: int, allocated: int, free_in_segments: int
) -> None:
    """The allocator refuses a new segment past the cap and hands out free space in its
    segments unchecked, and allocated ≤ reserved: the peak above the start is at most
    max(reserved at entry, cap) − allocated at entry, which is the plan's bound."""
    plan = plan_cap(budget, allocated, allocated + free_in_segments)
    highest_reserved = max(plan.reserved_bytes, plan.cap_bytes)
    assert highest_reserved - allocated == plan.bound_bytes == max(budget, free_in_segments)
    assert plan.cap_bytes == allocated + budget
    if free_in_segments <= budget:
        assert plan.bound_bytes == budget  # the common case: the budget holds exactly


def test_without_a_reserved_figure_there_is_no_slack() -> None:
    plan = plan_cap(64 * MiB, 100 * MiB, None)  # cudaMallocAsync: the cap is checked on bytes in use
    assert (plan.slack_bytes, plan.bound_bytes, plan.cap_bytes) == (0, 64 * MiB, 164 * MiB)


@settings(max_examples=200)
@given(
    st.floats(0.05, 1.0),
    st.lists(st.floats(0.0, 1.0), min_size=1, max_size=8),
    st.randoms(use_true_random=False),
)
def test_any_order_of_leaving_ends_at_the_original_fraction(
    original: float, caps: list[float], order: random.Random
) -> None:
    """Invariant: the fraction in force is always the smallest of the original and the active
    caps, whatever the order budgets enter and leave in; the last to leave restores the original."""
    stack = FractionStack()
    active: dict[int, float] = {}
    pending = list(caps)
    in_force = original
    while pending or active:
        enter = bool(pending) and (not active or order.random() < 0.5)
        if enter:
            cap = pending.pop()
            token, in_force = stack.push(cap, in_force)
            active[token] = cap
        else:
            token = order.choice(sorted(active))
            del active[token]
            in_force = stack.pop(token)
        assert in_force == min([original, *active.values()])
        assert stack.effective() == (in_force if active else None)
    assert in_force == original
    assert stack.empty and stack.original is None


class FakeAllocator:
    """The device edge of ``CudaBudget``: figures read at entry and the fraction in force."""

    def __init__(self, total: int, fraction: float = 1.0) -> None:
        self.total = total
        self.fraction = fraction
        self.allocated = 0
        self.reserved = 0
        self.lock = threading.Lock()

    def figures(self, index: int) -> tuple[int, int, int | None]:
        return self.total, self.allocated, self.reserved

    def read(self, index: int) -> float:
        return self.fraction

    def write(self, fraction: float, index: int) -> None:
        with self.lock:
            self.fraction = fraction


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAllocator]:
    allocator = FakeAllocator(total=1024 * MiB)
    monkeypatch.setattr(_budget, "_entry_figures", allocator.figures)
    monkeypatch.setattr(_budget, "_read_fraction", allocator.read)
    monkeypatch.setattr(_budget, "_write_fraction", allocator.write)
    yield allocator
    assert _budget._STACKS == {}  # nothing left registered after every budget left


def cuda_budget(mib: int) -> _budget.CudaBudget:
    return _budget.CudaBudget(mib * MiB, torch.device("cuda", 0))


def test_two_threads_leaving_out_of_order_restore_the_fraction(fake: FakeAllocator) -> None:
    """Thread A enters, thread B enters, A leaves, B leaves: the fraction found before A comes
    back (the code before this fix restored A's cap when B left, for good)."""
    fake.fraction = 0.75  # e.g. PYTORCH_ALLOC_CONF=per_process_memory_fraction:0.75
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, float] = {}

    def thread_a() -> None:
        with cuda_budget(64):
            seen["a alone"] = fake.fraction
            a_in.set()
            b_in.wait()
            seen["both"] = fake.fraction
        a_out.set()

    def thread_b() -> None:
        a_in.wait()
        fake.allocated = fake.reserved = 64 * MiB  # A's allocations count in B's start
        with cuda_budget(256):
            b_in.set()
            a_out.wait()
            seen["b alone"] = fake.fraction

    threads = [threading.Thread(target=thread_a), threading.Thread(target=thread_b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen["a alone"] == fraction_for(64 * MiB, fake.total)
    assert seen["both"] == seen["a alone"]  # the smaller cap stays in force
    assert seen["b alone"] == fraction_for(320 * MiB, fake.total)
    assert fake.fraction == 0.75


def test_nested_budgets_restore_the_outer_cap_then_the_original(fake: FakeAllocator) -> None:
    with cuda_budget(512) as outer:
        assert fake.fraction == outer.fraction
        fake.allocated = fake.reserved = 100 * MiB
        with cuda_budget(1024):  # larger than what the outer leaves: the outer's cap holds
            assert fake.fraction == outer.fraction
        with cuda_budget(16) as inner:
            assert inner.fraction is not None and fake.fraction == inner.fraction < outer.fraction
        assert fake.fraction == outer.fraction
    assert fake.fraction == 1.0


def test_the_cap_is_allocated_plus_budget_whatever_the_free_space_in_segments(fake: FakeAllocator) -> None:
    fake.allocated, fake.reserved = 100 * MiB, 140 * MiB  # 40 MiB free inside partly used segments
    with cuda_budget(64) as budget:
        assert budget.plan is not None
        assert (budget.plan.cap_bytes, budget.plan.slack_bytes) == (164 * MiB, 40 * MiB)
        assert budget.fraction == fraction_for(164 * MiB, fake.total)  # not 140 + 64 MiB
    assert fake.fraction == 1.0


def test_an_exit_after_a_failed_write_leaves_nothing_registered(
    fake: FakeAllocator, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(fraction: float, index: int) -> None:
        raise RuntimeError("refused")

    monkeypatch.setattr(_budget, "_write_fraction", refuse)
    with pytest.raises(RuntimeError, match="refused"):
        cuda_budget(64).__enter__()


def test_the_budgets_own_empty_cache_is_torchs_not_the_census_wrapper(monkeypatch: pytest.MonkeyPatch) -> None:
    """An enclosing session's census wraps ``torch.cuda.empty_cache`` to catch a user emptying
    the cache too early; the budget empties it through the unwrapped function, so it is never
    taken for the user's call."""
    calls: list[str] = []

    class Properties:
        total_memory = 1024 * MiB

    def public() -> None:
        calls.append("public (the census would record an order violation)")

    monkeypatch.setattr(_budget, "cuda_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda index=None: calls.append("synchronize"))
    monkeypatch.setattr(torch.cuda, "device", lambda index: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "empty_cache", public)
    monkeypatch.setattr(_release, "_original_empty_cache", lambda: calls.append("raw"))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: Properties())
    figures = _budget._entry_figures(0)
    assert calls == ["synchronize", "raw"]
    assert figures == (1024 * MiB, 0, 0)  # torch's allocator figures: none before CUDA is initialised
