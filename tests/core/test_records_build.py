"""Records built on the hot path without the dataclass's ``__init__`` (``_records.build``, the
host snapshot, the options) are the same values ``__init__`` would make."""

from __future__ import annotations

import dataclasses
import pickle

import pytest
import torch

import vramguard
from vramguard.core._options import options_of
from vramguard.core._records import Leak, Leaks, ReleaseStep, SessionReport, build


def test_build_makes_what_init_makes() -> None:
    step = build(ReleaseStep, name="gc", duration_s=0.5, allocated_freed_bytes=1, reserved_freed_bytes=None)
    assert step == ReleaseStep("gc", 0.5, 1, None) and step.detail == ""
    with pytest.raises(dataclasses.FrozenInstanceError):
        step.detail = "x"  # type: ignore[misc]


def test_a_session_report_is_what_init_would_make() -> None:
    with vramguard.gpu_session("built", device="cpu", leaks="ignore") as s:
        kept = s.keep(torch.ones(1024))
    report = s.report
    assert report is not None and kept.numel() == 1024
    again = dataclasses.replace(report)  # through __init__ and __post_init__
    assert again == report
    assert type(report.leaks) is Leaks and report.before == dataclasses.replace(report.before)
    assert all(step == dataclasses.replace(step) for step in report.release_steps)
    # Fields left to their class defaults read, compare, serialise and pickle as set ones.
    assert report.before.requested_bytes is None and report.to_dict()["before"]["num_ooms"] is None
    assert SessionReport.from_dict(report.to_dict()).to_dict() == report.to_dict()
    assert pickle.loads(pickle.dumps(report)) == report
    options = options_of({"device": "cpu"})
    assert dataclasses.replace(options) == options


def test_build_runs_post_init_and_refuses_mutable_defaults() -> None:
    leak = Leak(nbytes=4, description="float32[1]", created_at=None, holders=())
    with vramguard.gpu_session("x", device="cpu", leaks="ignore") as s:
        pass
    assert s.report is not None
    made = build(
        SessionReport,
        **{**{f.name: getattr(s.report, f.name) for f in dataclasses.fields(SessionReport)}, "leaks": (leak,)},
    )
    assert type(made.leaks) is Leaks and made.leaks == (leak,)

    @dataclasses.dataclass(frozen=True)
    class Listed:
        items: list[int] = dataclasses.field(default_factory=list)

    with pytest.raises(TypeError, match="defaults"):
        build(Listed)
