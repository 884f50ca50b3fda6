"""Release order at run time: ``empty_cache()`` before the references are dropped.

The sequences are the ones users copy: the whisper-plus maintainer's clear method (empty the
cache, then set the pipelines to None) and accelerate's ``release_memory``. On the host,
``vramguard.empty_cache("cpu")`` (``malloc_trim``) stands in for ``torch.cuda.empty_cache()``;
the ``gpu`` variants run the real thing.
"""

from __future__ import annotations

import gc
from typing import Any

import accelerate.utils.memory
import pytest
import torch
from accelerate.utils import release_memory

import vramguard
from vramguard import ReleaseOrderError, ReleaseOrderWarning, SessionReport, gpu_session

MIB = 2**20


class ASRDiarizationPipeline:
    """Holds two models, like whisper-plus's pipeline, with its maintainer's clear method."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.asr_pipeline: Any = torch.nn.Linear(512, 512).to(device)  # 1 MiB of weights
        self.diarization_pipeline: Any = torch.nn.Linear(512, 256).to(device)

    def _empty_cache(self) -> None:
        if self.device == "cpu":
            vramguard.empty_cache("cpu")
        else:
            torch.cuda.empty_cache()

    def clear_memory_as_suggested(self) -> None:
        """The order the maintainer suggested: the cache first, the references after."""
        self._empty_cache()
        self.asr_pipeline = None
        self.diarization_pipeline = None

    def clear_memory_in_order(self) -> None:
        self.asr_pipeline = None
        self.diarization_pipeline = None
        gc.collect()
        self._empty_cache()


def _weights_bytes() -> int:
    return (512 * 512 + 512 + 512 * 256 + 256) * 4


def _check_violation(report: SessionReport | None, site_part: str, at_least: int) -> None:
    assert report is not None and len(report.order_violations) == 1, report
    violation = report.order_violations[0]
    assert site_part in violation.call_site and "test_census_order.py:" in violation.call_site, violation
    assert violation.bytes_left_cached >= at_least, violation
    assert "order: empty_cache()" in str(report)


def _whisper_plus_suggested(device: str) -> SessionReport | None:
    pipeline = ASRDiarizationPipeline(device)
    session = gpu_session("whisper-plus", device=device, leaks="raise")
    with pytest.warns(ReleaseOrderWarning, match="ran before the references were dropped"), session:
        pipeline.clear_memory_as_suggested()
    return session.report


def test_whisper_plus_order_warns_and_names_the_call() -> None:
    report = _whisper_plus_suggested("cpu")
    _check_violation(report, "ASRDiarizationPipeline._empty_cache", _weights_bytes())


def test_whisper_plus_order_raises_in_strict_mode_with_the_report() -> None:
    pipeline = ASRDiarizationPipeline("cpu")
    with pytest.raises(ReleaseOrderError) as info, gpu_session("strict", device="cpu", strict=True):
        pipeline.clear_memory_as_suggested()
    report = info.value.report
    assert isinstance(report, SessionReport)
    _check_violation(report, "_empty_cache", _weights_bytes())


def test_references_dropped_first_is_clean() -> None:
    pipeline = ASRDiarizationPipeline("cpu")
    with gpu_session("in order", device="cpu", strict=True, leaks="raise") as s:
        pipeline.clear_memory_in_order()
    assert s.report is not None and s.report.order_violations == ()


def test_a_later_empty_cache_after_the_drop_makes_it_clean() -> None:
    with gpu_session("twice", device="cpu", strict=True, leaks="raise") as s:
        x = torch.ones(MIB)
        vramguard.empty_cache("cpu")
        del x
        vramguard.empty_cache("cpu")
    assert s.report is not None and s.report.order_violations == ()


@pytest.fixture
def host_release_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """accelerate's own release_memory, with the host's empty_cache where CUDA's would run
    (it calls clear_device_cache, which finds no accelerator here)."""

    def clear_device_cache(garbage_collection: bool = False) -> None:
        if garbage_collection:
            gc.collect()
        vramguard.empty_cache("cpu")

    monkeypatch.setattr(accelerate.utils.memory, "clear_device_cache", clear_device_cache)


def _release_memory_then_del(device: str) -> SessionReport | None:
    with gpu_session("accelerate", device=device, leaks="raise") as s:
        a = torch.ones(MIB, device=device)
        b = torch.ones(MIB, device=device)
        release_memory(a, b)
        del a, b
    return s.report


def _release_memory_as_documented(device: str) -> SessionReport | None:
    with gpu_session("accelerate", device=device, leaks="raise") as s:
        a = torch.ones(MIB, device=device)
        b = torch.ones(MIB, device=device)
        a, b = release_memory(a, b)
    return s.report


@pytest.mark.usefixtures("host_release_memory")
def test_release_memory_with_the_callers_names_still_bound() -> None:
    with pytest.warns(ReleaseOrderWarning):
        report = _release_memory_then_del("cpu")
    _check_violation(report, "clear_device_cache", 8 * MIB)


@pytest.mark.usefixtures("host_release_memory")
def test_release_memory_as_documented_still_empties_the_cache_too_early() -> None:
    """``a, b = release_memory(a, b)`` rebinds the names only after it returned: the cache was
    emptied while they still held the tensors."""
    with pytest.warns(ReleaseOrderWarning):
        report = _release_memory_as_documented("cpu")
    _check_violation(report, "clear_device_cache", 8 * MIB)


def test_release_memory_pattern_done_right_is_clean() -> None:
    with gpu_session("right", device="cpu", strict=True, leaks="raise") as s:
        a = torch.ones(MIB)
        b = torch.ones(MIB)
        del a, b
        gc.collect()
        vramguard.empty_cache("cpu")
    assert s.report is not None and s.report.order_violations == ()


def test_calls_from_other_devices_do_not_count() -> None:
    with gpu_session("cuda call", device="cpu", strict=True, leaks="raise") as s:
        x = torch.ones(MIB)
        torch.cuda.empty_cache()  # no CUDA memory here; not the host session's cache
        del x
    assert s.report is not None and s.report.order_violations == ()


@pytest.mark.gpu
def test_whisper_plus_order_on_cuda() -> None:
    torch.cuda.empty_cache()
    _check_violation(_whisper_plus_suggested("cuda"), "_empty_cache", _weights_bytes())


@pytest.mark.gpu
def test_release_memory_on_cuda() -> None:
    torch.cuda.empty_cache()
    with pytest.warns(ReleaseOrderWarning):
        report = _release_memory_as_documented("cuda")
    _check_violation(report, "clear_device_cache", 8 * MIB)
    with pytest.warns(ReleaseOrderWarning):
        report = _release_memory_then_del("cuda")
    _check_violation(report, "clear_device_cache", 8 * MIB)


@pytest.mark.gpu
def test_cuda_order_done_right_is_clean() -> None:
    with gpu_session("right-cuda", device="cuda", strict=True, leaks="raise") as s:
        x = torch.ones(MIB, device="cuda")
        del x
        gc.collect()
        torch.cuda.empty_cache()
    assert s.report is not None and s.report.order_violations == ()
