"""What the census tracks: every way a tensor can be created in a block, and what is no leak."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from vramguard import SessionReport, gpu_session
from vramguard.census import Census
from vramguard.census._scan import heap_tensors, heap_tensors_slow
from vramguard.census._sites import ENV_VAR

KIB = 1024
RETAINED: list[Any] = []


@pytest.fixture(autouse=True)
def _clear_retained() -> Iterator[None]:
    yield
    RETAINED.clear()
    gc.collect()


def _report(report: SessionReport | None) -> SessionReport:
    assert report is not None
    return report


def test_factory_functions_are_tracked_and_counted_exactly() -> None:
    with gpu_session("factories", device="cpu", leaks="ignore") as s:
        RETAINED.append(torch.randn(1024))
        RETAINED.append(torch.empty(256, dtype=torch.float64))
        RETAINED.append(torch.zeros(512, dtype=torch.int16))
        RETAINED.append(torch.arange(100, dtype=torch.int64))
    report = _report(s.report)
    assert sorted(leak.nbytes for leak in report.leaks) == [800, 1024, 2048, 4096]
    assert report.leaked_bytes == 800 + 1024 + 2048 + 4096
    assert report.leaked_bytes == sum(leak.nbytes for leak in report.leaks)


def test_module_parameters_inference_mode_and_forward_outputs_are_tracked() -> None:
    with gpu_session("model", device="cpu", leaks="ignore") as s:
        layer = torch.nn.Linear(64, 32)
        with torch.inference_mode():
            out = layer(torch.ones(4, 64))
        RETAINED.extend([layer, out])
        del layer, out
    report = _report(s.report)
    descriptions = sorted(leak.description for leak in report.leaks)
    assert descriptions == ["Parameter float32[32, 64] cpu", "Parameter float32[32] cpu", "float32[4, 32] cpu"]
    assert report.leaked_bytes == (32 * 64 + 32 + 4 * 32) * 4


def test_views_share_one_storage_counted_once() -> None:
    with gpu_session("views", device="cpu", leaks="ignore") as s:
        base = torch.ones(64 * KIB // 4)
        RETAINED.extend([base[:10], base[100:], base.view(16, -1)])
        del base
    report = _report(s.report)
    assert len(report.leaks) == 1 and report.leaked_bytes == 64 * KIB
    assert "views)" in report.leaks[0].description  # the base lives on as the views' _base


def test_kept_objects_and_what_they_reach_are_not_leaks() -> None:
    class Result:
        def __init__(self, tensor: torch.Tensor) -> None:
            self.tensor = tensor

    with gpu_session("keep", device="cpu", leaks="raise") as s:
        kept = s.keep({"logits": torch.ones(1024), "model": torch.nn.Linear(8, 8)})
        wrapped = s.keep(Result(torch.ones(2048)))  # reached through the kept list, not tensors_in
    report = _report(s.report)
    assert report.leaked_bytes == 0 and report.leaks == ()
    del kept, wrapped


def test_decorated_function_return_value_is_kept() -> None:
    @gpu_session(device="cpu", leaks="raise")
    def make() -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.ones(100, requires_grad=True)
        return x * 2, torch.zeros(10)

    out = make()
    assert make.vram_report.leaked_bytes == 0  # type: ignore[attr-defined]
    del out


def test_meta_tensors_and_preexisting_tensors_are_not_leaks() -> None:
    before = torch.ones(4096)
    with gpu_session("meta", device="cpu", leaks="raise") as s:
        RETAINED.append(torch.empty(1 << 20, device="meta"))
        RETAINED.append(before[:16])  # a new view of an old storage allocates nothing
    assert _report(s.report).leaks == ()


def test_other_device_is_not_this_sessions_leak() -> None:
    census = Census(torch.device("cuda", 0))
    census.start()
    RETAINED.append(torch.ones(1024))  # a host tensor: not the CUDA session's
    census.stop([])
    leaks, violations = census.finish([])
    assert leaks == () and violations == ()


def test_census_keeps_no_reference_to_what_it_tracked() -> None:
    def block() -> tuple[weakref.ref[torch.Tensor], weakref.ref[torch.Tensor]]:
        with gpu_session("refs", device="cpu", leaks="ignore") as s:
            out = torch.ones(1024)
            RETAINED.append(torch.ones(2048))
        assert len(_report(s.report).leaks) == 2
        local_ref = weakref.ref(out)
        del out  # the census read this frame's locals: no copy may survive
        assert local_ref() is None
        return local_ref, weakref.ref(RETAINED[0])

    _, global_ref = block()
    RETAINED.clear()
    assert global_ref() is None


def test_census_off_pushes_no_mode_and_records_nothing() -> None:
    from vramguard.census import _order

    with gpu_session("off", device="cpu", census=False, leaks="ignore") as s:
        assert torch._C._len_torch_dispatch_stack() == 0
        assert not _order.recording()
        RETAINED.append(torch.ones(1024))
    assert _report(s.report).leaks == ()
    with gpu_session("on", device="cpu", leaks="ignore"):
        assert torch._C._len_torch_dispatch_stack() == 0  # the default census is a heap diff
        assert _order.recording()
        # torch.cuda.empty_cache() empties no host cache: a host census leaves torch as it is.
        assert not getattr(torch.cuda.empty_cache, "__vramguard_wrapper__", False)
    assert not getattr(torch.cuda.empty_cache, "__vramguard_wrapper__", False)


def test_torch_empty_cache_is_wrapped_while_a_cuda_recorder_runs() -> None:
    from vramguard.census import _order

    host, cuda = _order.OrderRecorder(torch.device("cpu")), _order.OrderRecorder(torch.device("cuda:0"))
    host.start()
    assert not getattr(torch.cuda.empty_cache, "__vramguard_wrapper__", False)
    cuda.start()  # no CUDA call: a recorder only wraps the function
    assert getattr(torch.cuda.empty_cache, "__vramguard_wrapper__", False)
    host.stop()
    assert getattr(torch.cuda.empty_cache, "__vramguard_wrapper__", False) and _order.recording()
    cuda.stop()
    assert not getattr(torch.cuda.empty_cache, "__vramguard_wrapper__", False) and not _order.recording()


def test_creation_sites_are_recorded_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "1")

    def build() -> SessionReport | None:
        with gpu_session("sites", device="cpu", leaks="ignore") as s:
            assert torch._C._len_torch_dispatch_stack() == 1
            RETAINED.append(torch.nn.Linear(16, 16))
            RETAINED.append(torch.ones(4096))
        return s.report

    report = _report(build())
    assert torch._C._len_torch_dispatch_stack() == 0
    assert len(report.leaks) == 3
    for leak in report.leaks:
        assert leak.created_at is not None and "test_census_tracking.py:" in leak.created_at, leak
        assert leak.created_at.endswith("in test_creation_sites_are_recorded_when_asked.<locals>.build")


def test_heap_scan_finds_every_tensor_kind() -> None:
    class Tagged(torch.Tensor):
        pass

    with torch.inference_mode():
        frozen = torch.ones(3)
    objects = [torch.ones(2), torch.nn.Parameter(torch.ones(2)), torch.ones(2).as_subclass(Tagged), frozen]
    fast = {id(t) for t in heap_tensors()}
    assert all(id(t) in fast for t in objects)
    assert fast == {id(t) for t in heap_tensors_slow()}
