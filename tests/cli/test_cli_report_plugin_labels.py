"""The pytest plugin's words, through pytester: a leak failure reads "VRAM LEAK", a peak failure
"VRAM LIMIT"; a release during which memory grew shows "—" in the reclaimed column, with the
line saying what it means, never a negative reclaim."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

HEADER = """
import pytest
import torch

MIB = 2**20
_HELD = []
"""


def run(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_vram=HEADER + source)
    return pytester.runpytest("-p", "no:hypothesispytest", *args)


def test_leak_and_peak_failures_are_named_apart(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
@pytest.mark.vram_leaks(device="cpu")
def test_leaks():
    _HELD.append(torch.ones(4 * MIB))

@pytest.mark.vram_limit("1 MiB", device="cpu")
def test_peaks():
    x = torch.ones(16 * MIB)
    assert float(x.sum()) > 0

@pytest.mark.vram_limit("1 MiB", device="cpu")
@pytest.mark.vram_leaks(device="cpu")
def test_both():
    _HELD.append(torch.ones(16 * MIB))
""",
        "-v",
    )
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(
        [
            "test_vram.py::test_leaks VRAM LEAK*",
            "test_vram.py::test_peaks VRAM LIMIT*",
            "test_vram.py::test_both VRAM LEAK and VRAM LIMIT*",
        ]
    )
    leak_line = next(line for line in result.outlines if line.startswith("test_vram.py::test_leaks "))
    assert "LIMIT" not in leak_line


def test_a_release_during_which_memory_grew_reclaimed_nothing(pytester: pytest.Pytester) -> None:
    # A cycle whose finalizer, run by the release's gc.collect(), fills 8 MiB and keeps it: the
    # memory after the release is above the memory at the test's end.
    result = run(
        pytester,
        """
class Grows:
    def __del__(self):
        _HELD.append(b"x" * (8 * MIB))

def test_grows_during_release():
    node = Grows()
    node.self = node

def test_plain():
    x = torch.ones(MIB)
    assert float(x.sum()) > 0
""",
        "--vram",
        "--vram-device",
        "cpu",
    )
    result.assert_outcomes(passed=2)
    row = next(line for line in result.outlines if line.startswith("test_vram.py::test_grows_during_release "))
    _test, device, *figures = row.split()
    assert device == "cpu" and "—" in figures, row
    assert not any(f.startswith("-") for f in figures), "no negative figure in the row"
    result.stdout.fnmatch_lines(["reclaimed —: the release gave nothing back (the memory grew while it ran)"])
