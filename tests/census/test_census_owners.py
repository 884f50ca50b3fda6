"""Leaks grouped by what owns them, on real libraries: a transformers ``DynamicCache`` kept after
``generate()``, model outputs and dataclasses in a list, the PyTorch FAQ's evaluation loop
without ``no_grad``, a ``torch.compile``'d training step, numpy arrays sharing a tensor's memory.
Models are tiny and built from configs (no download)."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import pytest
import torch

from vramguard import SessionReport, gpu_session
from vramguard.core._sizes import format_size

transformers = pytest.importorskip("transformers", reason="needs the trainer extra (transformers)")
np = pytest.importorskip("numpy")

PKV: Any = None
HOARD: list[Any] = []
EVAL_LOSSES: list[torch.Tensor] = []
ONE: Any = None
ARR: Any = None
OUT: Any = None


@pytest.fixture(autouse=True)
def _drop_globals() -> Any:
    yield
    global PKV, ONE, ARR, OUT
    PKV = ONE = ARR = OUT = None
    HOARD.clear()
    EVAL_LOSSES.clear()


def _report(report: SessionReport | None) -> SessionReport:
    assert report is not None
    return report


def _leak_lines(report: SessionReport) -> list[str]:
    return [line.strip() for line in str(report).splitlines() if line.strip().startswith("leak:")]


def _storage_bytes(tensors: list[torch.Tensor]) -> int:
    storages = {t.untyped_storage()._cdata: t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


def tiny_llama() -> Any:
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return transformers.LlamaForCausalLM(config).eval()


# -- a KV cache ---------------------------------------------------------------------------------
def test_a_kept_dynamic_cache_is_one_line_with_its_exact_bytes_and_the_global() -> None:
    global PKV
    model = tiny_llama()
    ids = torch.randint(0, 64, (1, 5))
    with gpu_session("generate", device="cpu", leaks="ignore") as s:
        out = model.generate(ids, max_new_tokens=4, do_sample=False, return_dict_in_generate=True, pad_token_id=0)
        PKV = out.cache
        del out
    report = _report(s.report)
    assert type(PKV).__name__ == "DynamicCache"
    cache_tensors = [t for layer in PKV.layers for t in (layer.keys, layer.values)]
    nbytes = _storage_bytes(cache_tensors)
    holder = f"global {__name__}.PKV"
    groups = [(g.holder, g.owner_kind, g.nbytes, g.count) for g in report.leak_groups]
    assert groups == [(holder, "KV cache, 2 layers", nbytes, 4)], str(report)
    assert report.leaked_bytes == nbytes
    assert _leak_lines(report) == [f"leak: KV cache, 2 layers, 4.00 KiB, held by {holder}"]
    assert report.leak_groups[0].other_holders == ()  # the layers' paths are inside the group
    assert sorted(leak.holders[0] for leak in report.leaks) == [
        f"global {__name__}.PKV.layers[{i}].{kv}" for i in (0, 1) for kv in ("keys", "values")
    ]


# -- model outputs, dataclasses, named tuples ------------------------------------------------------
@dataclasses.dataclass
class Batch:
    inputs: torch.Tensor
    labels: torch.Tensor


class Pair(NamedTuple):
    first: torch.Tensor
    second: torch.Tensor


def test_model_outputs_and_dataclasses_in_a_list_are_one_group_named_by_the_list() -> None:
    with gpu_session("hoard", device="cpu", leaks="ignore") as s:
        for _ in range(3):
            HOARD.append(transformers.modeling_outputs.CausalLMOutput(logits=torch.ones(64)))
            HOARD.append(Batch(torch.ones(32), torch.ones(16)))
    report = _report(s.report)
    holder = f"global {__name__}.HOARD"
    assert [(g.holder, g.nbytes, g.count) for g in report.leak_groups] == [(holder, 3 * (64 + 32 + 16) * 4, 9)]
    assert _leak_lines(report) == [f"leak: 1.31 KiB in 9 tensors held by {holder}"]
    paths = {leak.holders[0] for leak in report.leaks}
    assert f"{holder}[0]['logits']" in paths and f"{holder}[5].labels" in paths, paths


@pytest.mark.parametrize(
    ("make", "label"),
    [
        (
            lambda: transformers.modeling_outputs.CausalLMOutput(logits=torch.ones(64), loss=torch.ones(())),
            "model output CausalLMOutput",
        ),
        (lambda: Batch(torch.ones(64), torch.ones(())), "dataclass Batch"),
        (lambda: Pair(torch.ones(64), torch.ones(())), "named tuple Pair"),
    ],
    ids=["ModelOutput", "dataclass", "namedtuple"],
)
def test_an_owner_kept_alone_is_one_group_that_says_what_it_is(make: Any, label: str) -> None:
    global ONE
    with gpu_session("one", device="cpu", leaks="ignore") as s:
        ONE = make()
    report = _report(s.report)
    holder = f"global {__name__}.ONE"
    assert [(g.holder, g.owner_kind, g.nbytes, g.count) for g in report.leak_groups] == [(holder, label, 65 * 4, 2)]
    assert _leak_lines(report) == [f"leak: {label}, 260 B, held by {holder}"]


# -- the FAQ's evaluation loop -------------------------------------------------------------------
def test_the_faqs_evaluation_loop_without_no_grad_is_one_group_under_the_default_bounds() -> None:
    """https://pytorch.org/docs/stable/notes/faq.html: ``total_loss += loss`` (here: a list of
    losses) keeps each iteration's graph. 300 losses and their saved activations are more leaks
    than the default ``holder_leaks`` (256): every one is named through the list all the same."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    with gpu_session("faq", device="cpu", leaks="ignore") as s:
        for _ in range(300):
            x = torch.randn(8, 16)
            loss = ((model(x) - 1) ** 2).mean()
            EVAL_LOSSES.append(loss)
        del x, loss
    report = _report(s.report)
    holder = f"global {__name__}.EVAL_LOSSES"
    groups = report.leak_groups
    assert [g.holder for g in groups] == [holder], str(report)
    assert groups[0].count == len(report.leaks) > 300
    assert report.leaked_bytes == groups[0].nbytes
    assert _leak_lines(report) == [f"leak: {groups[0].lines()[0].removeprefix('leak: ')}"]
    losses = [leak for leak in report.leaks if leak.description == "float32[] cpu"]
    assert sorted(leak.holders[0] for leak in losses) == sorted(f"{holder}[{i}]" for i in range(300))
    saved = [leak for leak in report.leaks if leak.description != "float32[] cpu"]
    assert all(leak.holders[0].startswith("saved for backward by ") for leak in saved), saved[:3]
    assert "nothing" not in str(report.leaks)


def test_an_outputs_graph_is_grouped_with_the_output() -> None:
    global OUT
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    with gpu_session("graph", device="cpu", leaks="ignore") as s:
        OUT = model(torch.ones(8, 16)).sum()
    report = _report(s.report)
    holder = f"global {__name__}.OUT"
    (group,) = report.leak_groups
    assert group.holder == holder, str(report)
    assert group.count == len(report.leaks) >= 3  # the output, the input, the activation
    saved = group.count - 1
    kind = f"output with its autograd graph, {saved} saved tensors"
    assert group.owner_kind == kind
    assert _leak_lines(report) == [f"leak: {kind}, {format_size(group.nbytes)}, held by {holder}"]


def test_outputs_their_own_nodes_saved_are_counted_in_the_graph() -> None:
    """``exp`` saves its result as a new tensor sharing the output's storage: once the output's
    Python object is gone only the node holds it, and no survivor names it."""
    global OUT
    weight = torch.ones(64, requires_grad=True)
    with gpu_session("exp", device="cpu", leaks="ignore") as s:
        x = torch.ones(64) * weight
        x = x.exp().exp()
        OUT = x.sum()
        del x
    report = _report(s.report)
    (group,) = report.leak_groups
    kind = "output with its autograd graph, 3 saved tensors"
    assert (group.holder, group.owner_kind) == (f"global {__name__}.OUT", kind)
    assert report.leaked_bytes == group.nbytes == 3 * 256 + 4
    exps = [leak for leak in report.leaks if leak.holders[0].startswith("saved for backward by ExpBackward0 of ")]
    assert [leak.description for leak in exps] == ["float32[64] cpu"] * 2


# -- bounds --------------------------------------------------------------------------------------
class Node:
    child: Any = None


def test_the_leaks_bound_cuts_scans_not_the_names_of_tensors_in_a_list_already_walked() -> None:
    with gpu_session("riders", device="cpu", leaks="ignore", holder_leaks=2) as s:
        for i in range(50):
            EVAL_LOSSES.append(torch.full((i + 1,), 1.0))
    report = _report(s.report)
    assert sorted(leak.holders[0] for leak in report.leaks) == sorted(
        f"global {__name__}.EVAL_LOSSES[{i}]" for i in range(50)
    )


def test_a_bound_message_names_the_object_whose_referrers_were_cut_and_the_argument() -> None:
    global ONE
    with gpu_session("levels", device="cpu", leaks="ignore", holder_levels=2) as s:
        ONE = Node()
        ONE.child = Node()
        ONE.child.child = Node()
        ONE.child.child.child = torch.ones(64)
    (leak,) = _report(s.report).leaks
    (message,) = leak.holders
    assert message.startswith("holder search stopped at the levels bound (2 levels; raise it with "), message
    assert "gpu_session(holder_levels=...)" in message and "the referrers of a " in message, message
    assert "(reached through " in message and "nothing" not in message, message


def _faq_losses(count: int) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    for _ in range(count):
        loss = ((model(torch.randn(8, 16)) - 1) ** 2).mean()
        EVAL_LOSSES.append(loss)


GRAPH_CUT = "not searched: the graph bound ("


def test_the_graph_bound_is_named_when_it_stops_the_walk_and_raising_it_names_every_tensor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The activations a kept loss's graph saved have no Python referrer: past the graph bound
    they are not "held from native code" but not searched, and the message says how to raise it."""
    monkeypatch.setenv("VRAMGUARD_CENSUS_GRAPH_NODES", "100")
    with gpu_session("cut", device="cpu", leaks="ignore") as s:
        _faq_losses(40)
    report = _report(s.report)
    cut = [leak for leak in report.leaks if leak.holders[0].startswith(GRAPH_CUT)]
    assert cut, str(report)
    (message,) = {leak.holders[0] for leak in cut}
    assert "(100 autograd graph nodes per census, the latest outputs' first; raise it with the environment " in message
    assert "variable VRAMGUARD_CENSUS_GRAPH_NODES=...)" in message and "native code" not in message, message
    assert "native code" not in str(report.leaks)
    EVAL_LOSSES.clear()
    monkeypatch.setenv("VRAMGUARD_CENSUS_GRAPH_NODES", "100_000")
    with gpu_session("raised", device="cpu", leaks="ignore") as s:
        _faq_losses(40)
    report = _report(s.report)
    assert [g.holder for g in report.leak_groups] == [f"global {__name__}.EVAL_LOSSES"], str(report)


def test_a_bad_graph_bound_is_named() -> None:
    from vramguard import InvalidArgument
    from vramguard.core._options import graph_nodes_bound

    with pytest.MonkeyPatch.context() as patch:
        for bad in ("0", "many", "-5"):
            patch.setenv("VRAMGUARD_CENSUS_GRAPH_NODES", bad)
            with pytest.raises(InvalidArgument, match="VRAMGUARD_CENSUS_GRAPH_NODES"):
                graph_nodes_bound()
        patch.setenv("VRAMGUARD_CENSUS_GRAPH_NODES", "50,000")
        assert graph_nodes_bound() == 50_000


def test_past_the_default_graph_bound_the_faqs_activations_are_never_held_from_native_code() -> None:
    """3,000 kept losses: about ten graph nodes each, past the default 20,000."""
    with gpu_session("faq 3000", device="cpu", leaks="ignore") as s:
        _faq_losses(3000)
    report = _report(s.report)
    assert "native code" not in str(report.leaks)
    holders = [g.holder for g in report.leak_groups]
    assert holders[0] == f"global {__name__}.EVAL_LOSSES", holders
    assert holders[1].startswith(GRAPH_CUT + "20,000 autograd graph nodes per census"), holders


# -- torch.compile ------------------------------------------------------------------------------
# dynamo's own warnings while it traces Adam (torch.jit.script_method deprecated in torch 2.13; a
# non-leaf's .grad read by the tracer), not the code under test's.
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_after_a_compiled_training_step_the_users_names_come_first() -> None:
    torch._dynamo.reset()

    def run() -> SessionReport | None:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 8))
        opt = torch.optim.Adam(model.parameters())

        @torch.compile(backend="eager")  # dynamo's generated objects without a C++ compiler
        def step(x: torch.Tensor) -> torch.Tensor:
            loss = model(x).pow(2).mean()
            loss.backward()
            opt.step()
            return loss

        with gpu_session("compiled", device="cpu", leaks="ignore") as s:
            step(torch.ones(2, 8))
            step(torch.ones(2, 8))
        return s.report

    report = _report(run())
    leaks = report.leaks
    assert len(leaks) == 8, str(report)  # 2 gradients, 2 × (exp_avg, exp_avg_sq, step)
    firsts = sorted(leak.holders[0] for leak in leaks)
    assert all(path.startswith(("local 'model'", "local 'opt'")) for path in firsts), firsts
    assert not any("__compiled_fn" in path or "self___" in path for path in firsts), firsts
    compiled = [path for leak in leaks for path in leak.holders[1:] if "__compiled_fn" in path]
    assert all(path.endswith(" (via torch.compile)") for path in compiled), compiled
    assert sorted(g.holder.split(" in ")[0] for g in report.leak_groups) == ["local 'model'", "local 'opt'"]
    assert next(g.owner_kind for g in report.leak_groups if g.holder.startswith("local 'opt'")) == "Adam state"


# -- numpy ----------------------------------------------------------------------------------------
def test_a_numpy_array_sharing_a_tensors_memory_is_named_as_the_holder() -> None:
    global ARR
    with gpu_session("numpy", device="cpu", leaks="ignore") as s:
        t = torch.ones(256, 256)
        ARR = t.numpy()
        del t
    (leak,) = _report(s.report).leaks
    assert leak.nbytes == 256 * 256 * 4
    assert leak.holders == (f"global {__name__}.ARR (a numpy array sharing its memory)",)


def test_a_numpy_view_kept_in_a_local_is_named() -> None:
    def infer() -> SessionReport | None:
        with gpu_session("numpy local", device="cpu", leaks="ignore") as s:
            half = torch.ones(128, 256).numpy()[::2]
        assert half.shape == (64, 256)
        return s.report

    (leak,) = _report(infer()).leaks
    (holder,) = leak.holders
    assert holder.startswith("local 'half' in ") and holder.endswith("(a numpy array sharing its memory)"), holder
