"""``keep()`` counts what it is given: plain attributes, deep nesting, objects that answer every
attribute name. (Before: 0 kept bytes and a false LeakWarning for a plain attribute, a leak for a
tensor nested 7 deep, a TypeError at exit for a catch-all ``__getattr__``.)"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from vramguard import gpu_session

MIB = 2**20


class Plain:
    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


class Slotted:
    __slots__ = ("tensor", "unset")

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


class AnswersEverything:
    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None  # a mock or proxy: every name exists


def _nested(tensor: torch.Tensor, depth: int) -> dict[str, Any]:
    box: dict[str, Any] = {"t": tensor}
    for _ in range(depth - 1):
        box = {"inner": box}
    return box


CASES = {
    "plain attribute": lambda t: Plain(t),
    "slot": lambda t: Slotted(t),
    "nested 7 deep": lambda t: _nested(t, 7),
    "nested 40 deep": lambda t: _nested(t, 40),
    "catch-all __getattr__": lambda t: AnswersEverything(t),
}


@pytest.mark.parametrize("census", [True, False])
@pytest.mark.parametrize("case", list(CASES))
def test_keep_counts_what_it_is_given(case: str, census: bool) -> None:
    with gpu_session(device="cpu", census=census, leaks="raise") as s:
        kept = s.keep(CASES[case](torch.ones(MIB)))
    assert s.report is not None
    assert s.report.kept_bytes == 4 * MIB
    assert s.report.leaked_bytes == 0 and s.report.leaks == ()
    del kept


def test_a_decorated_function_returning_a_plain_object_keeps_it() -> None:
    @gpu_session(device="cpu", leaks="raise")
    def make() -> Plain:
        return Plain(torch.ones(MIB))

    result = make()
    report = make.vram_report  # type: ignore[attr-defined]
    assert report.kept_bytes == 4 * MIB and report.leaks == ()
    del result
