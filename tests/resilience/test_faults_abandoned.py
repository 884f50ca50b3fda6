"""Sessions entered and never exited leave nothing behind once their session object is gone: no
registry entry, sampler subscription, empty_cache listener or census hook; later sessions are
not marked concurrent. (Before: a decorated recursive function ending in RecursionError left its
deepest runs registered for the life of the process.)"""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Iterator

import pytest
import torch

from vramguard import SessionReport, gpu_session
from vramguard.census import _epoch
from vramguard.core import _hooks, _lifecycle, _release, _run
from vramguard.core._sampler import SAMPLER


def _clean() -> bool:
    return (
        all(not runs for runs in _run._active.values())
        and not _hooks.empty_cache_listeners
        and not SAMPLER._subs
        and not _epoch.EPOCH.open
        and torch.cuda.empty_cache is _release._original_empty_cache
        and not _lifecycle._watched
    )


def _report_from_another_thread() -> SessionReport:
    reports: list[SessionReport | None] = []

    def run() -> None:
        with gpu_session(device="cpu", leaks="ignore") as s:
            pass
        reports.append(s.report)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    (report,) = reports
    assert report is not None
    return report


@pytest.mark.parametrize("options", [{"census": False}, {"sample_every": 0.01}, {}])
def test_a_recursion_error_in_a_decorated_function_leaves_nothing(options: dict[str, object]) -> None:
    @gpu_session(device="cpu", leaks="ignore", **options)
    def deeper(n: int) -> int:
        return deeper(n + 1)

    # A limit 150 frames above here: deep enough to fail inside the sessions' exits, shallow
    # enough that ~150 nested sessions take a fraction of a second (at 1,000 they took 90 s).
    depth, frame = 0, sys._getframe()
    while frame.f_back is not None:
        depth, frame = depth + 1, frame.f_back
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + 150)
    try:
        with pytest.raises(RecursionError):
            deeper(0)
    finally:
        sys.setrecursionlimit(limit)
    # The deepest sessions' exits had no stack left to unregister; their session objects died
    # on the way up, and the next entry sweeps what they left.
    assert not _report_from_another_thread().concurrent
    assert _clean()


def _blocks() -> Iterator[int]:
    with gpu_session(device="cpu", leaks="ignore", sample_every=0.01):
        yield 1
        yield 2


def test_a_generator_dropped_inside_its_block_leaves_nothing() -> None:
    gen = _blocks()
    assert next(gen) == 1
    assert not _clean()  # suspended inside its block: still active, as it should be
    del gen
    assert _clean()
    assert not _report_from_another_thread().concurrent


def test_a_generator_abandoned_in_a_cycle_leaves_nothing_once_collected() -> None:
    gen = _blocks()
    next(gen)
    box: list[object] = [gen]
    box.append(box)
    del gen, box
    gc.collect()
    assert _clean()
    assert not _report_from_another_thread().concurrent


def test_a_session_object_dropped_without_exit_is_swept() -> None:
    session = gpu_session(device="cpu", sample_every=0.01)
    session.__enter__()
    del session  # entered by hand and forgotten: nothing will ever call __exit__
    gc.collect()
    assert not _report_from_another_thread().concurrent
    assert _clean()
