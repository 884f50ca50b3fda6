"""``adaptive_batch`` on the host, against a real hard budget that makes real allocations fail:
it shrinks on out-of-memory (recognised by type), frees the failed attempt first, remembers
and grows back, and gives up below ``min`` with the original error and the attempts."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import weakref

import pytest
import torch

import vramguard

ROW = 64 * 1024  # float32 values per row: 256 KiB
BUDGET = "10 MiB"  # 40 rows fit; 64 rows (16 MiB) do not


def run_rows(batch_size: int, width: int = ROW) -> float:
    """One step: ``batch_size`` rows, inside a hard host budget."""
    with vramguard.gpu_session(device="cpu", max_peak=BUDGET, hard=True, leaks="ignore", census=False):
        batch = torch.ones(batch_size, width)
        return float(batch[:, 0].sum())


def test_it_shrinks_to_the_size_that_fits_and_remembers_it() -> None:
    calls: list[int] = []

    @vramguard.adaptive_batch(start=64, device="cpu")
    def step(batch_size: int) -> float:
        calls.append(batch_size)
        return run_rows(batch_size)

    assert step() == 32.0
    assert calls == [64, 32]
    assert step.batch_sizes() == {step.batch_sizes().popitem()[0]: 32}  # type: ignore[attr-defined]
    assert step() == 32.0
    assert calls == [64, 32, 32]  # the size that worked is tried first


def test_each_key_learns_its_own_size_and_grows_back_after_successes() -> None:
    calls: list[tuple[int, int]] = []

    @vramguard.adaptive_batch(start=64, grow_after=2, key=lambda width: width, device="cpu")
    def step(batch_size: int, width: int) -> float:
        calls.append((width, batch_size))
        return run_rows(batch_size, width)

    step(ROW)  # 64 fails, 32 fits
    step(ROW // 8)  # 64 rows of 32 KiB fit at once
    assert step.batch_sizes() == {ROW: 32, ROW // 8: 64}  # type: ignore[attr-defined]
    step(ROW)  # second success at 32
    calls.clear()
    step(ROW)  # two successes: try one step larger, fail, come back
    assert calls == [(ROW, 64), (ROW, 32)]


def test_the_failed_attempts_activations_are_freed_before_the_retry(caplog: pytest.LogCaptureFixture) -> None:
    refs: list[weakref.ref[torch.Tensor]] = []
    alive_at_retry: list[bool] = []

    @vramguard.adaptive_batch(start=64, device="cpu")
    def step(batch_size: int) -> None:
        if refs:
            alive_at_retry.append(refs[0]() is not None)
        with vramguard.gpu_session(device="cpu", max_peak=BUDGET, hard=True, leaks="ignore", census=False):
            activation = torch.ones(batch_size // 2, ROW)  # held by this frame when the next line fails
            refs.append(weakref.ref(activation))
            torch.ones(batch_size // 2 + 1, ROW)

    with caplog.at_level(logging.WARNING, logger="vramguard.resilience"):
        step()
    assert alive_at_retry == [False]
    assert "out of memory at batch_size=64 (BudgetExceeded)" in caplog.text
    assert "retrying at batch_size=32" in caplog.text and "allocated" in caplog.text


def test_below_min_the_original_error_comes_with_the_attempts() -> None:
    @vramguard.adaptive_batch(start=64, min=8, device="cpu")
    def step(batch_size: int) -> float:
        return run_rows(batch_size * 8)  # never fits

    with pytest.raises(vramguard.BudgetExceeded) as caught:
        step()
    assert caught.value.attempts == (64, 32, 16, 8)  # type: ignore[attr-defined]
    assert any("64, 32, 16, 8; min=8" in note for note in caught.value.__notes__)


def test_an_error_is_recognised_by_its_type_never_by_its_text() -> None:
    calls: list[int] = []

    @vramguard.adaptive_batch(start=64, device="cpu")
    def step(batch_size: int) -> None:
        calls.append(batch_size)
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with pytest.raises(RuntimeError, match="out of memory"):
        step()
    assert calls == [64]


def test_async_functions_shrink_the_same_way() -> None:
    calls: list[int] = []

    @vramguard.adaptive_batch(start=64, device="cpu")
    async def step(batch_size: int) -> float:
        calls.append(batch_size)
        await asyncio.sleep(0)
        return run_rows(batch_size)

    assert inspect.iscoroutinefunction(step)
    assert asyncio.run(step()) == 32.0
    assert calls == [64, 32]


def test_signature_wraps_and_partial_application_keep_every_argument() -> None:
    def scaled(batch_size: int, width: int, *, scale: float = 1.0) -> float:
        """Docstring kept."""
        return run_rows(batch_size, width) * scale

    step = vramguard.adaptive_batch(start=64, device="cpu")(scaled)
    assert list(inspect.signature(step).parameters) == ["width", "scale"]
    assert step.__doc__ == "Docstring kept." and step.__name__ == "scaled"
    assert functools.partial(step, ROW, scale=2.0)() == 64.0  # the decorated function, partially applied
    bound = vramguard.adaptive_batch(functools.partial(scaled, scale=3.0), start=64, device="cpu")
    assert bound(ROW) == 96.0  # a partial, decorated
    with pytest.raises(vramguard.InvalidArgument, match="batch_size"):
        step(ROW, batch_size=4)


@pytest.mark.parametrize(
    ("options", "argument"),
    [
        ({"start": 0}, "start"),
        ({"start": True}, "start"),
        ({"min": 65}, "min"),
        ({"shrink": 1}, "shrink"),
        ({"shrink": "half"}, "shrink"),
        ({"grow_after": 0}, "grow_after"),
        ({"key": 5}, "key"),
    ],
)
def test_bad_options_name_the_argument(options: dict[str, object], argument: str) -> None:
    with pytest.raises(vramguard.InvalidArgument, match=f"invalid {argument}="):
        vramguard.adaptive_batch(**options)  # type: ignore[call-overload]


def test_a_batch_size_passed_positionally_is_named() -> None:
    @vramguard.adaptive_batch(start=8, device="cpu")
    def run(batch_size: int, data: list[int], scale: float = 1.0) -> int:
        return batch_size

    assert run([1, 2]) == 8 and run([1], 2.0) == 8
    with pytest.raises(vramguard.InvalidArgument) as info:
        run(64, [1, 2], 2.0)  # the batch size first, as to the undecorated function
    message = str(info.value)
    assert "batch_size=64" in message and "run(data, scale)" in message
    assert "positional arguments" not in message


def test_a_function_without_a_batch_size_parameter_is_refused() -> None:
    with pytest.raises(vramguard.InvalidArgument, match="first parameter"):
        vramguard.adaptive_batch(lambda: None)
    with pytest.raises(vramguard.InvalidArgument, match="fn"):
        vramguard.adaptive_batch(5)  # type: ignore[call-overload]


@pytest.mark.gpu
def test_a_real_cuda_out_of_memory_shrinks_the_batch() -> None:
    calls: list[int] = []

    @vramguard.adaptive_batch(start=64, device="cuda")
    def step(batch_size: int) -> float:
        calls.append(batch_size)
        with vramguard.gpu_session(device="cuda", max_peak="64 MiB", hard=True, leaks="ignore", census=False):
            batch = torch.ones(batch_size, 256 * 1024, device="cuda")  # 1 MiB a row
            return float(batch[:, 0].sum())

    assert step() == 32.0
    assert calls == [64, 32]
