"""Timelines from ``sample_every``: the sampler thread never outlives the block, empty_cache
calls are marked, and torch's memory history is CUDA-only."""

from __future__ import annotations

import pickle
import threading
from pathlib import Path

import pytest
import torch
from report_factories import session_report

import vramguard
from vramguard import InvalidArgument, VramGuardError
from vramguard.core import _hooks

SAMPLER_THREAD = "vramguard-sampler"


def session_listeners() -> list[object]:
    """The empty_cache listeners recording sessions add (the census may have its own)."""
    return [f for f in _hooks.empty_cache_listeners if getattr(f, "__module__", "") == "vramguard.core._lifecycle"]


def sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == SAMPLER_THREAD]


def test_sampler_thread_is_joined_after_a_raising_block() -> None:
    session = vramguard.gpu_session("boom", device="cpu", sample_every=0.005, leaks="ignore")
    with pytest.raises(RuntimeError, match="boom"), session:
        x = torch.ones(2**20)
        x.add_(1)
        assert sampler_threads(), "the sampler runs inside the block"
        raise RuntimeError("boom")
    assert sampler_threads() == []
    report = session.report
    assert report is not None and report.raised == "RuntimeError"
    # The timeline survives the raise; how many samples a 1 ms block gets is the clock's business.
    assert report.timeline is not None
    assert [label for _, label in report.timeline.marks][:2] == ["enter", "exit"]


def test_sampler_thread_is_joined_after_a_plain_host_session_left_it_idle() -> None:
    with vramguard.gpu_session("plain", device="cpu", leaks="ignore"):
        pass  # a host session without a timeline leaves the thread idling for a while
    with vramguard.gpu_session("timed", device="cpu", sample_every=0.01, leaks="ignore"):
        pass
    assert sampler_threads() == []


def test_timeline_samples_and_marks() -> None:
    assert session_listeners() == []
    with vramguard.gpu_session("marks", device="cpu", sample_every=0.005, leaks="ignore") as session:
        assert len(session_listeners()) == 1
        x = torch.ones(4 * 2**20)
        for _ in range(3):
            x.mul_(1.5)
        del x
        vramguard.empty_cache("cpu")  # after the references are gone: the right order
        vramguard.empty_cache("cpu")
    assert session_listeners() == []
    timeline = session.report.timeline if session.report else None
    assert timeline is not None and timeline.interval_s == 0.005
    labels = [label for _, label in timeline.marks]
    assert labels[0] == "enter"
    assert labels.count("empty_cache") == 2
    assert labels.index("empty_cache") < labels.index("exit") < labels.index("release:drop")
    assert [label for label in labels if label.startswith("release:")] == [
        "release:drop",
        "release:gc",
        "release:malloc_trim",
    ]
    times = [t for t, _ in timeline.marks]
    assert times == sorted(times)
    sample_times = [s[0] for s in timeline.samples]
    assert sample_times and sample_times == sorted(sample_times)
    assert all(s[1] is not None and s[1] > 0 for s in timeline.samples)


def test_sessions_without_a_timeline_do_not_listen() -> None:
    with vramguard.gpu_session("quiet", device="cpu", leaks="ignore") as session:
        assert session_listeners() == []
        vramguard.empty_cache("cpu")
    assert session.report is not None and session.report.timeline is None


def test_record_history_needs_cuda() -> None:
    with pytest.raises(InvalidArgument, match="device") as caught:
        vramguard.gpu_session("history", device="cpu", record_history=True)
    assert "CUDA" in str(caught.value)


def test_dump_snapshot_without_history_says_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(VramGuardError, match="record_history=True"):
        session_report().dump_snapshot(tmp_path / "snap.pickle")
    assert not (tmp_path / "snap.pickle").exists()


def test_memory_history_is_not_part_of_the_record() -> None:
    report = session_report(memory_history={"segments": []})
    assert "memory_history" not in report.to_dict()
    assert report == session_report()
    assert "segments" not in repr(report)


@pytest.mark.gpu
def test_record_history_dumps_a_snapshot_memory_viz_opens(tmp_path: Path) -> None:
    with vramguard.gpu_session("history", device="cuda", record_history=True, leaks="ignore") as session:
        x = torch.ones(16 * 2**20, device="cuda")
        x.mul_(2)
        del x
    report = session.report
    assert report is not None and report.memory_history is not None
    path = report.dump_snapshot(tmp_path / "snap.pickle")
    data = pickle.loads(path.read_bytes())
    assert "segments" in data and "device_traces" in data
    assert any(trace for trace in data["device_traces"]), "the block's allocations are in the trace"
    # History is off again after the block.
    with vramguard.gpu_session("after", device="cuda", leaks="ignore") as later:
        pass
    assert later.report is not None and later.report.memory_history is None
