"""``gpu_session(device="all")`` and device lists: one session per device, per-device figures and a
total. On the host "all" is the CPU alone; the CUDA twins run where a GPU is."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from cluster_factories import MIB, session
from hypothesis import given
from hypothesis import strategies as st

import vramguard
from vramguard.core._multi import MultiDeviceSession, resolve_devices
from vramguard.core._multi_report import MultiDeviceReport
from vramguard.report import load_report, plot_report, render, save_report

HELD: list[torch.Tensor] = []


@pytest.fixture(autouse=True)
def _clear_held() -> None:
    HELD.clear()


def test_all_on_the_host_is_the_cpu_alone() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: 'all' means its GPUs")
    assert resolve_devices("all") == (torch.device("cpu"),)
    s = vramguard.gpu_session("all-host", device="all", leaks="ignore")
    assert isinstance(s, MultiDeviceSession)
    with s:
        HELD.append(torch.ones(256 * 1024))  # 1 MiB held by a global: a leak
        s.keep(torch.ones(1024))
    report = s.report
    assert isinstance(report, MultiDeviceReport)
    assert report.device_names == ("cpu",)
    cpu = report.by_device("cpu")
    assert cpu.leaked_bytes == 1 * MIB
    assert report.leaked_bytes == cpu.leaked_bytes
    assert report.kept_bytes == cpu.kept_bytes == 4096
    assert [leak.nbytes for leak in report.leaks] == [1 * MIB]
    assert report.device_leaks[0][0] == "cpu"


def test_a_device_list_runs_the_per_device_path_and_the_single_path_is_unchanged() -> None:
    with vramguard.gpu_session("listed", device=["cpu"], leaks="ignore") as s:
        work = torch.ones(2 * 1024 * 1024)  # 8 MiB
        del work
    assert isinstance(s.report, MultiDeviceReport)
    assert s.report.leaked_bytes == 0
    assert s.report.peak_allocated_bytes == s.report.devices[0].peak_allocated_bytes
    assert s.report.peak_increase_bytes is not None and s.report.peak_increase_bytes >= 6 * MIB
    single = vramguard.gpu_session("one", device="cpu")
    assert type(single) is vramguard.GpuSession


def test_owned_references_are_dropped_before_any_device_releases() -> None:
    with vramguard.gpu_session("owned", device=["cpu"], leaks="ignore") as s:
        s.own(torch.nn.Linear(256, 256))  # only the session holds it
        big = s.own(torch.nn.Linear(512, 512), evict=True)
    assert s.report is not None
    assert s.report.leaked_bytes == 0
    assert s.report.evicted and "Linear" in s.report.evicted[0]
    assert big.weight.device.type == "meta"


@pytest.mark.parametrize(
    "device",
    ["every", [], ["cpu", "cpu"], ["cpu", "tpu"], [True]],
)
def test_bad_device_lists_name_the_argument(device: object) -> None:
    with pytest.raises(vramguard.InvalidArgument, match="device"):
        resolve_devices(device)


def test_a_leak_under_raise_fails_after_every_device_released() -> None:
    s = vramguard.gpu_session("leaky", device=["cpu"], leaks="raise")
    with pytest.raises(vramguard.LeakError), s:
        HELD.append(torch.ones(256 * 1024))
    assert s.report is not None and s.report.leaked_bytes == 1 * MIB
    assert not s.active


def test_the_block_s_exception_comes_through_with_the_report() -> None:
    s = vramguard.gpu_session("boom", device="all", leaks="ignore")
    with pytest.raises(KeyError), s:
        raise KeyError("x")
    assert s.report is not None and s.report.raised == "KeyError"
    assert all(r.raised == "KeyError" for r in s.report.devices)


def test_decorated_function_reports_every_call() -> None:
    @vramguard.gpu_session(device=["cpu"], leaks="ignore")
    def step(n: int) -> torch.Tensor:
        return torch.ones(n)

    out = step(1024)
    report = step.vram_report  # type: ignore[attr-defined]
    assert isinstance(report, MultiDeviceReport)
    assert report.name.endswith("step")
    assert report.kept_bytes == out.nbytes and report.leaked_bytes == 0


def test_entering_twice_and_using_own_outside_are_session_errors() -> None:
    s = vramguard.gpu_session(device=["cpu"], leaks="ignore")
    with pytest.raises(vramguard.SessionError):
        s.keep(1)
    with s, pytest.raises(vramguard.SessionError):
        s.__enter__()


def test_report_round_trips_through_json_and_renders_a_total(tmp_path: Path) -> None:
    report = MultiDeviceReport(
        "train", (session("cuda:0", leaked=8 * MIB), session("cuda:1", peak=None)), 1.5, notes=("n",)
    )
    path = save_report(report, tmp_path / "multi.json")
    data = json.loads(path.read_text())
    assert data["kind"] == "multi" and data["total"]["leaked_bytes"] == 8 * MIB
    loaded = load_report(path)
    assert loaded == report
    assert isinstance(loaded, MultiDeviceReport) and loaded.incomplete == ("peak_allocated_bytes",)
    assert report.peak_allocated_bytes == 300 * MIB  # the device that could not read adds nothing
    out = io.StringIO()
    render(report, file=out, width=120)
    text = out.getvalue()
    assert "on 2 device(s) (cuda:0, cuda:1)" in text
    total = next(line for line in text.splitlines() if line.strip().startswith("total"))
    assert "8.00 MiB" in total and "300.0 MiB" in total
    assert "total" in str(report) and "cuda:1" in str(report)
    assert plot_report(report, tmp_path / "multi.png").stat().st_size > 0


@given(
    st.lists(
        st.tuples(st.one_of(st.none(), st.integers(0, 2**40)), st.one_of(st.none(), st.integers(0, 2**30))),
        min_size=1,
        max_size=8,
    )
)
def test_totals_sum_the_devices_that_could_read(figures: list[tuple[int | None, int | None]]) -> None:
    devices = tuple(session(f"cuda:{i}", peak=p, leaked=leak) for i, (p, leak) in enumerate(figures))
    report = MultiDeviceReport("s", devices, 0.0)
    peaks = [p for p, _ in figures if p is not None]
    leaks = [leak for _, leak in figures if leak is not None]
    assert report.peak_allocated_bytes == (sum(peaks) if peaks else None)
    assert report.leaked_bytes == (sum(leaks) if leaks else None)
    assert sum(leak.nbytes for leak in report.leaks) == sum(leaks)
    assert MultiDeviceReport.from_dict(report.to_dict()) == report


@pytest.mark.gpu
def test_all_on_cuda_is_every_visible_device() -> None:
    count = torch.cuda.device_count()
    assert resolve_devices("all") == tuple(torch.device("cuda", i) for i in range(count))
    with vramguard.gpu_session("all-cuda", device="all", leaks="ignore") as s:
        for i in range(count):
            HELD.append(torch.ones(256 * 1024, device=f"cuda:{i}"))
    assert s.report is not None
    assert [r.leaked_bytes for r in s.report.devices] == [1 * MIB] * count
    assert s.report.leaked_bytes == count * MIB


@pytest.mark.gpu
def test_a_cuda_subset_measures_only_those_devices() -> None:
    with vramguard.gpu_session("subset", device=[0], leaks="ignore") as s:
        work = torch.ones(1024 * 1024, device="cuda:0")
        del work
    assert s.report is not None and s.report.device_names == ("cuda:0",)
    assert s.report.peak_increase_bytes is not None and s.report.peak_increase_bytes >= 4 * MIB
    assert s.report.leaked_bytes == 0


def test_all_counts_devices_through_nvml_not_is_available(monkeypatch: pytest.MonkeyPatch) -> None:
    # is_available() calls cuInit (a later fork() then fails); "all" must ask the probes' count.
    from vramguard.core import _multi

    def refuse() -> bool:
        raise AssertionError("torch.cuda.is_available() called")

    monkeypatch.setattr(torch.cuda, "is_available", refuse)
    monkeypatch.setattr(_multi, "cuda_device_count", lambda: 2)
    assert resolve_devices("all") == (torch.device("cuda", 0), torch.device("cuda", 1))
    monkeypatch.setattr(_multi, "cuda_device_count", lambda: 0)
    assert resolve_devices("all") == (torch.device("cpu"),)


GIB = 1024 * MIB


def test_point07_every_device_reads_its_exit_before_anything_is_released() -> None:
    """The exit figure is the block's end: read while what the session owns is still alive, and
    before any device's release (one device's empty_cache() empties every device's cache)."""
    with vramguard.gpu_session("exit", device=["cpu"], leaks="ignore") as s:
        s.own(torch.ones(64 * MIB // 4))
    assert s.report is not None
    (report,) = s.report.devices
    assert report.at_exit.allocated_bytes is not None and report.before.allocated_bytes is not None
    assert report.at_exit.allocated_bytes - report.before.allocated_bytes >= 64 * MIB
    # What the session owned was dropped for every device: each release trims as an owning one.
    trim = next(step for step in report.release_steps if step.name == "malloc_trim")
    assert not trim.detail.startswith("skipped"), trim.detail


@pytest.mark.gpu
def test_gpu_point07_each_device_reclaims_its_own_cache() -> None:
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs: empty_cache emptying another device's cache needs another device")
    # 1.5 GiB per device: above the cache floor under which a release may keep the cache.
    with vramguard.gpu_session("two", device=[0, 1], leaks="ignore") as s:
        for i in (0, 1):
            s.own(torch.empty(int(1.5 * GIB), dtype=torch.uint8, device=f"cuda:{i}"))
    assert s.report is not None
    # Before the fix cuda:1 released first, and its empty_cache emptied cuda:0's cache too, before
    # cuda:0 read its exit figures: cuda:0 reported (about) nothing reclaimed.
    for report in s.report.devices:
        assert report.reclaimed_bytes is not None and report.reclaimed_bytes >= int(1.5 * GIB), report.device
