"""The pytest plugin under pytest-xdist: each worker measures its own tests in its own process, and
the controller's table lists every test with the figures of its own session and the worker that
ran it. Run through pytester in a subprocess (xdist starts worker processes)."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

pytestmark = pytest.mark.slow

TESTS = """
import os
import pytest
import torch

MIB = 2**20
HELD = []

def test_leaks_one():
    HELD.append(torch.ones(MIB // 4))  # 1 MiB

def test_leaks_three():
    HELD.append(torch.ones(3 * MIB // 4))  # 3 MiB

@pytest.mark.vram_leaks(max_leak="0 B", device="cpu")
def test_marked_leak_fails_in_its_worker():
    HELD.append(torch.ones(MIB // 2))  # 2 MiB

def test_clean():
    x = torch.ones(MIB)
    del x
"""


def test_every_worker_s_tests_are_reported_with_their_own_figures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_vram=TESTS)
    result = pytester.runpytest_subprocess(
        "-p", "no:hypothesispytest", "-n", "2", "--dist", "load", "--vram", "--vram-device", "cpu", timeout=240
    )
    result.assert_outcomes(passed=3, failed=1)
    lines = result.outlines
    start = next(i for i, line in enumerate(lines) if "vramguard report" in line)
    table = lines[start + 1 :]
    assert table[0].split()[:3] == ["test", "worker", "device"]
    rows = {line.split()[0]: line.split() for line in table[1:] if line.startswith("test_vram.py::")}
    assert set(rows) == {
        "test_vram.py::test_leaks_one",
        "test_vram.py::test_leaks_three",
        "test_vram.py::test_marked_leak_fails_in_its_worker",
        "test_vram.py::test_clean",
    }
    assert {row[1] for row in rows.values()} <= {"gw0", "gw1"}
    assert all(row[2] == "cpu" for row in rows.values())
    # Each row's leak is its own test's: nothing mixed between tests or workers.
    leaked = {nodeid.split("::")[1]: " ".join(row[-2:]) for nodeid, row in rows.items()}
    assert leaked == {
        "test_leaks_one": "1.00 MiB",
        "test_leaks_three": "3.00 MiB",
        "test_marked_leak_fails_in_its_worker": "2.00 MiB",
        "test_clean": "0 B",
    }
    result.stdout.fnmatch_lines(["*VRAM LEAK*test_marked_leak_fails_in_its_worker*"])
