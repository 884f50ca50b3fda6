"""Who holds a leak: one test per holder kind, each asserting the path names the root."""

from __future__ import annotations

import gc
import sys
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

from vramguard import Leak, SessionReport, gpu_session

KIB = 1024
CACHE: dict[str, list[Any]] = {}
PIPE: Any = None
MODEL: Any = None
ERR: Any = None
OUT: Any = None
HOOKED: Any = None


@pytest.fixture(autouse=True)
def _clear_globals() -> Iterator[None]:
    yield
    global PIPE, MODEL, ERR, OUT, HOOKED
    CACHE.clear()
    PIPE = MODEL = ERR = OUT = HOOKED = None
    gc.collect()


def _leak_of(report: SessionReport | None, nbytes: int) -> Leak:
    assert report is not None
    matching = [leak for leak in report.leaks if leak.nbytes == nbytes]
    assert matching, f"no {nbytes}-byte leak in\n{report}"
    return matching[0]


def test_module_global_names_the_module_the_name_and_the_keys() -> None:
    with gpu_session("global", device="cpu", leaks="ignore") as s:
        CACHE["k"] = [None, None, None, torch.ones(64 * KIB // 4)]
    leak = _leak_of(s.report, 64 * KIB)
    assert any(h.startswith("global ") and f"{__name__}.CACHE['k'][3]" in h for h in leak.holders), leak
    assert leak.description == "float32[16384] cpu"
    assert s.report is not None and s.report.leaked_bytes == 64 * KIB


def test_local_of_a_live_frame_names_the_variable_and_the_function() -> None:
    def infer() -> SessionReport | None:
        with gpu_session("local", device="cpu", leaks="ignore") as s:
            out = torch.ones(32 * KIB // 4)
            out.add_(1)
        return s.report

    leak = _leak_of(infer(), 32 * KIB)
    holder = leak.holders[0]
    assert holder.startswith("local 'out' in ") and "infer()" in holder, leak
    assert "test_census_holders.py:" in holder


def test_attribute_chain_names_the_global_and_every_attribute() -> None:
    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = torch.nn.ModuleList([torch.nn.Linear(32, 32) for _ in range(2)])

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = Encoder()

    class Holder:
        pass

    global PIPE
    with gpu_session("attributes", device="cpu", leaks="ignore") as s:
        PIPE = Holder()
        PIPE.asr = Holder()
        PIPE.asr.model = Model()
    leak = _leak_of(s.report, 32 * 32 * 4)
    assert any(f"global {__name__}.PIPE.asr.model.encoder.layers[" in h and h.endswith(".weight") for h in leak.holders)
    assert leak.description.startswith("Parameter float32[32, 32]")
    # Two layers, weight and bias each: four storages, all named.
    assert s.report is not None and len(s.report.leaks) == 4
    assert s.report.leaked_bytes == 2 * (32 * 32 + 32) * 4


def test_closure_of_a_forward_hook_names_the_variable_the_function_and_the_module() -> None:
    global MODEL
    MODEL = torch.nn.Sequential()
    MODEL.add_module("layer1", torch.nn.Linear(8, 8))

    def make_hook() -> Callable[..., None]:
        saved = torch.ones(16 * KIB // 4)

        def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
            saved.add_(0)

        return hook

    with gpu_session("closure", device="cpu", leaks="ignore") as s:
        MODEL.layer1.register_forward_hook(make_hook())
    leak = _leak_of(s.report, 16 * KIB)
    holder = leak.holders[0]
    assert "closure 'saved' of " in holder and "make_hook.<locals>.hook" in holder, leak
    assert "forward hook of global" in holder and "MODEL.layer1" in holder, leak


def test_closure_held_by_a_global_function() -> None:
    global HOOKED

    def make() -> Callable[[], torch.Tensor]:
        weights = torch.ones(8 * KIB // 4)
        return lambda: weights

    with gpu_session("closure2", device="cpu", leaks="ignore") as s:
        HOOKED = make()
    holder = _leak_of(s.report, 8 * KIB).holders[0]
    assert holder.startswith("closure 'weights' of ") and f"via global {__name__}.HOOKED" in holder


def test_stored_exception_names_the_exception_the_frame_and_the_local() -> None:
    global ERR

    def fail() -> None:
        x = torch.ones(24 * KIB // 4)
        raise ValueError(f"bad {x.shape}")

    with gpu_session("traceback", device="cpu", leaks="ignore") as s:
        try:
            fail()
        except ValueError as error:
            ERR = error
    holder = _leak_of(s.report, 24 * KIB).holders[0]
    assert holder.startswith("traceback of ValueError raised in ") and "fail()" in holder, holder
    assert "frame local 'x'" in holder and f"via global {__name__}.ERR" in holder, holder


def test_traceback_kept_in_a_variable() -> None:
    def fail() -> None:
        y = torch.ones(12 * KIB // 4)
        raise KeyError(str(y.numel()))

    def handle() -> SessionReport | None:
        with gpu_session("traceback2", device="cpu", leaks="ignore") as s:
            try:
                fail()
            except KeyError:
                tb = sys.exc_info()[2]
            assert tb is not None
        return s.report

    holder = _leak_of(handle(), 12 * KIB).holders[0]
    assert "traceback of an exception raised in " in holder and "frame local 'y'" in holder, holder
    assert "local 'tb' in " in holder and "handle()" in holder, holder


def test_tensor_saved_for_backward_names_the_node_and_the_output() -> None:
    global OUT
    w = torch.ones(16, requires_grad=True)
    with gpu_session("autograd", device="cpu", leaks="ignore") as s:
        x = torch.full((20 * KIB // 4, 16), 2.0)
        OUT = (x * w).sum()
        del x
    leak = _leak_of(s.report, 20 * KIB * 16)
    assert any(h == f"saved for backward by MulBackward0 of global {__name__}.OUT" for h in leak.holders), leak


def test_reference_cycle_is_reported_as_freed_by_the_gc_step() -> None:
    class Node:
        def __init__(self) -> None:
            self.me = self
            self.payload = torch.ones(40 * KIB // 4)

    with gpu_session("cycle", device="cpu", leaks="raise") as s:
        node = Node()
        del node
    report = s.report
    assert report is not None and report.leaked_bytes == 0 and report.leaks == ()
    assert len(report.cycles) == 1, report
    assert "40.0 KiB" in report.cycles[0] and "Node" in report.cycles[0], report.cycles
    assert "cycle:" in str(report) and report.to_dict()["cycles"] == list(report.cycles)
    assert SessionReport.from_dict(report.to_dict()).cycles == report.cycles


def test_reference_cycle_without_the_release_is_a_leak_named_unreachable() -> None:
    class Ring:
        def __init__(self) -> None:
            self.me = self
            self.payload = torch.ones(28 * KIB // 4)

    with gpu_session("cycle2", device="cpu", leaks="ignore", release=False) as s:
        ring = Ring()
        del ring
    holder = _leak_of(s.report, 28 * KIB).holders[0]
    assert holder.startswith("unreachable from any global or live frame") and "Ring" in holder, holder
    gc.collect()


def test_buffer_and_suspended_generator_local() -> None:
    global PIPE, HOOKED

    def produce() -> Iterator[int]:
        chunk = torch.ones(6 * KIB // 4)
        yield chunk.numel()

    with gpu_session("buffer", device="cpu", leaks="ignore") as s:
        PIPE = torch.nn.BatchNorm1d(1000)
        HOOKED = produce()
        next(HOOKED)
    report = s.report
    assert report is not None
    holders = sorted(h for leak in report.leaks if leak.nbytes == 4000 for h in leak.holders)
    names = ("running_mean", "running_var", "weight", "bias")
    assert holders == sorted(f"global {__name__}.PIPE.{name}" for name in names), holders
    holder = _leak_of(s.report, 6 * KIB).holders[0]
    assert holder.startswith("local 'chunk' in suspended ") and "produce()" in holder, holder
    assert holder.endswith(f"via global {__name__}.HOOKED"), holder


def test_a_locals_dict_the_user_holds_keeps_its_keys() -> None:
    """Before 3.13 ``locals()`` is the frame's own snapshot dict, which the census reads: it
    must not empty it while user code holds it."""

    def infer() -> tuple[dict[str, Any], SessionReport | None]:
        marker = "kept"
        ctx = locals()
        with gpu_session("locals", device="cpu", leaks="ignore") as s:
            out = torch.ones(24 * KIB // 4)
            out.add_(1)
        return ctx, s.report

    ctx, report = infer()
    assert ctx.get("marker") == "kept", sorted(ctx)
    assert _leak_of(report, 24 * KIB).holders[0].startswith("local 'out' in "), report


def test_reading_a_frames_locals_leaves_no_copy_alive() -> None:
    """A local the census saw and the user then deletes is freed (no snapshot keeps it)."""

    def infer() -> bool:
        with gpu_session("no copy", device="cpu", leaks="ignore") as s:
            out = torch.ones(20 * KIB // 4)
        _leak_of(s.report, 20 * KIB)
        ref = weakref.ref(out)
        del out
        return ref() is None

    assert infer()
