"""Which CUDA device a distributed session's gather selects (issue 24, point 4): torch runs an
NCCL object collective on the current device, so the gather must select the session's. Pure
logic, fed the (backend, session devices, current device) a rank would have."""

from __future__ import annotations

import pytest
import torch
from cluster_factories import session

import vramguard
from vramguard.core._multi_report import MultiDeviceReport
from vramguard.distributed._gather import _session_devices, gather_device, object_collective_on_cuda


@pytest.mark.parametrize(
    ("backend", "on_cuda"),
    [
        ("nccl", True),
        ("NCCL", True),
        ("gloo", False),
        ("mpi", False),
        ("undefined", False),  # no backend named: cpu:gloo beside cuda:nccl, and torch prefers the CPU
        ("cpu:gloo,cuda:nccl", False),
        ("cuda:nccl,cpu:gloo", False),
        ("cuda:nccl", True),
    ],
)
def test_the_object_collective_s_device_follows_torch_s_rules(backend: str, on_cuda: bool) -> None:
    assert object_collective_on_cuda(backend) is on_cuda


@pytest.mark.parametrize(
    ("backend", "devices", "current", "expected"),
    [
        # A rank that never called set_device: current is 0, its session is on cuda:1.
        ("nccl", ("cuda:1",), 0, "cuda:1"),
        ("nccl", ("cuda:1",), None, "cuda:1"),
        ("nccl", ("cuda:0",), 0, "cuda:0"),
        # device="all": the device the user selected, if it is one of the session's...
        ("nccl", ("cuda:0", "cuda:1"), 1, "cuda:1"),
        # ...else the session's first.
        ("nccl", ("cuda:2", "cuda:3"), 0, "cuda:2"),
        ("nccl", ("cpu", "cuda:3"), 0, "cuda:3"),
        # gloo gathers on the host; a host session leaves the current device alone.
        ("gloo", ("cuda:1",), 0, None),
        ("nccl", ("cpu",), 0, None),
        ("nccl", (), 0, None),
    ],
)
def test_the_gather_selects_the_session_s_device(
    backend: str, devices: tuple[str, ...], current: int | None, expected: str | None
) -> None:
    chosen = gather_device(backend, devices, current)
    assert chosen == (None if expected is None else torch.device(expected))


def test_the_devices_come_from_the_report_unless_given() -> None:
    assert _session_devices(session("cuda:1"), None) == ("cuda:1",)
    multi = MultiDeviceReport("m", (session("cuda:0"), session("cuda:2")), 0.0)
    assert _session_devices(multi, None) == ("cuda:0", "cuda:2")
    assert _session_devices(None, None) == ()
    assert _session_devices(None, ["cuda:3", torch.device("cuda", 1)]) == ("cuda:3", "cuda:1")
    with pytest.raises(vramguard.InvalidArgument, match="device"):
        _session_devices(None, "tpu:9x")
