"""The host side of a park from CUDA, without a GPU: the one buffer's layout (issue 24, point 9),
its pinning and unpinning through a recording registrar, and the wake's wait on every device
by name (point 5), with torch's CUDA calls replaced at the edge."""

from __future__ import annotations

import gc
import itertools
import mmap

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import vramguard
from vramguard.parking import _park
from vramguard.parking._pinned import ALIGNMENT_BYTES, HostBuffer, pack


@given(
    st.lists(st.integers(0, 3 * 2**20), max_size=40),
    st.sampled_from([1, 8, 64, ALIGNMENT_BYTES, 4096]),
)
def test_every_storage_fits_aligned_without_overlap_and_nothing_is_rounded(sizes: list[int], alignment: int) -> None:
    packing = pack(sizes, alignment)
    assert len(packing.offsets_bytes) == len(sizes)
    assert all(offset % alignment == 0 for offset in packing.offsets_bytes)
    spans = sorted(zip(packing.offsets_bytes, sizes, strict=True))
    for (start, size), (next_start, _) in itertools.pairwise(spans):
        assert start + size <= next_start  # no overlap
    assert all(start + size <= packing.total_bytes for start, size in spans)
    # The sum plus less than one alignment per storage: never a power-of-two rounding.
    padding = packing.total_bytes - sum(sizes)
    assert 0 <= padding < max(1, len(sizes) * alignment)


def test_a_storage_just_over_a_power_of_two_is_not_rounded_up() -> None:
    size = int(1.1 * 2**30)
    assert pack([size]).total_bytes == size
    assert pack([size, size]).total_bytes < 2 * size + ALIGNMENT_BYTES


@pytest.mark.parametrize("alignment", [0, 3, -8, 1.5])
def test_alignment_must_be_a_power_of_two(alignment: object) -> None:
    with pytest.raises(vramguard.InvalidArgument, match="alignment_bytes"):
        pack([1], alignment)  # type: ignore[arg-type]


class Recorder:
    """A registrar that records what it was asked to pin, and fails when told to."""

    def __init__(self, error: int = 0) -> None:
        self.error = error
        self.calls: list[tuple[str, int, int]] = []

    def register(self, address: int, nbytes: int) -> int:
        self.calls.append(("register", address, nbytes))
        return self.error

    def unregister(self, address: int) -> int:
        self.calls.append(("unregister", address, 0))
        return 0


def test_the_buffer_pins_whole_pages_of_its_own_once_and_unpins_them_once() -> None:
    recorder = Recorder()
    total = 3 * mmap.PAGESIZE + 100
    buffer = HostBuffer(total, recorder)
    assert buffer.pinned and buffer.data.numel() == total
    [(kind, address, nbytes)] = recorder.calls
    assert kind == "register" and address % mmap.PAGESIZE == 0 and nbytes % mmap.PAGESIZE == 0
    # The registered range covers the buffer and lies inside its own allocation.
    start = buffer.data.data_ptr()
    allocation = buffer.data.untyped_storage()
    assert address == start and address + nbytes >= start + total
    assert allocation.data_ptr() <= address and address + nbytes <= allocation.data_ptr() + allocation.nbytes()
    buffer.release()
    buffer.release()
    assert recorder.calls[1:] == [("unregister", address, 0)] and not buffer.pinned


def test_a_dropped_buffer_is_unpinned() -> None:
    """A model dropped while parked takes its handle and buffer with it: the pages are unpinned."""
    recorder = Recorder()
    buffer = HostBuffer(mmap.PAGESIZE, recorder)
    del buffer
    gc.collect()
    assert [kind for kind, _, _ in recorder.calls] == ["register", "unregister"]


def test_a_failed_registration_leaves_a_pageable_buffer_and_nothing_to_unpin() -> None:
    recorder = Recorder(error=712)
    buffer = HostBuffer(2 * mmap.PAGESIZE, recorder)
    assert not buffer.pinned and buffer.error == 712
    buffer.release()
    del buffer
    gc.collect()
    assert [kind for kind, _, _ in recorder.calls] == ["register"]


def test_wake_waits_for_each_cuda_device_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point 5's logic: ``torch.cuda.synchronize()`` with no device waits for the current one only,
    so the devices copied to are each named; the host is never waited for."""
    waited: list[object] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: waited.append(device))
    devices = [torch.device("cuda", 1), torch.device("cpu"), torch.device("cuda", 1), torch.device("cuda", 0)]
    assert _park.synchronize(devices) == [torch.device("cuda", 1), torch.device("cuda", 0)]
    assert waited == [torch.device("cuda", 1), torch.device("cuda", 0)]
    assert None not in waited


def test_a_host_park_never_touches_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object) -> None:
        raise AssertionError("a CUDA call for a model on the host")

    monkeypatch.setattr(torch.cuda, "synchronize", refuse)
    monkeypatch.setattr(torch.cuda, "is_available", refuse)  # cuInit: never, not even to ask
    monkeypatch.setattr(_park, "cuda_available", refuse)
    model = torch.nn.Linear(4, 4)
    parked = vramguard.park(model)
    assert parked.host_buffer is None and len(parked.host) == 2
    vramguard.wake(parked)
    assert model.weight.shape == (4, 4)
