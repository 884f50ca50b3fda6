"""The release's collection step for a session: a full ``gc.collect()`` only when it must.

A full collection costs ~14 ms per 100k live objects here (165 ms with a million): paid at
every session, it made a decorated inference step 18× slower. It is needed only to free
reference cycles that hold what the block created, so:

- with the census, the block's objects are collected alone (the heap epoch hides the older
  ones: O(objects the block created)); when nothing the block created survives, that is all.
  When some storages survive, the census walks their holders; those that a global, a class or
  a live frame holds cannot be freed by any collection, and only the rest pay for a full one;
- without the census, the young generations are collected, and a full collection follows only
  when the allocator still holds more than the block started with (plus what it keeps, plus
  the host's noise floor).

The detail of the step says which collections ran and why.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

import torch

from vramguard.core._leak_figure import growth_bytes
from vramguard.core._release import Measured, Skipped
from vramguard.core._tensors import storage_bytes
from vramguard.probes import MemorySnapshot, take

_NOTHING_SURVIVED = "no full collection: nothing the block created survived"


def census_policy(census: Any, kept: list[object]) -> Callable[[], str]:
    """The collection step of a session with a census (see the module's doc)."""

    def collect() -> str:
        freed = census.collect_block()
        alive = census.survivors()
        if not alive and not freed:
            # Nothing unreachable, nothing surviving: the step freed nothing, no reading after it.
            return Skipped(f"collected the block's objects (0 unreachable); {_NOTHING_SURVIVED}")
        young = f"collected the block's objects ({freed} unreachable)"
        if not alive:
            return f"{young}; {_NOTHING_SURVIVED}"
        census.settle(kept)
        if not census.needs_full_collection:
            return (
                f"{young}; no full collection: the {alive} surviving storage(s) are held from a "
                "global, a class or a live frame, which no collection frees"
            )
        found = gc.collect()
        return (
            f"{young}; full collection ({found} unreachable): {alive} surviving storage(s), some reachable from no root"
        )

    return collect


def allocator_policy(
    device: torch.device, before: MemorySnapshot, kept: list[object], tolerance_bytes: int
) -> Callable[[], str]:
    """The collection step of a session without a census (see the module's doc)."""

    def collect() -> str:
        freed = gc.collect(1)
        young = f"collected generations 0-1 ({freed} unreachable)"
        now = take(device, nvml=False)
        growth = growth_bytes(before, now)
        # Where the allocator cannot tell, be safe: collect everything.
        held = True if growth is None else growth - storage_bytes(kept, device) > tolerance_bytes
        if not held:
            # The reading that decided is the step's reading: the release takes no other.
            return Measured.of(f"{young}; no full collection: the allocator holds no more than at entry", now)
        found = gc.collect()
        return f"{young}; full collection ({found} unreachable): the allocator still held more than at entry"

    return collect
