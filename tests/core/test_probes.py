from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace
from typing import Any

import pytest
import torch

import vramguard
from vramguard import InvalidArgument, MemorySnapshot, resolve_device, snapshot
from vramguard.probes import _nvml

MIB = 2**20


def test_host_snapshot_reads_heap_and_resident_memory() -> None:
    snap = snapshot("cpu")
    assert snap.device == "cpu"
    assert snap.allocated_bytes is not None and snap.allocated_bytes > 0
    assert snap.reserved_bytes is not None and snap.rss_bytes is not None
    assert snap.rss_bytes >= snap.reserved_bytes > 0
    assert snap.uss_bytes is not None and snap.uss_bytes > 0
    # Fields that mean nothing on the host are None, never a fake 0.
    cuda_only = ("active_bytes", "peak_allocated_bytes", "num_ooms", "device_total_bytes", "process_used_bytes")
    for name in (*cuda_only, "context_bytes"):
        assert getattr(snap, name) is None, name
    assert snap.cached_bytes == snap.reserved_bytes - snap.allocated_bytes


def test_host_allocated_bytes_follow_a_real_tensor() -> None:
    from vramguard.probes import malloc_trim

    malloc_trim()  # free pages left resident by earlier tests would take the tensor without new RSS
    before = snapshot("cpu", uss=False)
    tensor = torch.ones(16 * MIB // 4)  # 16 MiB, touched so it is resident
    during = snapshot("cpu", uss=False)
    del tensor
    after = snapshot("cpu", uss=False)
    assert None not in (during.allocated_bytes, before.allocated_bytes, after.allocated_bytes)
    assert during.allocated_bytes is not None and before.allocated_bytes is not None
    assert after.allocated_bytes is not None
    grew = during.allocated_bytes - before.allocated_bytes
    assert 16 * MIB <= grew < 17 * MIB
    assert after.allocated_bytes - before.allocated_bytes < MIB
    assert during.reserved_bytes is not None and before.reserved_bytes is not None
    assert during.reserved_bytes - before.reserved_bytes >= 15 * MIB


def test_snapshot_round_trips_through_json() -> None:
    snap = snapshot("cpu")
    again = MemorySnapshot.from_dict(json.loads(json.dumps(snap.to_dict())))
    assert again == snap


@pytest.mark.parametrize("device", ["cpu", "CPU", " cpu ", torch.device("cpu")])
def test_cpu_spellings(device: Any) -> None:
    assert resolve_device(device) == torch.device("cpu")


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "mps", "", 1.0, [], True, torch.device("meta"), "cuda:-1"])
def test_bad_device_names_the_argument_and_the_forms(bad: Any) -> None:
    with pytest.raises(InvalidArgument) as info:
        resolve_device(bad)
    assert "device=" in str(info.value)
    assert '"cuda:N"' in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", 0, torch.device("cuda", 1)])
def test_cuda_without_a_gpu_says_so(device: Any) -> None:
    with pytest.raises(InvalidArgument, match="no CUDA device"):
        snapshot(device)


@pytest.mark.gpu
def test_absent_gpu_index_lists_the_existing_ones() -> None:
    count = torch.cuda.device_count()
    with pytest.raises(InvalidArgument, match="cuda:0"):
        resolve_device(f"cuda:{count}")


def test_auto_is_cpu_here_or_the_current_gpu() -> None:
    expected = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    assert resolve_device("auto") == expected
    assert resolve_device(None) == expected


def test_nvml_without_a_driver_is_none_with_a_reason() -> None:
    reading = _nvml.read_nvml(0)
    if _nvml.unavailable_reason() is None:
        pytest.skip("NVML works here; the gpu tests cover it")
    assert reading.device_total_bytes is None and reading.process_used_bytes is None
    assert reading.reason


class _FakeNvml:
    """NVML as a driver would answer, for the one edge that cannot run here (no driver)."""

    nvmlMemory_v2 = 0x02000028

    def __init__(self, pid: int, used: int | None) -> None:
        self.pid, self.used, self.shutdown, self.has_v2 = pid, used, False, True

    def nvmlInit(self) -> None:
        pass

    def nvmlShutdown(self) -> None:
        self.shutdown = True

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return f"h{index}"

    def nvmlDeviceGetMemoryInfo(self, handle: str, version: int | None = None) -> SimpleNamespace:
        # pynvml: no version → the v1 struct, whose used counts the driver's reserved 512 MiB.
        if version is None:
            return SimpleNamespace(total=80 * 2**30, used=3 * 2**30)
        if not self.has_v2:
            raise RuntimeError("NVMLError_FunctionNotFound")
        return SimpleNamespace(total=80 * 2**30, used=3 * 2**30 - 512 * MIB, reserved=512 * MIB)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: str) -> list[SimpleNamespace]:
        return [SimpleNamespace(pid=1, usedGpuMemory=5), SimpleNamespace(pid=self.pid, usedGpuMemory=self.used)]


@pytest.fixture
def fake_nvml(monkeypatch: pytest.MonkeyPatch) -> _FakeNvml:
    fake = _FakeNvml(os.getpid(), 700 * MIB)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setattr(_nvml, "_state", {"started": False, "module": None, "reason": None})
    monkeypatch.setattr(_nvml, "_mig", {})
    return fake


def test_nvml_process_memory_is_matched_by_pid(fake_nvml: _FakeNvml) -> None:
    reading = _nvml.read_nvml(0)
    assert reading.device_total_bytes == 80 * 2**30
    assert reading.process_used_bytes == 700 * MIB
    assert reading.reason is None


def test_nvml_point12_device_memory_is_read_through_the_v2_struct(fake_nvml: _FakeNvml) -> None:
    """Issue 24, point 12: v1's used counts the driver's reserved memory; v2 has it apart."""
    reading = _nvml.read_nvml(0)
    assert reading.device_used_bytes == 3 * 2**30 - 512 * MIB
    assert reading.driver_reserved_bytes == 512 * MIB


def test_nvml_under_mig_says_the_device_figures_are_the_whole_gpus(
    fake_nvml: _FakeNvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_nvml, "_mig", {})
    fake_nvml.nvmlDeviceGetMigMode = lambda handle: (1, 1)  # type: ignore[attr-defined]
    reading = _nvml.read_nvml(0)
    assert reading.process_used_bytes == 700 * MIB
    assert reading.reason is not None and "MIG" in reading.reason and "whole GPU" in reading.reason


def test_nvml_point12_an_old_driver_falls_back_to_v1_and_says_so(fake_nvml: _FakeNvml) -> None:
    fake_nvml.has_v2 = False
    reading = _nvml.read_nvml(0)
    assert reading.device_used_bytes == 3 * 2**30
    assert reading.driver_reserved_bytes is None
    assert reading.reason is not None and "v1" in reading.reason


def test_nvml_pid_not_found_gives_none_and_a_reason(fake_nvml: _FakeNvml) -> None:
    fake_nvml.pid = -5
    reading = _nvml.read_nvml(0)
    assert reading.process_used_bytes is None
    # Other pids listed, this one not: a container without the host's pid namespace, said so.
    assert reading.reason is not None and "pid" in reading.reason and "namespace" in reading.reason
    assert "unknown" in reading.reason


def test_nvml_honours_cuda_visible_devices(fake_nvml: _FakeNvml, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    assert _nvml._handle(fake_nvml, 1) == "h1"
    assert _nvml._handle(fake_nvml, 0) == "h3"


def test_nvml_is_started_once_and_shut_down(fake_nvml: _FakeNvml) -> None:
    calls = []
    original = fake_nvml.nvmlInit
    fake_nvml.nvmlInit = lambda: calls.append(1) or original()  # type: ignore[method-assign]
    _nvml.read_nvml(0)
    _nvml.read_nvml(0)
    assert calls == [1]
    _nvml._shutdown()
    assert fake_nvml.shutdown


def test_nvml_devices_listing(fake_nvml: _FakeNvml) -> None:
    fake_nvml.nvmlDeviceGetCount = lambda: 1  # type: ignore[attr-defined]
    fake_nvml.nvmlDeviceGetName = lambda handle: b"NVIDIA H100"  # type: ignore[attr-defined]
    devices = _nvml.list_devices()
    assert devices[0]["name"] == "NVIDIA H100"
    assert {"pid": os.getpid(), "used_bytes": 700 * MIB} in devices[0]["processes"]


def test_probe_never_creates_a_cuda_context() -> None:
    """In a fresh process, snapshots and a session leave CUDA uninitialised."""
    code = textwrap.dedent(
        """
        import torch, vramguard
        from vramguard.probes import cuda_available
        dev = "cuda" if cuda_available() else "cpu"  # NVML: no cuInit
        vramguard.snapshot(dev)
        vramguard.snapshot("auto")
        with vramguard.gpu_session(device=dev):
            pass
        print(torch.cuda.is_initialized())
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


@pytest.mark.gpu
def test_cuda_snapshot_matches_memory_stats() -> None:
    dev = torch.device("cuda", torch.cuda.current_device())
    tensor = torch.ones(16 * MIB // 4, device=dev)
    snap = snapshot(dev)
    stats = torch.cuda.memory_stats(dev)
    assert snap.allocated_bytes == stats["allocated_bytes.all.current"]
    assert snap.reserved_bytes == stats["reserved_bytes.all.current"]
    assert snap.num_ooms == stats["num_ooms"]
    if snap.process_used_bytes is not None:
        assert snap.context_bytes == snap.process_used_bytes - snap.reserved_bytes
        assert snap.context_bytes > 0
    del tensor


def test_vramguard_exports_snapshot() -> None:
    assert vramguard.snapshot is snapshot


def test_is_host_says_what_the_device_type_says() -> None:
    from vramguard.probes import is_host, resolve_device

    for written in ("cpu", " CPU ", torch.device("cpu")):
        resolved = resolve_device(written)
        assert is_host(resolved) and resolved is resolve_device("cpu")  # the one host device: an identity check
    assert is_host(torch.device("cpu"))  # another object of the same device: the type decides
    assert not is_host(torch.device("cuda", 0)) and not is_host(torch.device("meta"))
