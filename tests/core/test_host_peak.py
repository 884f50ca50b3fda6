"""Exact host peaks: the kernel's resident high-water mark (VmHWM), reset per session through
/proc/self/clear_refs, folded into enclosing sessions, and the sampled fallback where the kernel
does not allow the reset.

The sessions here use ``sample_every=60``: the sampler then takes no sample inside the block, so
a peak above the entry and exit readings can only come from VmHWM.
"""

from __future__ import annotations

import mmap
import os
import re
from pathlib import Path

import pytest
import torch

from vramguard import PeakExceeded, SessionReport, gpu_session
from vramguard.probes import (
    ResidentPeak,
    _host,
    read_resident_peak,
    reset_resident_peak,
    resident_peak_reset_unavailable,
)

MIB = 2**20
HAS_PROC_STATUS = os.path.exists("/proc/self/status")
_CPUS = os.cpu_count() or 1
SLACK = min(8 * MIB, 2 * _CPUS * max(32, 2 * _CPUS) * 4096)  # the mark and the entry's RSS: both approximate
"""How far under the true peak VmHWM may read: the kernel sets it from its RSS counter without
the per-CPU parts not yet folded in (at most a batch of max(32, 2 × CPUs) pages per CPU; 120–250
KiB measured on a 2-CPU machine)."""


def _spike(mib: int) -> None:
    """Fault in and free ``mib`` MiB of fresh pages at once: far shorter than a sampling interval.

    A tensor over its own anonymous mapping, not ``torch.ones``: after other tests, malloc may
    serve ``torch.ones`` from free chunks that are resident already, which raises neither the
    resident set nor VmHWM (the suite once failed so, in this file's probe test)."""
    pages = mmap.mmap(-1, mib * MIB)
    x = torch.frombuffer(pages, dtype=torch.uint8)
    x.fill_(1)  # every page touched
    del x
    pages.close()


def _status_kib(name: str) -> int:
    with open("/proc/self/status") as file:
        match = re.search(rf"^{name}:\s+(\d+) kB$", file.read(), re.MULTILINE)
    assert match is not None, name
    return int(match.group(1))


def _sampled_note(report: SessionReport) -> list[str]:
    return [note for note in report.notes if note.startswith("host peak sampled")]


@pytest.fixture
def exact() -> None:
    """Skip where the kernel does not let this process reset VmHWM (the fallback is tested below)."""
    if not reset_resident_peak():
        pytest.skip(f"VmHWM cannot be reset here: {resident_peak_reset_unavailable()}")


@pytest.fixture
def fresh_reset_state(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Forget whether the reset works, for this test only (monkeypatch restores the real state)."""
    monkeypatch.setattr(_host, "_reset_verified", False)
    monkeypatch.setattr(_host, "_reset_unavailable", None)
    return monkeypatch


# -- the probe ----------------------------------------------------------------------------------


@pytest.mark.skipif(not HAS_PROC_STATUS, reason="no /proc/self/status on this platform")
def test_resident_peak_reads_vmhwm_and_vmrss_from_proc_status() -> None:
    x = torch.ones(16 * MIB // 4)  # resident while read, so both figures are well above noise
    hwm_low = _status_kib("VmHWM") * 1024
    reading = read_resident_peak()
    hwm_high = _status_kib("VmHWM") * 1024
    rss = _status_kib("VmRSS") * 1024
    del x
    assert isinstance(reading, ResidentPeak)
    assert reading.hwm_bytes is not None and reading.rss_bytes is not None
    # VmHWM only grows between resets: the probe's figure lies between the two reads around it.
    assert hwm_low <= reading.hwm_bytes <= hwm_high
    assert abs(reading.rss_bytes - rss) < MIB
    assert reading.hwm_bytes >= reading.rss_bytes >= 16 * MIB


def test_unreadable_status_gives_none_not_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_host, "_STATUS_PATH", str(tmp_path / "absent"))
    assert read_resident_peak() == ResidentPeak(None, None)


def test_reset_on_this_machine_lowers_vmhwm_or_says_why() -> None:
    """The real /proc/self/clear_refs: either the reset works and drops VmHWM to VmRSS, or the
    probe says why not."""
    if not reset_resident_peak():
        reason = resident_peak_reset_unavailable()
        assert reason is not None and ("clear_refs" in reason or "VmHWM" in reason)
        return
    assert resident_peak_reset_unavailable() is None
    _spike(32)
    high = read_resident_peak()
    assert high.hwm_bytes is not None and high.rss_bytes is not None
    assert high.hwm_bytes - high.rss_bytes >= 32 * MIB - SLACK
    assert reset_resident_peak()
    low = read_resident_peak()
    assert low.hwm_bytes is not None and low.rss_bytes is not None
    assert low.hwm_bytes - low.rss_bytes < SLACK + MIB


def test_unwritable_clear_refs_is_unavailable_and_cached(tmp_path: Path, fresh_reset_state: pytest.MonkeyPatch) -> None:
    fresh_reset_state.setattr(_host, "_CLEAR_REFS_PATH", str(tmp_path))  # a directory: never writable
    assert reset_resident_peak() is False
    reason = resident_peak_reset_unavailable()
    assert reason is not None and str(tmp_path) in reason and "not writable" in reason
    fresh_reset_state.setattr(_host, "_CLEAR_REFS_PATH", "/proc/self/clear_refs")
    assert reset_resident_peak() is False, "the answer is cached, never retried"
    assert resident_peak_reset_unavailable() == reason


def test_a_write_that_does_not_lower_vmhwm_is_unavailable(
    tmp_path: Path, fresh_reset_state: pytest.MonkeyPatch
) -> None:
    if not HAS_PROC_STATUS:
        pytest.skip("no /proc/self/status on this platform")
    target = tmp_path / "clear_refs"
    target.write_text("")
    fresh_reset_state.setattr(_host, "_CLEAR_REFS_PATH", str(target))  # accepts the write, resets nothing
    assert reset_resident_peak() is False
    reason = resident_peak_reset_unavailable()
    assert reason is not None and "did not drop" in reason
    assert target.read_text() == "5"


# -- sessions -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("exact")
def test_a_spike_between_samples_is_the_session_peak() -> None:
    with gpu_session("spike", device="cpu", sample_every=60, leaks="raise") as s:
        _spike(32)
    report = s.report
    assert report is not None and report.timeline is not None
    # The timeline's one sample is the reading after the release (the plot ends at ``after``):
    # none was taken during the block, so the peak is VmHWM's.
    assert len(report.timeline.samples) == 1, "no sample was taken during the block: the peak is VmHWM's"
    assert report.peak_increase_bytes is not None and report.peak_increase_bytes >= 32 * MIB - SLACK
    assert report.peak_reserved_bytes is not None and report.before.reserved_bytes is not None
    assert report.peak_reserved_bytes - report.before.reserved_bytes >= 32 * MIB - SLACK
    assert _sampled_note(report) == [], "where the reset works, the report says nothing extra"


@pytest.mark.usefixtures("exact")
def test_max_peak_raises_for_a_spike_freed_before_exit() -> None:
    with (
        pytest.raises(PeakExceeded, match=r"limited to 1\.00 MiB but peaked at") as info,
        gpu_session("short", device="cpu", max_peak="1 MiB"),
    ):
        _spike(32)
    assert info.value.report.peak_increase_bytes >= 32 * MIB - SLACK


@pytest.mark.usefixtures("exact")
def test_outer_peak_keeps_a_spike_that_the_inner_reset_wiped() -> None:
    with gpu_session("outer", device="cpu", sample_every=60) as outer:
        _spike(48)  # only VmHWM saw it, and the inner session's entry resets VmHWM
        with gpu_session("inner", device="cpu", sample_every=60) as inner:
            _spike(16)
    assert outer.report is not None and inner.report is not None
    assert outer.report.peak_increase_bytes is not None and outer.report.peak_increase_bytes >= 48 * MIB - SLACK
    assert inner.report.peak_increase_bytes is not None
    assert 16 * MIB - SLACK <= inner.report.peak_increase_bytes < 40 * MIB, "the inner peak starts at its own entry"


@pytest.mark.usefixtures("exact")
def test_outer_peak_covers_its_inner_sessions_spikes() -> None:
    with gpu_session("outer", device="cpu", sample_every=60) as outer:
        with gpu_session("first", device="cpu", sample_every=60) as first:
            _spike(64)
        _spike(40)  # between two siblings: wiped by the second one's reset
        with gpu_session("second", device="cpu", sample_every=60) as second:
            _spike(8)
    assert outer.report is not None and first.report is not None and second.report is not None
    assert first.report.peak_increase_bytes is not None and first.report.peak_increase_bytes >= 64 * MIB - SLACK
    assert second.report.peak_increase_bytes is not None and second.report.peak_increase_bytes < 32 * MIB
    assert outer.report.peak_allocated_bytes is not None and first.report.peak_allocated_bytes is not None
    assert outer.report.peak_allocated_bytes >= first.report.peak_allocated_bytes
    assert outer.report.peak_increase_bytes is not None and outer.report.peak_increase_bytes >= 64 * MIB - SLACK


def test_without_the_reset_the_report_says_the_peak_is_sampled(
    tmp_path: Path, fresh_reset_state: pytest.MonkeyPatch
) -> None:
    fresh_reset_state.setattr(_host, "_CLEAR_REFS_PATH", str(tmp_path))
    with gpu_session("sampled", device="cpu", sample_every=60) as s:
        _spike(32)
    report = s.report
    assert report is not None
    (note,) = _sampled_note(report)
    assert note.startswith("host peak sampled every 60 s: ")
    assert str(tmp_path) in note and note.endswith(", short spikes may be missed")
    # A VmHWM that was never reset holds the process's lifetime peak: it is not the block's.
    assert report.peak_increase_bytes is not None and report.peak_increase_bytes < 32 * MIB
    with gpu_session("default", device="cpu") as s:
        pass
    assert s.report is not None
    assert [n.split(":")[0] for n in _sampled_note(s.report)] == ["host peak sampled every 5 ms"]
