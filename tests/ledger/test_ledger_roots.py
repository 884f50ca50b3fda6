"""The walk down from the program's own globals is a shortcut, never a different answer: an owner
it reaches is named as the climb from the owner names it, without a heap scan; an owner it does
not reach (a library's global, too deep, in a container too large) is still climbed to."""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import vramguard
from vramguard.ledger import _attribute
from vramguard.ledger._roots import DEPTH, FAN_OUT

HELD: Any = None


class Box:
    """A plain object of the program's, holding what it is given as an attribute. Its
    ``__dict__`` is built at once: a holder path's rendering builds it (``vars``), and an
    object with one is a group of its own (``HELD`` rather than ``HELD.item``), so both
    ledgers must see the same object."""

    def __init__(self, item: object) -> None:
        vars(self)["item"] = item


WRAPS: dict[str, Callable[[object], object]] = {
    "dict": lambda item: {"key": item},
    "list": lambda item: [0, item],
    "tuple": lambda item: (item,),
    "object": Box,
}


def _tensor_holders(ledger: vramguard.MemoryLedger) -> list[tuple[str, int]]:
    return sorted((line.holder, line.nbytes) for line in ledger.lines if line.category == "tensors")


def _climbing_only() -> vramguard.MemoryLedger:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_attribute, "resolve_from_globals", lambda search, targets: 0)
        return vramguard.explain("cpu")


@settings(max_examples=15, deadline=None)
@given(wraps=st.lists(st.sampled_from(sorted(WRAPS)), min_size=0, max_size=DEPTH + 2))
def test_the_walk_down_names_an_owner_as_the_climb_does(wraps: list[str]) -> None:
    global HELD
    held: object = torch.ones(1000 + len(wraps))
    for wrap in wraps:
        held = WRAPS[wrap](held)
    HELD = held
    try:
        walked = _tensor_holders(vramguard.explain("cpu"))
        climbed = _tensor_holders(_climbing_only())
        assert walked == climbed
        assert any(holder.startswith(f"global {__name__}.HELD") for holder, _ in walked), walked
    finally:
        HELD = None


def test_owners_the_globals_reach_are_named_without_a_heap_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    global HELD
    model = torch.nn.Linear(16, 16)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 16)).sum().backward()
    optimizer.step()
    HELD = {"parts": [model, optimizer], "cache": [torch.ones(100) for _ in range(3)], "app": Box(torch.ones(7))}
    del model, optimizer
    scans: list[int] = []
    real = gc.get_referrers

    def counted(*objs: Any) -> list[Any]:
        scans.append(len(objs))
        return real(*objs)

    try:
        monkeypatch.setattr(gc, "get_referrers", counted)
        ledger = vramguard.explain("cpu")
        monkeypatch.undo()
        holders = [line.holder for line in ledger.lines if line.category == "tensors"]
        for expected in (f"global {__name__}.HELD['parts'][0]", f"global {__name__}.HELD['parts'][1]"):
            assert expected in holders, holders
        assert f"global {__name__}.HELD['cache']" in holders and f"global {__name__}.HELD['app']" in holders
        assert scans == [], scans
    finally:
        HELD = None


def test_an_owner_out_of_the_walks_reach_is_still_climbed_to() -> None:
    global HELD
    logging._vramguard_test_tensor = torch.ones(501)  # type: ignore[attr-defined]  # a library's global
    HELD = [torch.zeros(1) for _ in range(FAN_OUT)] + [torch.ones(502)]  # too many items to enter
    try:
        ledger = vramguard.explain("cpu")
        holders = {line.holder: line.nbytes for line in ledger.lines if line.category == "tensors"}
        assert holders.get("global logging._vramguard_test_tensor") == 501 * 4, holders
        assert holders.get(f"global {__name__}.HELD") == (FAN_OUT + 502) * 4, holders
    finally:
        del logging._vramguard_test_tensor  # type: ignore[attr-defined]
        HELD = None
