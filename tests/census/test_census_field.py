"""Leaks as training and inference code makes them: gradients, optimizer and scheduler state,
sparse tensors, data loaders, partials, generators, classes, weak references, several holders
at once, accelerate's ``release_memory``, and a heap of a million objects. Each test asserts
the bytes and the holder paths."""

from __future__ import annotations

import functools
import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from vramguard import Leak, SessionReport, gpu_session

KIB = 1024
MODEL: Any = None
OPT: Any = None
OUT: Any = None
EMB: Any = None
SCHED: Any = None
SCALER: Any = None
LOADER: Any = None
PARTIAL: Any = None
GEN: Any = None
ROOT: Any = None
HELD: list[Any] = []
WEAK: dict[str, Any] = {}
CACHE: dict[Any, Any] = {}


class Cached:
    """A module-level class whose attribute a block assigns."""


@pytest.fixture(autouse=True)
def _clear_globals() -> Iterator[None]:
    yield
    global MODEL, OPT, OUT, EMB, SCHED, SCALER, LOADER, PARTIAL, GEN, ROOT
    MODEL = OPT = OUT = EMB = SCHED = SCALER = LOADER = PARTIAL = GEN = ROOT = None
    HELD.clear()
    WEAK.clear()
    CACHE.clear()
    if "cached" in vars(Cached):
        del Cached.cached  # type: ignore[attr-defined]
    gc.collect()


def _report(report: SessionReport | None) -> SessionReport:
    assert report is not None
    return report


def _by_holder(report: SessionReport | None) -> dict[str, Leak]:
    """Each leak by its first holder; every holder path is one line."""
    leaks = _report(report).leaks
    for leak in leaks:
        assert leak.holders, leak
        assert all("\n" not in h for h in leak.holders), leak
        assert leak.group is None or "\n" not in leak.group, leak
    return {leak.holders[0]: leak for leak in leaks}


def _only(report: SessionReport | None, nbytes: int) -> Leak:
    matching = [leak for leak in _report(report).leaks if leak.nbytes == nbytes]
    assert len(matching) == 1, f"not one {nbytes}-byte leak in\n{report}"
    return matching[0]


# -- gradients and optimizer state ------------------------------------------------------------
def test_gradients_backward_wrote_count_with_the_parameters_and_are_named_from_them() -> None:
    global MODEL
    with gpu_session("grads", device="cpu", leaks="ignore") as s:
        MODEL = torch.nn.Linear(1024, 1024)
        MODEL(torch.ones(2, 1024)).sum().backward()  # the grads are never read from Python here
    report = _report(s.report)
    assert report.leaked_bytes == 2 * (1024 * 1024 + 1024) * 4 == 8_396_800
    leaks = _by_holder(report)
    name = f"global {__name__}.MODEL"
    assert {h: leak.nbytes for h, leak in leaks.items()} == {
        f"{name}.weight": 1024 * 1024 * 4,
        f"{name}.weight.grad": 1024 * 1024 * 4,
        f"{name}.bias": 1024 * 4,
        f"{name}.bias.grad": 1024 * 4,
    }
    assert all(len(leak.holders) == 1 and leak.group == name for leak in leaks.values())
    assert leaks[f"{name}.weight.grad"].description == "float32[1024, 1024] cpu"
    assert leaks[f"{name}.weight"].description == "Parameter float32[1024, 1024] cpu"


def test_a_gradient_read_in_the_block_is_one_tensor_not_two_views() -> None:
    global MODEL
    with gpu_session("grads read", device="cpu", leaks="ignore") as s:
        MODEL = torch.nn.Linear(256, 256)
        MODEL(torch.ones(2, 256)).sum().backward()
        assert MODEL.weight.grad is not None
    leak = _by_holder(s.report)[f"global {__name__}.MODEL.weight.grad"]
    assert leak.nbytes == 256 * 256 * 4
    assert leak.description == "float32[256, 256] cpu", leak


def test_adam_state_is_named_by_parameter_name_on_one_line() -> None:
    """pytorch_memlab's MemReporter scenario: a model and its Adam, one step, both kept."""
    global MODEL, OPT
    with gpu_session("adam", device="cpu", leaks="ignore") as s:
        MODEL = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
        OPT = torch.optim.Adam(MODEL.parameters())
        MODEL(torch.ones(2, 64)).sum().backward()
        OPT.step()
    leaks = _by_holder(s.report)
    model, opt = f"global {__name__}.MODEL", f"global {__name__}.OPT"
    sizes = {"0.weight": 64 * 64 * 4, "0.bias": 64 * 4, "2.weight": 8 * 64 * 4, "2.bias": 8 * 4}
    expected: dict[str, int] = {}
    for name, nbytes in sizes.items():
        expected[f"{model}[{name[0]}]{name[1:]}"] = nbytes
        expected[f"{model}[{name[0]}]{name[1:]}.grad"] = nbytes
        expected[f"{opt}.state[<{name}>]['exp_avg']"] = nbytes
        expected[f"{opt}.state[<{name}>]['exp_avg_sq']"] = nbytes
        expected[f"{opt}.state[<{name}>]['step']"] = 4  # a float32 scalar
    assert {h: leak.nbytes for h, leak in leaks.items()} == expected
    assert _report(s.report).leaked_bytes == sum(expected.values())
    # The optimizer owns its state: one group for all of it, named by the optimizer.
    assert {(leak.group, leak.owner_kind) for h, leak in leaks.items() if h.startswith(opt)} == {(opt, "Adam state")}


def test_adam_state_of_an_older_model_names_its_parameters_and_their_gradients() -> None:
    """The model predates the block: its gradients (read by the step) have no Python referrer,
    only their parameter's C++ ``.grad``; the state keys are named from the module tree."""

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = torch.nn.Linear(32, 32)
            self.fc2 = torch.nn.Linear(32, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.fc2(self.fc1(x).relu())
            return out

    global MODEL, OPT
    MODEL = Net()
    with gpu_session("adam old", device="cpu", leaks="ignore") as s:
        OPT = torch.optim.Adam(MODEL.parameters())
        MODEL(torch.ones(2, 32)).sum().backward()
        OPT.step()
    leaks = _by_holder(s.report)
    model, opt = f"global {__name__}.MODEL", f"global {__name__}.OPT"
    assert leaks[f"{model}.fc1.weight.grad"].nbytes == 32 * 32 * 4
    assert leaks[f"{model}.fc2.bias.grad"].nbytes == 4 * 4
    assert leaks[f"{opt}.state[<fc1.weight>]['exp_avg']"].nbytes == 32 * 32 * 4
    assert leaks[f"{opt}.state[<fc2.bias>]['exp_avg_sq']"].nbytes == 4 * 4
    params = 32 * 32 + 32 + 4 * 32 + 4
    assert _report(s.report).leaked_bytes == 3 * params * 4 + 4 * 4  # grads, two moments, steps


def test_optimizer_state_keys_are_parameter_names_when_no_leak_is_a_parameter() -> None:
    """Gradients set to None: nothing on the walk is a module or a parameter, yet the state's
    keys are named from the module tree."""
    global MODEL, OPT
    MODEL = torch.nn.Sequential(torch.nn.Linear(16, 16))
    with gpu_session("adam keys", device="cpu", leaks="ignore") as s:
        OPT = torch.optim.Adam(MODEL.parameters())
        MODEL(torch.ones(2, 16)).sum().backward()
        OPT.step()
        OPT.zero_grad(set_to_none=True)
    leaks = _by_holder(s.report)
    opt = f"global {__name__}.OPT"
    assert sorted(leaks) == sorted(
        f"{opt}.state[<0.{p}>]['{k}']" for p in ("weight", "bias") for k in ("exp_avg", "exp_avg_sq", "step")
    )
    assert leaks[f"{opt}.state[<0.weight>]['exp_avg']"].nbytes == 16 * 16 * 4
    assert _report(s.report).leaked_bytes == 2 * (16 * 16 + 16) * 4 + 2 * 4


# -- sparse tensors ---------------------------------------------------------------------------
def test_sparse_gradient_counts_values_and_indices_once() -> None:
    global EMB
    with gpu_session("sparse grad", device="cpu", leaks="ignore") as s:
        EMB = torch.nn.Embedding(100, 16, sparse=True)
        EMB(torch.tensor([1, 2, 2, 5])).sum().backward()
    grad = EMB.weight.grad
    assert grad is not None and grad.layout == torch.sparse_coo
    grad_bytes = grad._values().untyped_storage().nbytes() + grad._indices().untyped_storage().nbytes()
    assert grad_bytes == 4 * 16 * 4 + 4 * 8
    del grad
    leaks = _by_holder(s.report)
    name = f"global {__name__}.EMB"
    assert {h: leak.nbytes for h, leak in leaks.items()} == {f"{name}.weight": 100 * 16 * 4, f"{name}.weight.grad": 288}
    assert _report(s.report).leaked_bytes == 100 * 16 * 4 + 288


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta state:UserWarning")
def test_sparse_csr_in_a_global_list_counts_every_component() -> None:
    with gpu_session("csr", device="cpu", leaks="ignore") as s:
        dense = torch.zeros(64, 64)
        dense[torch.arange(64), torch.arange(64)] = 1.0
        HELD.append(dense.to_sparse_csr())
        del dense
    csr = HELD[0]
    parts = (csr.values(), csr.crow_indices(), csr.col_indices())
    storages = {p.untyped_storage()._cdata: p.untyped_storage().nbytes() for p in parts}
    del csr, parts
    assert len(storages) == 3 and sum(storages.values()) >= 64 * 4 + 65 * 8 + 64 * 8
    leak = _only(s.report, sum(storages.values()))
    assert leak.holders == (f"global {__name__}.HELD[0]",), leak
    assert _report(s.report).leaked_bytes == sum(storages.values())


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta state:UserWarning")
@pytest.mark.filterwarnings("ignore:Sparse invariant checks are implicitly disabled:UserWarning")
def test_sparse_csr_built_from_its_components_is_counted_once() -> None:
    def build() -> torch.Tensor:
        crow = torch.arange(65, dtype=torch.int64)
        col = torch.arange(64, dtype=torch.int64)
        return torch.sparse_csr_tensor(crow, col, torch.ones(64), size=(64, 64))

    with gpu_session("csr parts", device="cpu", leaks="ignore") as s:
        HELD.append(build())
    assert _report(s.report).leaked_bytes == 64 * 4 + 65 * 8 + 64 * 8, s.report
    assert _only(s.report, 64 * 4 + 65 * 8 + 64 * 8).holders == (f"global {__name__}.HELD[0]",)


# -- training and data-loading state ----------------------------------------------------------
def test_lr_scheduler_state_is_named_through_the_scheduler() -> None:
    global SCHED
    model = torch.nn.Linear(4, 4)
    with gpu_session("scheduler", device="cpu", leaks="ignore") as s:
        opt = torch.optim.SGD(model.parameters(), lr=torch.tensor(0.1))  # a tensor learning rate
        SCHED = torch.optim.lr_scheduler.StepLR(opt, step_size=1)
        opt.step()
        SCHED.step()
        del opt
    leaks = _by_holder(s.report)
    sched = f"global {__name__}.SCHED"
    assert f"{sched}.base_lrs[0]" in leaks and f"{sched}._last_lr[0]" in leaks, sorted(leaks)
    assert f"{sched}.optimizer.param_groups[0]['initial_lr']" in leaks, sorted(leaks)
    assert all(h.startswith(f"{sched}.") and leak.nbytes == 4 for h, leak in leaks.items()), sorted(leaks)
    assert len(leaks) == 4 and _report(s.report).leaked_bytes == 4 * 4


def test_grad_scaler_state_is_named() -> None:
    global MODEL, OPT, SCALER
    try:
        torch.amp.GradScaler("cpu")
    except Exception as error:  # pragma: no cover - depends on the torch build
        pytest.skip(f"torch.amp.GradScaler('cpu') does not work here: {error}")
    MODEL = torch.nn.Linear(8, 8)
    OPT = torch.optim.SGD(MODEL.parameters(), lr=0.1)
    with gpu_session("scaler", device="cpu", leaks="ignore") as s:
        SCALER = torch.amp.GradScaler("cpu")
        SCALER.scale(MODEL(torch.ones(2, 8)).sum()).backward()
        SCALER.step(OPT)
        SCALER.update()
        OPT.zero_grad(set_to_none=True)
    leaks = _by_holder(s.report)
    scaler = f"global {__name__}.SCALER"
    assert {h: (leak.nbytes, leak.description) for h, leak in leaks.items()} == {
        f"{scaler}._scale": (4, "float32[] cpu"),
        f"{scaler}._growth_tracker": (4, "int32[] cpu"),
    }


class _Samples(torch.utils.data.Dataset[torch.Tensor]):
    def __init__(self) -> None:
        self.data = torch.ones(256, 8)

    def __len__(self) -> int:
        return 256

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.data[index]


def test_dataloader_over_a_dataset_holding_a_tensor() -> None:
    global LOADER
    with gpu_session("loader", device="cpu", leaks="ignore") as s:
        LOADER = torch.utils.data.DataLoader(_Samples(), batch_size=32)
        batch = next(iter(LOADER))
        assert batch.shape == (32, 8)
        del batch
    leak = _only(s.report, 256 * 8 * 4)
    assert leak.holders == (f"global {__name__}.LOADER.dataset.data",), leak
    assert _report(s.report).leaked_bytes == 256 * 8 * 4


def test_partial_binding_tensors_positionally_and_by_keyword() -> None:
    global PARTIAL
    with gpu_session("partial", device="cpu", leaks="ignore") as s:
        PARTIAL = functools.partial(torch.add, torch.ones(3 * KIB // 4), alpha=1)
        HELD.append(functools.partial(torch.mul, other=torch.ones(5 * KIB // 4)))
    assert _only(s.report, 3 * KIB).holders == (f"global {__name__}.PARTIAL.args[0]",)
    assert _only(s.report, 5 * KIB).holders == (f"global {__name__}.HELD[0].keywords['other']",)
    assert _report(s.report).leaked_bytes == 8 * KIB


def test_suspended_generator_local() -> None:
    global GEN

    def stream() -> Iterator[int]:
        window = torch.ones(7 * KIB // 4)
        for step in range(3):
            yield step + int(window[0])

    with gpu_session("generator", device="cpu", leaks="ignore") as s:
        GEN = stream()
        next(GEN)
    holder = _only(s.report, 7 * KIB).holders
    assert len(holder) == 1 and holder[0].startswith("local 'window' in suspended "), holder
    assert ".<locals>.stream() at " in holder[0] and "test_census_field.py:" in holder[0], holder
    assert holder[0].endswith(f"via global {__name__}.GEN"), holder


def test_class_attributes_assigned_in_the_block() -> None:
    with gpu_session("class", device="cpu", leaks="ignore") as s:
        Cached.cached = torch.ones(9 * KIB // 4)  # type: ignore[attr-defined]

        class Holder:
            cached = torch.ones(11 * KIB // 4)

    assert _only(s.report, 9 * KIB).holders == (f"class {__name__}.Cached.cached",)
    qualname = f"{__name__}.test_class_attributes_assigned_in_the_block.<locals>.Holder"
    assert _only(s.report, 11 * KIB).holders == (f"class {qualname}.cached",)
    assert _report(s.report).leaked_bytes == 20 * KIB
    assert Holder.cached.numel() == 11 * KIB // 4


def test_weak_references_are_never_holders() -> None:
    with gpu_session("weak", device="cpu", leaks="ignore") as s:
        t = torch.ones(13 * KIB // 4)
        HELD.append(t)
        WEAK["values"] = weakref.WeakValueDictionary({"t": t})
        WEAK["keys"] = weakref.WeakKeyDictionary({t: "payload"})
        WEAK["ref"] = weakref.ref(t)
        WEAK["proxy"] = weakref.proxy(t)
        del t
    assert _only(s.report, 13 * KIB).holders == (f"global {__name__}.HELD[0]",)
    assert _report(s.report).leaked_bytes == 13 * KIB


def test_a_dict_keyed_by_a_parameter_names_the_parameter() -> None:
    global MODEL
    MODEL = torch.nn.Sequential(torch.nn.Linear(4, 4))
    loose = torch.nn.Parameter(torch.ones(3, 5))
    with gpu_session("param key", device="cpu", leaks="ignore") as s:
        CACHE["by_param"] = {MODEL[0].weight: torch.ones(15 * KIB // 4), loose: torch.ones(17 * KIB // 4)}
    by_param = f"global {__name__}.CACHE['by_param']"
    assert _only(s.report, 15 * KIB).holders == (f"{by_param}[<0.weight>]",)
    assert _only(s.report, 17 * KIB).holders == (f"{by_param}[<Parameter [3, 5]>]",)
    assert _only(s.report, 15 * KIB).group == by_param
    assert _report(s.report).leaked_bytes == 32 * KIB


# -- several holders ---------------------------------------------------------------------------
def test_a_module_held_by_a_global_and_by_a_live_outputs_graph_lists_both() -> None:
    class Scaled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(256, 256)
            self.register_buffer("scale", torch.full((256,), 2.0))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin(x) * self.scale

    global MODEL, OUT
    with gpu_session("two holders", device="cpu", leaks="ignore") as s:
        MODEL = Scaled()
        OUT = MODEL(torch.ones(4, 256))  # not kept: a second global
    leaks = _by_holder(s.report)
    model, out = f"global {__name__}.MODEL", f"global {__name__}.OUT"
    weight = leaks[f"{model}.lin.weight"]
    assert weight.nbytes == 256 * 256 * 4
    assert weight.holders == (f"{model}.lin.weight", f"the leaf accumulated by AccumulateGrad of {out}"), weight
    scale = leaks[f"{model}.scale"]
    assert scale.nbytes == 256 * 4
    assert scale.holders == (f"{model}.scale", f"saved for backward by MulBackward0 of {out}"), scale
    assert weight.group == scale.group == model
    assert leaks[out].nbytes == 4 * 256 * 4 and leaks[out].holders == (out,)


# -- accelerate ----------------------------------------------------------------------------------
def test_accelerate_release_memory_without_rebinding_names_the_callers_locals() -> None:
    """accelerate's memory tests: ``release_memory(a, b)`` sets its own list's items to None;
    the caller's names still hold the tensors unless it rebinds them (``a, b = ...``)."""
    utils = pytest.importorskip("accelerate.utils")

    def infer() -> SessionReport | None:
        with gpu_session("release_memory", device="cpu", leaks="ignore") as s:
            a = torch.ones(19 * KIB // 4)
            b = torch.ones(21 * KIB // 4)
            utils.release_memory(a, b)
        return s.report

    report = infer()
    for name, nbytes in (("a", 19 * KIB), ("b", 21 * KIB)):
        holders = _only(report, nbytes).holders
        assert len(holders) == 1 and holders[0].startswith(f"local '{name}' in "), holders
        assert ".<locals>.infer() at " in holders[0] and "test_census_field.py:" in holders[0], holders
    assert _report(report).leaked_bytes == 40 * KIB


# -- scale --------------------------------------------------------------------------------------
def test_holders_are_named_with_a_million_extra_live_objects() -> None:
    class Node:
        pass

    global ROOT
    extra = [[i] for i in range(1_000_000)]
    with gpu_session("scale", device="cpu", leaks="ignore") as s:
        CACHE["k"] = torch.ones(23 * KIB // 4)
        ROOT = Node()
        ROOT.a = Node()
        ROOT.a.b = Node()
        ROOT.a.b.c = Node()
        ROOT.a.b.c.d = torch.ones(29 * KIB // 4)
    assert len(extra) == 1_000_000
    del extra
    assert _only(s.report, 23 * KIB).holders == (f"global {__name__}.CACHE['k']",)
    assert _only(s.report, 29 * KIB).holders == (f"global {__name__}.ROOT.a.b.c.d",)
    assert _report(s.report).leaked_bytes == 52 * KIB
