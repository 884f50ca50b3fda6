"""One release for several devices (issue 24, point 7). ``torch.cuda.empty_cache()`` empties every
device's cache (c10/cuda/CUDACachingAllocator.cpp, NativeCachingAllocator::emptyCache), so each
device's exit figure must be read before any release step runs, and the cache emptied once.

On the host the devices are simulated: an allocator per device, whose ``empty`` empties them all
as torch's does, read through the same calls a session makes."""

from __future__ import annotations

import pytest
import torch

from vramguard import MemorySnapshot
from vramguard.core import _multi
from vramguard.core._multi import release_together, shared_release_actions

MIB = 2**20
CUDA0, CUDA1 = torch.device("cuda", 0), torch.device("cuda", 1)


class _Allocators:
    """Two devices' (allocated, reserved) figures; every call recorded in order."""

    def __init__(self) -> None:
        self.figures = {CUDA0: [64 * MIB, 512 * MIB], CUDA1: [32 * MIB, 256 * MIB]}
        self.calls: list[str] = []

    def reading(self, dev: torch.device) -> MemorySnapshot:
        allocated, reserved = self.figures[dev]
        return MemorySnapshot(
            device=str(dev), time_s=0.0, allocated_bytes=allocated, reserved_bytes=reserved, rss_bytes=None
        )

    def read_exit(self, dev: torch.device) -> MemorySnapshot:
        self.calls.append(f"exit {dev}")
        return self.reading(dev)

    def read(self, dev: torch.device) -> MemorySnapshot:
        self.calls.append(f"read {dev}")
        return self.reading(dev)

    def read_final(self, dev: torch.device) -> MemorySnapshot:
        self.calls.append(f"final {dev}")
        return self.reading(dev)

    def drop(self) -> str:
        self.calls.append("drop")
        self.figures[CUDA0][0] -= 48 * MIB  # the block's tensors go back to each device's cache
        self.figures[CUDA1][0] -= 16 * MIB
        return ""

    def empty(self) -> str:
        # As torch's emptyCache: every device's cache, whatever the current device.
        self.calls.append("empty")
        for figures in self.figures.values():
            figures[1] = figures[0]
        return ""


def test_every_device_reads_its_exit_before_any_step_and_reclaims_its_own() -> None:
    alloc = _Allocators()
    actions = [("drop", alloc.drop), ("empty_cache", alloc.empty)]
    released = release_together(
        (CUDA0, CUDA1), actions, read_exit=alloc.read_exit, read=alloc.read, read_final=alloc.read_final
    )
    assert alloc.calls == [
        "exit cuda:0",
        "exit cuda:1",
        "drop",
        "read cuda:0",
        "read cuda:1",
        "empty",
        "read cuda:0",
        "read cuda:1",
        "final cuda:0",
        "final cuda:1",
    ]
    zero, one = released
    # Each device's cache, less what it still holds: its own, not 0 for the device read last.
    assert zero.reclaimed_bytes == 512 * MIB - 16 * MIB
    assert one.reclaimed_bytes == 256 * MIB - 16 * MIB
    assert [s.name for s in zero.steps] == ["drop", "empty_cache"]
    assert [(s.allocated_freed_bytes, s.reserved_freed_bytes) for s in zero.steps] == [(48 * MIB, 0), (0, 496 * MIB)]
    assert [(s.allocated_freed_bytes, s.reserved_freed_bytes) for s in one.steps] == [(16 * MIB, 0), (0, 240 * MIB)]


def test_device_by_device_the_device_read_last_would_report_nothing() -> None:
    # The old order, for contrast: device 1 released (and emptied every cache) before device 0 read.
    alloc = _Allocators()
    figures = []
    for dev in (CUDA1, CUDA0):
        (done,) = release_together(
            (dev,),
            [("drop", lambda: ""), ("empty_cache", alloc.empty)],
            read_exit=alloc.read_exit,
            read=alloc.read,
            read_final=alloc.read_final,
        )
        figures.append(done.reclaimed_bytes)
    assert figures == [256 * MIB - 32 * MIB, 0]


def test_the_shared_actions_empty_once_and_synchronize_each_device(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(_multi, "cuda_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda dev=None: calls.append(f"synchronize {dev}"))
    monkeypatch.setattr(torch.cuda, "ipc_collect", lambda: calls.append("ipc_collect"))
    from vramguard.core import _release

    monkeypatch.setattr(_release, "_raw_empty_cache", lambda: calls.append("empty_cache"))
    collects = [lambda: calls.append("collect 0") or "young", lambda: calls.append("collect 1") or ""]
    actions = shared_release_actions((CUDA0, CUDA1), lambda: calls.append("drop") or "", collects)
    assert [name for name, _ in actions] == ["drop", "gc", "synchronize", "empty_cache"]
    details = [action() for _, action in actions]
    assert calls == [
        "drop",
        "collect 0",
        "collect 1",
        "synchronize cuda:0",
        "synchronize cuda:1",
        "empty_cache",
        "ipc_collect",
    ]
    assert details[1] == "young"


def test_without_cuda_initialised_nothing_touches_the_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_multi, "cuda_initialized", lambda: False)

    def refuse(*args: object) -> None:
        raise AssertionError("CUDA touched")

    monkeypatch.setattr(torch.cuda, "synchronize", refuse)
    actions = shared_release_actions((CUDA0, CUDA1), lambda: "", [])
    assert [action() for _, action in actions][2:] == ["skipped: CUDA not initialised in this process"] * 2


def test_a_host_device_is_trimmed() -> None:
    actions = shared_release_actions((torch.device("cpu"),), lambda: "", [])
    assert [name for name, _ in actions] == ["drop", "gc", "malloc_trim"]
    assert all(isinstance(action(), str) for _, action in actions)
