"""``vramguard run`` under torchrun, the parts that need no processes: which rank this is, and the
per-rank file names (the real torchrun runs are in test_gather.py)."""

from __future__ import annotations

import argparse

import pytest

from vramguard.cli._ranks import per_rank_outputs, rank_path, torchrun_rank


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"}, (3, 1)),
        ({"RANK": "0", "WORLD_SIZE": "1"}, (0, 0)),
        ({"RANK": "2"}, None),
        ({"RANK": "x", "WORLD_SIZE": "2"}, None),
        ({}, None),
    ],
)
def test_the_rank_comes_from_torchrun_s_environment(environ: dict[str, str], expected: tuple[int, int] | None) -> None:
    assert torchrun_rank(environ) == expected


@pytest.mark.parametrize(
    ("path", "rank", "expected"),
    [("report.json", 0, "report-rank0.json"), ("out/x.json", 12, "out/x-rank12.json"), ("plot", 1, "plot-rank1")],
)
def test_rank_paths(path: str, rank: int, expected: str) -> None:
    assert rank_path(path, rank) == expected


def test_outputs_are_per_rank_only_under_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    args = argparse.Namespace(json=None, plot="mem.png", device="cpu")
    assert per_rank_outputs(args) is None
    assert (args.json, args.plot) == (None, "mem.png")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert per_rank_outputs(args) == 1
    assert (args.json, args.plot, args.device) == ("report-rank1.json", "mem-rank1.png", "cpu")


def test_auto_becomes_the_rank_s_gpu_without_is_available(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    import vramguard.probes

    def refuse() -> bool:
        raise AssertionError("torch.cuda.is_available() called: cuInit in the launcher's child")

    monkeypatch.setattr(torch.cuda, "is_available", refuse)
    monkeypatch.setattr(vramguard.probes, "cuda_device_count", lambda: 2)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    args = argparse.Namespace(json=None, plot=None, device="auto")
    assert per_rank_outputs(args) == 3
    assert args.device == "cuda:1"
    monkeypatch.setattr(vramguard.probes, "cuda_device_count", lambda: 1)  # rank 1 has no GPU of its own
    args = argparse.Namespace(json=None, plot=None, device="auto")
    per_rank_outputs(args)
    assert args.device == "auto"
