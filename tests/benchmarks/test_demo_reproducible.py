"""The demo's headline is a median over fresh processes: two invocations conclude the same."""

from __future__ import annotations

import pytest

from vramguard.cli import main


def conclusion(out: str) -> str:
    lines = [line for line in out.splitlines() if line.startswith("conclusion: ")]
    assert len(lines) == 1, out
    return lines[0]


@pytest.mark.slow
def test_two_demo_runs_print_the_same_conclusion(capsys: pytest.CaptureFixture[str]) -> None:
    # Three layers: one (12.6 MiB of weights) is under a session's 16 MiB host trim floor, so
    # the session may rightly leave a few MiB in malloc and the spreads could touch. At three the
    # bare del's lowest run (about 16 MiB) is far above the session's highest (under 1 MiB):
    # four invocations in a row on 2026-12-03 all concluded the same.
    argv = ["demo", "--device", "cpu", "--layers", "3", "--steps", "1", "--repeat", "3", "--no-plot"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert main(argv) == 0
    second = capsys.readouterr().out
    assert conclusion(first) == conclusion(second)
    assert "Median of 3 fresh process(es) each" in first
    assert conclusion(first).removeprefix("conclusion: ") in {
        "a bare del leaves memory held that the vramguard session gives back",
        "no difference beyond the noise between a bare del and the vramguard session",
    }


def test_demo_rejects_a_silly_repeat(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--device", "cpu", "--repeat", "0", "--no-plot"]) == 2
    assert "invalid repeat=0" in capsys.readouterr().err
