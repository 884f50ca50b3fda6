"""``gpu_session(max_peak=..., hard=True)``: an allocation past the budget fails inside the
block (host: the op is refused with ``BudgetExceeded``; CUDA: the allocator is capped), and
the cap is gone after the block, however it ended."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import vramguard

MiB = 1024 * 1024
FLOATS_PER_MIB = MiB // 4


def hard(budget: str, device: str = "cpu") -> vramguard.GpuSession:
    return vramguard.gpu_session(device=device, max_peak=budget, hard=True, leaks="ignore", census=False)


def test_an_allocation_past_the_budget_fails_in_the_block() -> None:
    with pytest.raises(vramguard.BudgetExceeded) as caught, hard("8 MiB"):
        first = torch.zeros(4 * FLOATS_PER_MIB)
        second = torch.zeros(4 * FLOATS_PER_MIB)  # exactly at the budget: allowed
        torch.zeros(FLOATS_PER_MIB)
    error = caught.value
    assert isinstance(error, MemoryError)
    assert (error.budget_bytes, error.requested_bytes, error.in_use_bytes) == (8 * MiB, MiB, 8 * MiB)
    assert "past its max_peak of 8.00 MiB" in str(error)
    assert any("vramguard report for the failed block" in note for note in error.__notes__)
    del first, second
    assert torch.zeros(64 * FLOATS_PER_MIB).numel() == 64 * FLOATS_PER_MIB  # no cap after the block


def test_freed_storages_views_and_in_place_ops_do_not_count() -> None:
    with hard("8 MiB") as session:
        for _ in range(10):
            step = torch.ones(6 * FLOATS_PER_MIB)
            del step  # rebinding alone would hold two steps at once: 12 MiB
        step = torch.ones(6 * FLOATS_PER_MIB)
        view = step.view(-1, 4)[::2]
        step.add_(1).mul_(2)
        total = float(view.sum())
        del step, view
    assert total == 4.0 * 6 * FLOATS_PER_MIB / 2  # every other row of four: half the values, each 4
    assert session.report is not None and session.report.raised is None


def test_a_model_that_does_not_fit_fails_its_forward_and_the_block_can_run_again() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(256, 4096), torch.nn.ReLU(), torch.nn.Linear(4096, 256))
    batch = torch.randn(512, 256)  # the 512 x 4096 activation alone is 8 MiB
    with pytest.raises(vramguard.BudgetExceeded), torch.no_grad(), hard("4 MiB"):
        model(batch)
    with torch.no_grad(), hard("4 MiB"):
        out = model(batch[:64])
    assert out.shape == (64, 256)


def test_the_report_is_not_judged_again_on_the_host() -> None:
    # The budget counted 8 MiB exactly; the report's resident peak also counts interpreter pages.
    with hard("8 MiB") as session:
        kept = torch.ones(8 * FLOATS_PER_MIB)
    assert session.report is not None and kept.numel() == 8 * FLOATS_PER_MIB
    assert session.options.max_peak_bytes == 8 * MiB  # the options stay as given


def test_hard_needs_a_budget_and_a_bool() -> None:
    with pytest.raises(vramguard.InvalidArgument, match="max_peak"):
        vramguard.gpu_session(device="cpu", hard=True)
    with pytest.raises(vramguard.InvalidArgument, match="invalid hard="):
        vramguard.gpu_session(device="cpu", max_peak="1 MiB", hard=1)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 6), st.booleans()), min_size=1, max_size=12), st.integers(1, 16))
def test_refusal_is_exact_accounting_of_the_live_storages(steps: list[tuple[int, bool]], budget_mib: int) -> None:
    """Invariant: an allocation is refused exactly when live block storages + it > budget."""
    live: list[torch.Tensor] = []
    with hard(f"{budget_mib} MiB"):
        for mib, keep in steps:
            in_use = sum(t.untyped_storage().nbytes() for t in live)
            expect_refusal = in_use + mib * MiB > budget_mib * MiB
            if expect_refusal:
                with pytest.raises(vramguard.BudgetExceeded) as refused:
                    torch.empty(mib * FLOATS_PER_MIB)
                assert refused.value.in_use_bytes == in_use
                continue
            tensor = torch.empty(mib * FLOATS_PER_MIB)
            if keep:
                live.append(tensor)
            del tensor
    live.clear()


@pytest.mark.gpu
def test_cuda_caps_the_allocator_and_restores_it_after_an_exception() -> None:
    before = torch.cuda.get_per_process_memory_fraction(0)
    with pytest.raises(torch.OutOfMemoryError), hard("64 MiB", "cuda"):
        assert torch.cuda.get_per_process_memory_fraction(0) < before
        small = torch.empty(32 * MiB, dtype=torch.uint8, device="cuda")
        torch.empty(256 * MiB, dtype=torch.uint8, device="cuda")
    del small
    assert torch.cuda.get_per_process_memory_fraction(0) == before
    big = torch.empty(256 * MiB, dtype=torch.uint8, device="cuda")
    assert big.numel() == 256 * MiB


def _free_space_in_a_partly_used_segment(free_mib: int, used_mib: int) -> torch.Tensor:
    """Leave ``free_mib`` free inside a segment that a live tensor of ``used_mib`` keeps: a
    segment of both sizes is cached, then split by the smaller request (best fit), so
    ``empty_cache`` cannot return it."""
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    whole = torch.empty((free_mib + used_mib) * MiB, dtype=torch.uint8, device="cuda")
    del whole
    kept = torch.empty(used_mib * MiB, dtype=torch.uint8, device="cuda")
    torch.cuda.empty_cache()
    return kept


@pytest.mark.gpu
def test_gpu_point06_free_space_in_older_segments_does_not_stretch_the_budget() -> None:
    """The cap was reserved-at-entry + budget: 40 MiB free inside a segment that an older tensor
    keeps was handed out on top, so the block held 96 MiB under a 64 MiB budget and ended with
    PeakExceeded at exit. Now the allocator refuses inside the block before 64 MiB."""
    before = torch.cuda.get_per_process_memory_fraction(0)
    kept = _free_space_in_a_partly_used_segment(free_mib=40, used_mib=20)
    slack = torch.cuda.memory_reserved() - torch.cuda.memory_allocated()
    assert 40 * MiB <= slack <= 64 * MiB  # the set-up held: free space in a segment in use
    held: list[torch.Tensor] = []
    peak = 0
    with pytest.raises(torch.OutOfMemoryError), hard("64 MiB", "cuda") as session:
        for _ in range(16):  # 256 MiB in all
            held.append(torch.empty(16 * MiB, dtype=torch.uint8, device="cuda"))
            peak = len(held) * 16 * MiB
    assert 0 < peak <= 64 * MiB
    assert session.report is not None and session.report.raised is not None
    held.clear()
    del kept
    assert torch.cuda.get_per_process_memory_fraction(0) == before


@pytest.mark.gpu
def test_gpu_point06_two_threads_budgets_leaving_out_of_order_restore_the_fraction() -> None:
    """A enters, B enters, A leaves, B leaves. Each used to restore what it found, so B put back
    A's cap and the process stayed capped for good."""
    import threading

    before = torch.cuda.get_per_process_memory_fraction(0)
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, float] = {}
    errors: list[BaseException] = []

    def guarded(body: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                body()
            except BaseException as error:  # re-raised in the test's thread
                errors.append(error)
                for event in (a_in, b_in, a_out):  # the other thread must not wait for ever
                    event.set()

        return run

    def thread_a() -> None:
        with hard("64 MiB", "cuda"):
            a_in.set()
            b_in.wait()
            seen["both"] = torch.cuda.get_per_process_memory_fraction(0)
        a_out.set()

    def thread_b() -> None:
        a_in.wait()
        with hard("256 MiB", "cuda"):
            b_in.set()
            a_out.wait()
            seen["b alone"] = torch.cuda.get_per_process_memory_fraction(0)
            torch.empty(128 * MiB, dtype=torch.uint8, device="cuda")  # fits B's budget, not A's

    threads = [threading.Thread(target=guarded(thread_a)), threading.Thread(target=guarded(thread_b))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert seen["both"] < seen["b alone"] < before
    assert torch.cuda.get_per_process_memory_fraction(0) == before
