"""The CUDA path: a pinned host copy, device memory returned (measured), waking across devices;
issue 24's points 5 (the wake waits for the model's device) and 9 (one pinned buffer, returned)."""

from __future__ import annotations

import gc
import mmap
from pathlib import Path
from typing import Any

import pytest
import torch

import vramguard
from tests.parking.conftest import Zoo, checksum
from vramguard.probes import cuda_device_count, read_resident_peak, reset_resident_peak, resident_bytes

pytestmark = pytest.mark.gpu


def test_park_to_pinned_host_memory_returns_device_memory() -> None:
    model = torch.nn.Linear(1024, 4096).cuda()  # 16 MiB of weights
    before = checksum(model)
    parked = vramguard.park(model, to="cpu")
    assert parked.host and all(t.is_pinned() for t in parked.host)
    report = parked.report
    assert report is not None and report.allocated_freed_bytes is not None
    assert report.allocated_freed_bytes >= 16 * 2**20
    assert report.reserved_returned_bytes is not None and report.reserved_returned_bytes > 0
    woken = vramguard.wake(parked)
    assert woken.bandwidth_bytes_per_s is not None and woken.allocated_freed_bytes is not None
    assert woken.allocated_freed_bytes < 0  # memory taken back
    assert model.weight.is_cuda and checksum(model) == before


def test_pin_false_and_waking_onto_another_device() -> None:
    zoo = Zoo().cuda()
    before = checksum(zoo)
    parked = vramguard.park(zoo, pin=False)
    assert not any(t.is_pinned() for t in parked.host)
    vramguard.wake(parked, device="cpu")
    assert zoo.emb.weight.device.type == "cpu" and checksum(zoo) == before
    vramguard.wake(vramguard.park(zoo, to="disk"), device="cuda")
    assert zoo.emb.weight.is_cuda and zoo.head.weight is zoo.emb.weight and checksum(zoo) == before


class _Flat(torch.nn.Module):
    """Buffers of exact byte sizes on one device, filled so a missing byte shows."""

    def __init__(self, sizes_bytes: list[int], device: str) -> None:
        super().__init__()
        for index, size in enumerate(sizes_bytes):
            gen = torch.Generator(device=device).manual_seed(index)
            values = torch.randint(0, 256, (size,), dtype=torch.uint8, device=device, generator=gen)
            self.register_buffer(f"b{index}", values)


def _host_pinned_bytes() -> int | None:
    """Bytes of pinned blocks torch's pinned host allocator owns (active and cached), or None
    where this torch has no ``host_memory_stats`` (torch/cuda/memory.py:399-432)."""
    stats = getattr(torch.cuda.memory, "host_memory_stats", None)
    if stats is None:
        return None
    return int(stats().get("allocated_bytes.current", 0))


def _wake_waiting_on(model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[torch.device | None]]:
    """Park ``model``, wake it with non-blocking copies, and return the wake's report and every
    device ``torch.cuda.synchronize`` was called with during the wake (None: a bare call)."""
    parked = vramguard.park(model)
    waited: list[torch.device | None] = []
    real = torch.cuda.synchronize

    def spy(device: torch.device | int | str | None = None) -> None:
        waited.append(
            None
            if device is None
            else torch.device("cuda", device)
            if isinstance(device, int)
            else torch.device(device)
        )
        real(device)

    monkeypatch.setattr(torch.cuda, "synchronize", spy)
    try:
        report = vramguard.wake(parked, non_blocking=True)
    finally:
        monkeypatch.undo()
    return report, waited


@pytest.mark.skipif(cuda_device_count() < 2, reason="needs two CUDA devices: the model on cuda:1, cuda:0 current")
def test_gpu_point05_wake_waits_for_the_models_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model on cuda:1 while cuda:0 is current: the wake waits for cuda:1 (by name), so when it
    returns nothing is still copying there. Before the fix it waited for cuda:0 only, and 1 GiB
    of non-blocking copies (tens of ms) was still running on cuda:1's stream."""
    torch.cuda.set_device(0)
    model = _Flat([2**29, 2**29], "cuda:1")
    expected = {name: b.cpu() for name, b in model.named_buffers()}
    report, waited = _wake_waiting_on(model, monkeypatch)
    assert torch.cuda.current_stream(1).query(), "copies still running on cuda:1 after wake returned"
    assert torch.cuda.current_device() == 0
    assert torch.device("cuda", 1) in waited and None not in waited
    assert report.device == "cuda:1" and report.duration_s > 0
    for name, b in model.named_buffers():
        assert b.device == torch.device("cuda", 1) and torch.equal(b.cpu(), expected[name]), name


def test_gpu_point05_wake_names_the_device_it_waits_for_on_one_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same point on a one-GPU machine: the wake waits for the model's device by name, never
    through a bare ``synchronize()`` (the current device), and the copies are done when it returns."""
    model = _Flat([2**26, 2**26], "cuda:0")
    expected = {name: b.cpu() for name, b in model.named_buffers()}
    _, waited = _wake_waiting_on(model, monkeypatch)
    assert torch.cuda.current_stream(0).query(), "copies still running after wake returned"
    assert torch.device("cuda", 0) in waited and None not in waited
    for name, b in model.named_buffers():
        assert torch.equal(b.cpu(), expected[name]), name


def test_gpu_point09_one_pinned_buffer_of_the_sum_returned_on_wake() -> None:
    """Storages of 1.1 and 0.6 x 128 MiB: the park pins one buffer of their sum (plus alignment),
    not 256 + 128 MiB of power-of-two blocks from torch's pinned allocator; the wake unpins it,
    leaves that allocator's bytes where they were, and gives the memory back."""
    sizes = [int(1.1 * 2**27), int(0.6 * 2**27)]
    slack = len(sizes) * 512 + 2 * mmap.PAGESIZE
    model = _Flat(sizes, "cuda")
    expected = {name: b.cpu() for name, b in model.named_buffers()}
    torch.cuda.synchronize()
    host_before = _host_pinned_bytes()

    parked = vramguard.park(model)
    assert parked.host and all(t.is_pinned() for t in parked.host)
    assert len({t.untyped_storage().data_ptr() for t in parked.host}) == 1, "one buffer for every storage"
    buffer = parked.host[0].untyped_storage()
    assert sum(sizes) <= buffer.nbytes() <= sum(sizes) + slack
    host_after_park = _host_pinned_bytes()
    if host_before is not None and host_after_park is not None:
        # Nothing from torch's pinned allocator (each storage would be a rounded, cached block).
        assert host_after_park - host_before < slack
    kept = parked.host[0]
    vramguard.wake(parked)
    assert not kept.is_pinned(), "the buffer is still pinned after the wake"
    host_after_wake = _host_pinned_bytes()
    if host_before is not None and host_after_wake is not None:
        assert host_after_wake - host_before < slack
    del kept, buffer
    for name, b in model.named_buffers():
        assert b.is_cuda and torch.equal(b.cpu(), expected[name]), name

    # And the memory itself goes back: the resident set drops by the buffer once woken.
    parked = vramguard.park(model)
    parked_rss = _rss()
    vramguard.wake(parked)
    assert parked_rss - _rss() > 0.9 * sum(sizes)


def test_gpu_point09_waking_a_pinned_park_onto_the_host_copies_out_of_the_buffer() -> None:
    model = _Flat([3000, 5000], "cuda")
    expected = {name: b.cpu() for name, b in model.named_buffers()}
    parked = vramguard.park(model)
    kept = parked.host[0]
    vramguard.wake(parked, device="cpu")
    assert not kept.is_pinned()
    for name, b in model.named_buffers():
        assert b.device.type == "cpu" and torch.equal(b, expected[name]), name
        assert b.untyped_storage().data_ptr() != kept.untyped_storage().data_ptr()


def test_gpu_disk_park_from_cuda_streams_through_a_bounded_host_buffer(tmp_path: Path) -> None:
    """1 GiB on the device parked to disk: the resident peak grows by about one staging buffer
    (64 MiB), not by a host copy of every storage held at once."""
    if not reset_resident_peak():
        pytest.skip("the resident high-water mark cannot be reset here (/proc/self/clear_refs)")
    model = _Flat([2**28] * 4, "cuda")
    expected = {name: b.cpu() for name, b in model.named_buffers()}
    gc.collect()
    assert reset_resident_peak()
    start = read_resident_peak()
    parked = vramguard.park(model, to="disk", path=tmp_path / "m.safetensors")
    peak = read_resident_peak()
    assert start.rss_bytes is not None and peak.hwm_bytes is not None
    assert peak.hwm_bytes - start.rss_bytes < 256 * 2**20
    vramguard.wake(parked)
    for name, b in model.named_buffers():
        assert b.is_cuda and torch.equal(b.cpu(), expected[name]), name


def _rss() -> int:
    gc.collect()
    reading = resident_bytes()
    assert reading is not None
    return reading[0]
