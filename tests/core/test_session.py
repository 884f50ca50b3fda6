from __future__ import annotations

import asyncio
import gc
import os
import threading
import warnings
from typing import Any

import pytest
import torch

import vramguard
from vramguard import (
    InvalidArgument,
    LeakError,
    LeakWarning,
    PeakExceeded,
    SessionError,
    SessionReport,
    gpu_session,
)
from vramguard.probes import stranded

MIB = 2**20
RETAINED: list[torch.Tensor] = []


def _mib64(device: str) -> torch.Tensor:
    return torch.ones(64 * MIB // 4, device=device)


@pytest.fixture(autouse=True)
def _clear_retained() -> Any:
    yield
    RETAINED.clear()
    gc.collect()


def _slack(device: str) -> int:
    """The host peak is the kernel's resident high-water mark, which it keeps from per-CPU
    counters batched up to max(32, 2 × CPUs) pages each, as is the entry's resident set: the
    spike may read twice that low."""
    if not device.startswith("cpu"):
        return 0
    cpus = os.cpu_count() or 1
    return 2 * cpus * max(32, 2 * cpus) * 4096


@pytest.mark.parametrize("census", [True, False], ids=["census", "allocator"])
def test_tensor_dropped_inside_the_block_is_no_leak(device: str, census: bool) -> None:
    with gpu_session("drop", device=device, leaks="raise", census=census) as s:
        x = _mib64(device)
        x.mul_(2)
        del x
    report = s.report
    assert isinstance(report, SessionReport)
    assert report.leaked_bytes == 0
    assert report.name == "drop"
    assert report.peak_allocated_bytes is not None and report.before.allocated_bytes is not None
    assert report.peak_increase_bytes is not None and report.peak_increase_bytes >= 64 * MIB - _slack(device)


@pytest.mark.parametrize("census", [True, False], ids=["census", "allocator"])
def test_tensor_kept_in_a_global_is_a_leak_within_one_percent(device: str, census: bool) -> None:
    with gpu_session("global", device=device, leaks="ignore", census=census) as s:
        RETAINED.append(_mib64(device))
    assert s.report is not None and s.report.leaked_bytes is not None
    assert abs(s.report.leaked_bytes - 64 * MIB) <= 0.01 * 64 * MIB


@pytest.mark.parametrize("census", [True, False], ids=["census", "allocator"])
def test_leak_raises_leak_error_with_the_report(device: str, census: bool) -> None:
    with pytest.raises(LeakError) as info, gpu_session("raise", device=device, leaks="raise", census=census):
        RETAINED.append(_mib64(device))
    report = info.value.report
    assert isinstance(report, SessionReport)
    assert abs((report.leaked_bytes or 0) - 64 * MIB) <= 0.01 * 64 * MIB
    assert "leaked 64.0 MiB" in str(info.value)


def test_leak_warns_by_default(device: str) -> None:
    with pytest.warns(LeakWarning, match="leaked"), gpu_session("warn", device=device):
        RETAINED.append(_mib64(device))


def test_leak_tolerance_accepts_a_size_string(device: str) -> None:
    with gpu_session("tolerant", device=device, leaks="raise", leak_tolerance="65 MiB") as s:
        RETAINED.append(_mib64(device))
    assert s.report is not None and (s.report.leaked_bytes or 0) > 60 * MIB


@pytest.mark.parametrize("census", [True, False], ids=["census", "allocator"])
def test_kept_tensor_is_not_a_leak(device: str, census: bool) -> None:
    with gpu_session("keep", device=device, leaks="raise", census=census) as s:
        out = s.keep(_mib64(device))
    assert s.report is not None
    assert s.report.kept_bytes == 64 * MIB
    assert s.report.leaked_bytes == 0
    del out


def test_owned_object_is_dropped_at_exit(device: str) -> None:
    with gpu_session("own", device=device, leaks="raise") as s:
        s.own(_mib64(device))  # nothing else holds it
    assert s.report is not None and s.report.leaked_bytes == 0
    drop = s.report.release_steps[0]
    assert drop.name == "drop"
    assert drop.allocated_freed_bytes is not None and drop.allocated_freed_bytes >= 63 * MIB


def test_evict_frees_parameters_while_the_module_is_held_elsewhere(device: str) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2048, 2048), torch.nn.Linear(2048, 2048)).to(device)
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    holder = {"model": model}
    with gpu_session("evict", device=device, leaks="raise") as s:
        s.own(model, evict=True)
        model(torch.ones(1, 2048, device=device))
    assert s.report is not None
    assert all(p.is_meta for p in holder["model"].parameters())
    assert s.report.evicted and "moved to the meta device" in s.report.evicted[0]
    drop = s.report.release_steps[0]
    assert drop.allocated_freed_bytes is not None and drop.allocated_freed_bytes >= params * 0.99
    assert "evicted" in str(s.report)


def test_release_steps_run_in_order() -> None:
    with gpu_session(device="cpu") as s:
        pass
    assert s.report is not None
    assert [step.name for step in s.report.release_steps] == ["drop", "gc", "malloc_trim"]
    assert all(step.duration_s >= 0 for step in s.report.release_steps)


@pytest.mark.gpu
def test_cuda_release_steps_and_cache_emptied() -> None:
    torch.cuda.empty_cache()
    with gpu_session(device="cuda", leaks="raise") as s:
        s.own(torch.ones(64 * MIB // 4, device="cuda"))
        kept = s.keep(torch.ones(MIB // 4, device="cuda"))
    report = s.report
    assert report is not None and report.before.allocated_bytes is not None
    assert [step.name for step in report.release_steps] == ["drop", "gc", "synchronize", "empty_cache"]
    # The kept 1 MiB lives in a 2 MiB small-pool segment (CUDACachingAllocator.cpp: kSmallSize,
    # kSmallBuffer), which empty_cache() cannot return while it is live: what stays cached is the
    # free space of segments with a live block, never 0 by construction.
    _, stranded_free = stranded(torch.cuda.memory_snapshot(), torch.cuda.current_device())
    assert report.cached_bytes_after == stranded_free
    assert report.after.requested_bytes == report.before.requested_bytes + report.kept_bytes
    assert report.kept_bytes == MIB
    del kept


def test_release_off_keeps_the_cache_and_runs_no_steps() -> None:
    with gpu_session(device="cpu", release=False) as s:
        pass
    assert s.report is not None and s.report.release_steps == () and not s.report.released


def test_exception_in_block_is_not_swallowed_and_carries_the_report(device: str) -> None:
    with pytest.raises(KeyError) as info, gpu_session("boom", device=device, leaks="raise", max_peak=1) as s:
        RETAINED.append(_mib64(device))
        raise KeyError("inside")
    notes = getattr(info.value, "__notes__", [])
    assert any("vramguard report" in note and "boom" in note for note in notes)
    assert s.report is not None and s.report.raised == "KeyError"
    assert s.report.release_steps  # the release still ran


def test_max_peak_exceeded_raises_with_the_report(device: str) -> None:
    with (
        pytest.raises(PeakExceeded, match=r"limited to 16\.0 MiB but peaked at") as info,
        gpu_session("peak", device=device, max_peak="16 MiB"),
    ):
        x = _mib64(device)
        for _ in range(20):  # keep it alive across a few host samples
            x.add_(1)
        del x
    assert info.value.report.peak_increase_bytes >= 64 * MIB - _slack(device)


def test_max_peak_not_exceeded(device: str) -> None:
    with gpu_session(device=device, max_peak="1 GiB", leaks="raise") as s:
        x = _mib64(device)
        del x
    assert s.report is not None


def test_nested_sessions_each_report_and_outer_peak_covers_inner(device: str) -> None:
    with gpu_session("outer", device=device) as outer:
        with gpu_session("inner", device=device) as inner:
            x = torch.ones(128 * MIB // 4, device=device)
            for _ in range(20):
                x.add_(1)
            del x
        y = torch.ones(MIB // 4, device=device)
        del y
    assert inner.report is not None and outer.report is not None
    assert inner.report.peak_increase_bytes is not None
    assert inner.report.peak_increase_bytes >= 128 * MIB - _slack(device)
    assert outer.report.peak_allocated_bytes is not None and inner.report.peak_allocated_bytes is not None
    assert outer.report.peak_allocated_bytes >= inner.report.peak_allocated_bytes
    assert not outer.report.concurrent and not inner.report.concurrent


def test_sessions_in_two_threads_are_marked_concurrent() -> None:
    inside = threading.Barrier(2)
    reports: list[SessionReport] = []

    def work() -> None:
        with gpu_session(device="cpu") as s:
            inside.wait(timeout=30)
            inside.wait(timeout=30)
        assert s.report is not None
        reports.append(s.report)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(reports) == 2 and all(r.concurrent for r in reports)
    assert "concurrent" in str(reports[0])


def test_bare_decorator_names_the_function_and_keeps_the_return_value() -> None:
    @gpu_session
    def make() -> torch.Tensor:
        return torch.ones(MIB // 4)

    out = make()
    report = make.vram_report  # type: ignore[attr-defined]
    assert isinstance(report, SessionReport)
    assert report.name.endswith("make")
    assert report.kept_bytes == MIB
    assert report.leaked_bytes == 0
    assert make.__name__ == "make"
    del out


def test_decorator_with_arguments_gives_each_call_its_own_report() -> None:
    @gpu_session("named", device="cpu", leaks="raise")
    def work(n: int) -> int:
        x = torch.ones(n)
        return int(x.sum())

    assert work(10) == 10
    first = work.vram_report  # type: ignore[attr-defined]
    assert work(20) == 20
    second = work.vram_report  # type: ignore[attr-defined]
    assert first is not second and first.name == second.name == "named"


def test_decorator_reraises_and_still_records() -> None:
    @gpu_session(device="cpu")
    def fail() -> None:
        raise RuntimeError("x")

    with pytest.raises(RuntimeError):
        fail()
    assert fail.vram_report.raised == "RuntimeError"  # type: ignore[attr-defined]


def test_async_with_and_async_decorator() -> None:
    async def block() -> SessionReport | None:
        async with gpu_session("async", device="cpu", leaks="raise") as s:
            x = torch.ones(MIB)
            await asyncio.sleep(0)
            del x
        return s.report

    report = asyncio.run(block())
    assert report is not None and report.leaked_bytes == 0

    @gpu_session(device="cpu")
    async def produce() -> torch.Tensor:
        await asyncio.sleep(0)
        return torch.ones(MIB // 4)

    out = asyncio.run(produce())
    assert produce.vram_report.kept_bytes == MIB  # type: ignore[attr-defined]
    assert produce.__name__ == "produce"
    del out


def test_own_and_keep_outside_the_block_are_errors() -> None:
    session = gpu_session(device="cpu")
    with pytest.raises(SessionError, match="inside the session"):
        session.own(object())
    with pytest.raises(SessionError, match="inside the session"):
        session.keep(object())


def test_reentering_an_active_session_is_an_error() -> None:
    session = gpu_session(device="cpu")
    with session, pytest.raises(SessionError, match="already active"), session:
        pass


def test_a_session_object_can_be_used_again_sequentially() -> None:
    session = gpu_session("again", device="cpu")
    with session:
        pass
    first = session.report
    with session:
        pass
    assert session.report is not first


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"leaks": "loud"}, "leaks"),
        ({"leaks": None}, "leaks"),
        ({"leak_tolerance": "lots"}, "leak_tolerance"),
        ({"leak_tolerance": -1}, "leak_tolerance"),
        ({"max_peak": "12 XB"}, "max_peak"),
        ({"device": "tpu"}, "device"),
        ({"release": "yes"}, "release"),
        ({"census": 1}, "census"),
        ({"sample_every": 0}, "sample_every"),
        ({"sample_every": "fast"}, "sample_every"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs: dict[str, Any], argument: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        gpu_session("x", **kwargs)
    assert info.value.argument == argument
    assert f"{argument}=" in str(info.value)


def test_bad_name_and_bad_evict() -> None:
    with pytest.raises(InvalidArgument, match="name="):
        gpu_session(42)  # type: ignore[call-overload]
    with gpu_session(device="cpu") as s:
        with pytest.raises(InvalidArgument, match="evict="):
            s.own([1, 2], evict=True)
        with pytest.raises(InvalidArgument, match="evict="):
            s.own(torch.nn.Linear(2, 2), evict="yes")  # type: ignore[arg-type]


def test_report_to_dict_is_json_and_round_trips() -> None:
    import json

    with gpu_session("json", device="cpu") as s:
        x = torch.ones(MIB)
        del x
    assert s.report is not None
    data = json.loads(json.dumps(s.report.to_dict()))
    assert data["name"] == "json" and data["kind"] == "session"
    assert SessionReport.from_dict(data) == s.report
    text = str(s.report)
    assert "MiB" in text and "reclaimed" in text and "step gc" in text


def test_no_warning_for_a_clean_block() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with gpu_session(device="cpu"):
            x = torch.ones(MIB)
            del x


def test_package_level_names() -> None:
    assert vramguard.gpu_session is gpu_session


def test_a_host_session_in_a_process_with_cuda_never_asks_torch_for_cuda_peaks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A process that initialised CUDA measures the host too: torch's real
    ``reset_peak_memory_stats`` refuses a CPU device (ValueError, "Expected a cuda device"), so
    the session must not call it for the host. Here CUDA is said to be initialised; the call,
    were it made, is torch's own and raises."""
    from vramguard.probes import _torch

    with pytest.raises(ValueError, match="cuda"):
        torch.cuda.reset_peak_memory_stats(torch.device("cpu"))
    monkeypatch.setattr(_torch, "cuda_initialized", lambda: True)
    with gpu_session("host", device="cpu", leaks="ignore") as s:
        pass
    assert s.report is not None and s.report.device == "cpu"


@pytest.mark.gpu
def test_gpu_a_host_session_after_cuda_initialised() -> None:
    torch.zeros(1, device="cuda")
    assert torch.cuda.is_initialized()
    with gpu_session("host", device="cpu", leaks="ignore") as s:
        kept = s.keep(torch.ones(MIB))
    assert s.report is not None and s.report.device == "cpu" and kept.numel() == MIB
