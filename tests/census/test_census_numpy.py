"""numpy arrays on the host: an array the block allocated and kept after the tensor wrapping its
memory (``torch.from_numpy``, ``as_tensor``, ``asarray``) was dropped is a leak of its bytes,
named by its holder; an array older than the block, one dropped in time, a view of a kept one
and an array sharing a tensor's memory (``tensor.numpy()``) are each counted once or not at all."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vramguard import SessionReport, gpu_session
from vramguard.census import _converted, _numpy_alloc

np = pytest.importorskip("numpy")

ARR: Any = None
VIEW: Any = None
KEPT: list[Any] = []
DATA = np.ones((128, 256), dtype=np.float32)  # older than every block: never the block's leak


@pytest.fixture(autouse=True)
def _drop_globals() -> Iterator[None]:
    yield
    global ARR, VIEW
    ARR = VIEW = None
    KEPT.clear()
    gc.collect()


def _report(report: SessionReport | None) -> SessionReport:
    assert report is not None
    return report


def _leak_lines(report: SessionReport) -> list[str]:
    return [line.strip() for line in str(report).splitlines() if line.strip().startswith("leak:")]


def test_an_array_kept_after_its_from_numpy_tensor_was_dropped_is_counted_and_named() -> None:
    global ARR
    with gpu_session("from_numpy", device="cpu", leaks="ignore") as s:
        a = np.ones((512, 512), dtype=np.float32)
        t = torch.from_numpy(a)
        t.mul_(2)
        ARR = a
        del t, a
    report = _report(s.report)
    (leak,) = report.leaks
    assert leak.nbytes == 512 * 512 * 4 == report.leaked_bytes
    assert leak.holders == (f"global {__name__}.ARR",)
    assert _leak_lines(report) == [f"leak: 1.00 MiB float32[512, 512] numpy array — held by global {__name__}.ARR"]


@pytest.mark.parametrize("convert", ["as_tensor", "asarray"])
def test_as_tensor_and_asarray_share_memory_too(convert: str) -> None:
    with gpu_session(convert, device="cpu", leaks="ignore") as s:
        a = np.zeros(4096, dtype=np.float64)
        getattr(torch, convert)(a).add_(1)
        KEPT.append(a)
        del a
    (leak,) = _report(s.report).leaks
    assert leak.nbytes == 4096 * 8
    assert leak.holders == (f"global {__name__}.KEPT[0]",)


def test_a_copy_is_no_leak_of_the_array() -> None:
    """``as_tensor`` to another dtype copies: the kept array never was a tensor's memory."""
    global ARR
    with gpu_session("copy", device="cpu", leaks="ignore") as s:
        a = np.ones(4096, dtype=np.float64)
        del_me = torch.as_tensor(a, dtype=torch.float32)
        ARR = a
        del del_me, a
    assert _report(s.report).leaks == ()


def test_an_array_kept_in_a_local_is_named_as_a_local() -> None:
    def infer() -> SessionReport | None:
        with gpu_session("local", device="cpu", leaks="ignore") as s:
            samples = np.ones(16384, dtype=np.float32)
            torch.from_numpy(samples).sum()
        assert samples.size == 16384
        return s.report

    (leak,) = _report(infer()).leaks
    (holder,) = leak.holders
    assert leak.nbytes == 16384 * 4
    assert holder.startswith("local 'samples' in "), holder


def test_an_array_that_does_not_survive_is_no_leak() -> None:
    with gpu_session("dropped", device="cpu", leaks="ignore") as s:
        a = np.ones((256, 256), dtype=np.float32)
        t = torch.from_numpy(a) + 1
        del a, t
    report = _report(s.report)
    assert report.leaks == ()
    assert report.leaked_bytes == 0


def test_an_array_older_than_the_block_is_never_its_leak() -> None:
    """The common loop over a dataset loaded before the session: converted every step, its
    tensors dropped, the array alive after the block (it was before too)."""
    with gpu_session("old", device="cpu", leaks="ignore") as s:
        for row in range(4):
            batch = torch.from_numpy(DATA)[row]
            del batch
        whole = torch.as_tensor(DATA[::2]).sum()
        del whole
    assert _report(s.report).leaks == ()


def test_a_view_of_a_kept_array_is_not_counted_twice() -> None:
    global ARR, VIEW
    with gpu_session("view", device="cpu", leaks="ignore") as s:
        a = np.ones((256, 256), dtype=np.float32)
        half = a[::2]
        torch.from_numpy(half).zero_()
        torch.from_numpy(a).add_(1)
        ARR, VIEW = a, half
        del a, half
    (leak,) = _report(s.report).leaks
    assert leak.nbytes == 256 * 256 * 4
    assert leak.description == "float32[256, 256] numpy array"
    assert f"global {__name__}.ARR" in leak.holders


def test_a_converted_view_kept_alone_names_its_holder() -> None:
    """The view holds the array owning the memory through ``base``: the whole owner is kept."""
    global VIEW
    with gpu_session("view alone", device="cpu", leaks="ignore") as s:
        VIEW = np.ones((256, 256), dtype=np.float32)[::4]
        torch.from_numpy(VIEW).zero_()
    (leak,) = _report(s.report).leaks
    assert leak.nbytes == 256 * 256 * 4
    assert leak.holders == (f"global {__name__}.VIEW",)


def test_an_array_whose_tensor_survives_is_counted_once_through_the_tensor() -> None:
    global ARR, VIEW
    with gpu_session("both", device="cpu", leaks="ignore") as s:
        a = np.ones((256, 256), dtype=np.float32)
        ARR, VIEW = a, torch.from_numpy(a)
        del a
    report = _report(s.report)
    (leak,) = report.leaks
    assert leak.nbytes == report.leaked_bytes == 256 * 256 * 4
    assert leak.holders == (f"global {__name__}.VIEW",)


def test_tensor_numpy_kept_in_a_global_is_counted_once_and_named() -> None:
    global ARR
    with gpu_session("tensor.numpy", device="cpu", leaks="ignore") as s:
        t = torch.ones(256, 256)
        ARR = t.numpy()
        round_trip = torch.from_numpy(ARR)  # the array's memory is the tensor's: no array of numpy's own
        del t, round_trip
    report = _report(s.report)
    (leak,) = report.leaks
    assert leak.nbytes == report.leaked_bytes == 256 * 256 * 4
    assert leak.holders == (f"global {__name__}.ARR (a numpy array sharing its memory)",)


def test_a_kept_array_is_not_a_leak() -> None:
    with gpu_session("kept", device="cpu", leaks="ignore") as s:
        a = s.keep(np.ones(8192, dtype=np.float32))
        torch.from_numpy(a).zero_()
        KEPT.append(a)
        del a
    assert _report(s.report).leaks == ()


def test_the_block_ends_with_numpy_and_torch_as_they_were() -> None:
    before = {name: getattr(torch, name) for name in _converted.WRAPPED}
    handler = np._core.multiarray.get_handler_name()
    with gpu_session("restored", device="cpu", leaks="ignore"):
        assert _converted.recording()
        assert np._core.multiarray.get_handler_name().startswith(_numpy_alloc.PREFIX)
        assert torch.from_numpy is not before["from_numpy"]
    assert not _converted.recording()
    assert {name: getattr(torch, name) for name in _converted.WRAPPED} == before
    assert np._core.multiarray.get_handler_name() == handler


def test_another_threads_arrays_are_not_the_blocks() -> None:
    """numpy's handler is set in the block's context only, and only its thread's conversions count."""
    made: list[Any] = []

    def worker() -> None:
        a = np.ones(8192, dtype=np.float32)
        torch.from_numpy(a).zero_()
        made.append(a)

    with gpu_session("thread", device="cpu", leaks="ignore") as s:
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
    assert len(made) == 1
    assert _report(s.report).leaks == ()


def test_an_array_from_an_earlier_block_is_not_the_next_ones_leak() -> None:
    """The first block made and kept it (its leak); the next one only converts it again."""
    global ARR
    with gpu_session("first", device="cpu", leaks="ignore") as first:
        ARR = np.ones(8192, dtype=np.float32)
        torch.from_numpy(ARR).zero_()
    with gpu_session("second", device="cpu", leaks="ignore") as second:
        torch.from_numpy(ARR).add_(1)
    assert [leak.nbytes for leak in _report(first.report).leaks] == [8192 * 4]
    assert _report(second.report).leaks == ()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shapes=st.lists(st.tuples(st.integers(1, 64), st.integers(1, 64)), min_size=1, max_size=5),
    keep=st.lists(st.booleans(), min_size=5, max_size=5),
)
def test_leaked_bytes_are_the_kept_arrays_bytes(shapes: list[tuple[int, int]], keep: list[bool]) -> None:
    KEPT.clear()
    with gpu_session("hypothesis", device="cpu", leaks="ignore") as s:
        for shape, kept in zip(shapes, keep, strict=False):
            a = np.full(shape, 3.0, dtype=np.float32)
            torch.from_numpy(a).neg_()
            if kept:
                KEPT.append(a)
            del a
    report = _report(s.report)
    expected = sum(a.nbytes for a in KEPT)
    assert report.leaked_bytes == expected
    assert sorted(leak.nbytes for leak in report.leaks) == sorted(a.nbytes for a in KEPT)
    assert all(leak.holders[0].startswith(f"global {__name__}.KEPT[") for leak in report.leaks)
    KEPT.clear()


def test_swapping_handlers_keeps_every_reference_count() -> None:
    """The handler swap takes over the reference numpy's set returns: neither the replaced
    handler nor the block's leaks or loses a reference, however many blocks run."""
    import sys

    api = _numpy_alloc._numpy_api()
    assert api is not None
    with gpu_session("warm", device="cpu", leaks="ignore"):
        pass
    capsule, _ = _numpy_alloc._free_handler(api)
    current = api.set(capsule)  # the thread's handler now, put back below
    api.set(current)
    counts = sys.getrefcount(current), sys.getrefcount(capsule)
    for _ in range(500):
        with gpu_session("swap", device="cpu", leaks="ignore"):
            pass
        previous = api.set(capsule)
        assert previous is current
        assert api.set(previous) is capsule
        del previous
    assert (sys.getrefcount(current), sys.getrefcount(capsule)) == counts
