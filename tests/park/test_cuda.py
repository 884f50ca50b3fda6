"""The CUDA path: a pinned host copy, device memory returned (measured), waking across devices."""

from __future__ import annotations

import pytest
import torch

import vramguard
from tests.park.conftest import Zoo, checksum

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
