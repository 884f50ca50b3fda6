"""A park and a wake give back the same objects with identical bytes, for every target."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import vramguard
from tests.parking.conftest import DTYPES, Zoo, checksum

TARGETS = ["cpu", "disk"]


@pytest.mark.parametrize("to", TARGETS)
def test_values_dtypes_ties_and_views_survive(zoo: Zoo, to: str) -> None:
    before = checksum(zoo)
    ids = {name: id(t) for name, t in zoo.state_dict(keep_vars=True).items()}
    parked = vramguard.park(zoo, to=to)
    assert parked.report is not None and parked.report.kind == "park"
    # While parked the tensors hold no memory; the shapes are in the handle.
    assert zoo.emb.weight.numel() == 0 and parked.shapes["emb.weight"] == (16, 8)
    report = vramguard.wake(parked)
    assert report.kind == "wake" and report.nbytes == parked.report.nbytes > 0
    assert checksum(zoo) == before
    assert {name: id(t) for name, t in zoo.state_dict(keep_vars=True).items()} == ids
    assert zoo.head.weight is zoo.emb.weight
    # The view still shares its storage with the tensor it was cut from.
    assert zoo.window.untyped_storage().data_ptr() == zoo.whole.untyped_storage().data_ptr()
    zoo.whole[10] = 123.0
    assert zoo.window[0, 2] == 123.0
    assert {str(t.dtype) for t in zoo.buffers()} >= {str(d) for d in DTYPES}


def test_shared_storages_move_once(device: str) -> None:
    zoo = Zoo().to(device)
    parked = vramguard.park(zoo)
    assert parked.report is not None
    storages = {t.untyped_storage()._cdata for t in Zoo().state_dict().values()}
    # emb/head share one storage and whole/window another: fewer storages than tensors.
    assert parked.report.storages == len(storages) < parked.report.tensors
    vramguard.wake(parked)


def test_hooks_and_optimizer_survive(device: str) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 6), torch.nn.ReLU(), torch.nn.Linear(6, 2)).to(device)
    twin = torch.nn.Sequential(torch.nn.Linear(6, 6), torch.nn.ReLU(), torch.nn.Linear(6, 2)).to(device)
    twin.load_state_dict(model.state_dict())
    calls: list[int] = []
    model.register_forward_hook(lambda *_: calls.append(1))
    model[0].weight.register_hook(lambda grad: grad * 1.0)
    optimizers = [torch.optim.Adam(m.parameters(), lr=0.1) for m in (model, twin)]
    x = torch.randn(4, 6, device=device)
    for m, opt in zip((model, twin), optimizers, strict=True):
        m(x).square().sum().backward()
        opt.step()
        opt.zero_grad()
    parked = vramguard.park(model, to="disk")
    vramguard.wake(parked)
    for m, opt in zip((model, twin), optimizers, strict=True):
        m(x).square().sum().backward()
        opt.step()
    # The optimizer still holds the module's parameters and steps them exactly like the twin's.
    assert optimizers[0].param_groups[0]["params"][0] is model[0].weight
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)
    assert len(calls) == 2


def test_gradients_are_parked_too(device: str) -> None:
    model = torch.nn.Linear(5, 3).to(device)
    model(torch.randn(2, 5, device=device)).sum().backward()
    assert model.weight.grad is not None
    grad = model.weight.grad.clone()
    grad_object = model.weight.grad
    parked = vramguard.park(model)
    assert model.weight.grad is grad_object and grad_object.numel() == 0
    vramguard.wake(parked)
    assert model.weight.grad is grad_object and torch.equal(grad_object, grad)


def test_discard_keeps_shapes_and_wakes_from_a_state_dict(zoo: Zoo) -> None:
    source = Zoo(seed=1).to(zoo.emb.weight.device)
    parked = vramguard.park(zoo, to="discard")
    with pytest.raises(vramguard.InvalidArgument, match="state_dict"):
        vramguard.wake(parked)
    partial = dict(list(source.state_dict().items())[:3])
    with pytest.raises(vramguard.InvalidArgument, match="missing"):
        vramguard.wake(parked, state_dict=partial)
    assert not parked.awake  # the refusals changed nothing: still parked, still wakeable
    vramguard.wake(parked, state_dict=source.state_dict())
    assert checksum(zoo) == checksum(source)
    assert zoo.head.weight is zoo.emb.weight


def test_wake_accepts_the_object_and_another_state(zoo: Zoo) -> None:
    new = {k: torch.zeros_like(v) for k, v in zoo.state_dict().items()}
    vramguard.park(zoo)
    vramguard.wake(zoo, state_dict=new)  # the parked object itself finds its handle
    assert all(not t.any() for t in zoo.state_dict().values())


@st.composite
def _layouts(draw: st.DrawFn) -> list[tuple[torch.dtype, int, int, int]]:
    """Storages of random dtype and size, each with a random view (offset, length) into it."""
    count = draw(st.integers(1, 5))
    found = []
    for _ in range(count):
        dtype = draw(st.sampled_from(DTYPES))
        size = draw(st.integers(0, 64))
        start = draw(st.integers(0, size))
        length = draw(st.integers(0, size - start))
        found.append((dtype, size, start, length))
    return found


@settings(max_examples=40, deadline=None)
@given(_layouts(), st.sampled_from(["cpu", "disk"]), st.integers(0, 2**31 - 1))
def test_any_layout_round_trips(layout: list[tuple[torch.dtype, int, int, int]], to: str, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    module = torch.nn.Module()
    for index, (dtype, size, start, length) in enumerate(layout):
        raw = torch.randint(0, 255, (size,), generator=gen, dtype=torch.uint8)
        whole = raw.to(dtype).clone() if dtype != torch.bool else raw > 127
        module.register_buffer(f"whole{index}", whole)
        module.register_buffer(f"part{index}", whole[start : start + length])
    before = {k: v.clone() for k, v in module.state_dict().items()}
    vramguard.wake(vramguard.park(module, to=to))
    after = module.state_dict()
    for name, value in before.items():
        assert after[name].dtype == value.dtype and torch.equal(after[name], value), name
    for index in range(len(layout)):
        whole, part = getattr(module, f"whole{index}"), getattr(module, f"part{index}")
        if part.numel():
            assert part.untyped_storage().data_ptr() == whole.untyped_storage().data_ptr()
