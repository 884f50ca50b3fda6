"""How many times a session reads the host (issue 29): each boundary once, nothing re-read (the
entry's reading also gives the resident mark's start, the exit's comes with the mark itself)."""

from __future__ import annotations

import pytest
import torch

import vramguard
from vramguard.probes import _snapshot


@pytest.fixture
def heap_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the session's host readings (mallinfo2 + statm or status, through ``read_host``)."""
    calls = [0]
    real = _snapshot.read_host

    def counted(with_peak: bool = False) -> object:
        calls[0] += 1  # with_peak: the exit's reading and the resident peak, one read of /proc
        return real(with_peak)

    monkeypatch.setattr(_snapshot, "read_host", counted)
    with vramguard.gpu_session(device="cpu", leaks="ignore"):  # warm: the first session's one-off work
        pass
    calls[0] = 0
    return calls


@pytest.mark.parametrize(
    ("options", "reads"),
    [
        # entry and the block's end; the collection found nothing and the trim stayed under its
        # floor, so the release's steps changed nothing and nothing was read again
        ({}, 2),
        ({"release": False}, 2),
        ({"census": False, "release": False}, 2),
        # without the census the collection policy reads the allocator to decide: that reading
        # is the step's own, not followed by another
        ({"census": False}, 3),
    ],
)
def test_an_empty_session_reads_each_boundary_once(heap_reads: list[int], options: dict[str, bool], reads: int) -> None:
    with vramguard.gpu_session(device="cpu", leaks="ignore", **options) as s:
        pass
    assert heap_reads[0] == reads
    assert s.report is not None and s.report.after.time_s >= s.report.before.time_s


def test_a_release_that_frees_something_reads_after_it(heap_reads: list[int]) -> None:
    class Node:
        pass

    with vramguard.gpu_session(device="cpu", leaks="ignore") as s:
        a, b = Node(), Node()
        a.other, b.other = b, a  # type: ignore[attr-defined]
        a.t = torch.ones(64 * 1024)  # type: ignore[attr-defined]
        del a, b
    assert s.report is not None
    gc_step = next(step for step in s.report.release_steps if step.name == "gc")
    assert "unreachable" in gc_step.detail and "(0 unreachable)" not in gc_step.detail
    assert heap_reads[0] == 3  # entry, the block's end, after the collection that freed the cycle
