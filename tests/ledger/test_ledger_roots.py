"""The walk down from the program's own globals is a shortcut, never a different answer: an owner
it reaches is named as the climb from the owner names it, without a heap scan; an owner it does
not reach (a library's global, too deep, in a container too large) is still climbed to."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
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


CHILD = """
import gc, json, torch, vramguard

class Box:
    def __init__(self, item):
        vars(self)["item"] = item

model = torch.nn.Linear(16, 16)
optimizer = torch.optim.AdamW(model.parameters())
model(torch.randn(2, 16)).sum().backward()
optimizer.step()
HELD = {"parts": [model, optimizer], "cache": [torch.ones(100) for _ in range(3)], "app": Box(torch.ones(7))}
del model, optimizer
vramguard.explain("cpu")  # the first call imports what it uses
scans = []
real = gc.get_referrers
gc.get_referrers = lambda *objs: scans.append(len(objs)) or real(*objs)
ledger = vramguard.explain("cpu")
gc.get_referrers = real
print(json.dumps({"scans": scans, "holders": [x.holder for x in ledger.lines if x.category == "tensors"]}))
"""


def test_owners_the_globals_reach_are_named_without_a_heap_scan() -> None:
    # A process of its own: in the test run's, other tests' and libraries' tensors would be climbed to.
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout)
    holders = found["holders"]
    for expected in ("['parts'][0]", "['parts'][1]", "['cache']", "['app']"):
        assert f"global __main__.HELD{expected}" in holders, holders
    assert found["scans"] == [], found


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
