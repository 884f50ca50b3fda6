"""The arithmetic of a CUDA hard budget, apart from the device: which cap to set, the fraction
that sets it exactly, and the stack of caps that nested and concurrent hard sessions share.

torch's caching allocator compares its cap with the bytes it has *reserved* (whole segments),
and only when it must reserve a new one: ``alloc_block`` refuses when
``total_allocated_memory + size > allowed_memory_maximum`` (c10/cuda/CUDACachingAllocator.cpp;
``total_allocated_memory`` counts segments, not the blocks handed out), after first returning
its free cached segments and retrying. Free space inside a segment that still holds a live block
is never checked: it is handed out whatever the cap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class CapPlan:
    """What one hard budget sets on one device, from the allocator's figures after the cache
    was emptied. ``cap_bytes``: the reserved total the allocator may reach (allocated at entry
    plus the budget); ``slack_bytes``: reserved − allocated at entry, the free space inside
    segments that were partly in use (the cache cannot return it, and the allocator hands it
    out without checking the cap); ``bound_bytes``: what the block's allocated peak above
    its start can reach at most, ``max(budget, slack)``."""

    budget_bytes: int
    allocated_bytes: int
    reserved_bytes: int
    cap_bytes: int
    slack_bytes: int
    bound_bytes: int


def plan_cap(budget_bytes: int, allocated_bytes: int, reserved_bytes: int | None) -> CapPlan:
    """The cap for a budget of ``budget_bytes`` above ``allocated_bytes``.

    The cap is on reserved memory, and allocated ≤ reserved always. Capping reserved at
    allocated + budget therefore bounds the block's allocated peak by the budget, as long as
    reserved was not already above the cap at entry: then the free space inside the partly used
    segments (the slack) is the bound. Capping at reserved + budget instead would let the block
    use budget + slack. ``reserved_bytes`` is None where torch cannot say (``cudaMallocAsync``,
    whose cap is checked against the bytes in use: no slack)."""
    reserved = allocated_bytes if reserved_bytes is None else max(reserved_bytes, allocated_bytes)
    slack = reserved - allocated_bytes
    return CapPlan(
        budget_bytes=budget_bytes,
        allocated_bytes=allocated_bytes,
        reserved_bytes=reserved,
        cap_bytes=allocated_bytes + budget_bytes,
        slack_bytes=slack,
        bound_bytes=max(budget_bytes, slack),
    )


def fraction_for(cap_bytes: int, total_bytes: int) -> float:
    """The smallest fraction whose cap is at least ``cap_bytes`` on a device of ``total_bytes``.

    torch turns the fraction back into bytes as ``static_cast<size_t>(fraction * total)``
    (``setMemoryFraction``), which truncates: ``cap / total`` can come back a byte short, and an
    allocation exactly at the budget would be refused. The fraction is stepped up one ulp at a
    time until the product reaches the cap. Above the device's size, 1.0 (torch: no cap)."""
    if total_bytes <= 0:
        raise ValueError(f"total_bytes must be > 0, not {total_bytes}")
    if cap_bytes >= total_bytes:
        return 1.0
    fraction = max(0.0, cap_bytes / total_bytes)
    while int(fraction * float(total_bytes)) < cap_bytes:
        fraction = math.nextafter(fraction, math.inf)
    return min(fraction, 1.0)


class FractionStack:
    """The hard budgets active on one device. The fraction in force is the smallest of theirs,
    never above the one found when the first entered; each leaves in any order, and when the
    last leaves that first fraction comes back. Not thread-safe: the caller holds a lock."""

    def __init__(self) -> None:
        self.original: float | None = None
        self._caps: dict[int, float] = {}
        self._issued = 0

    @property
    def empty(self) -> bool:
        return not self._caps

    def effective(self) -> float | None:
        """The fraction that should be in force; None with no budget active."""
        if self.original is None:
            return None
        return min([self.original, *self._caps.values()])

    def push(self, fraction: float, current: float) -> tuple[int, float]:
        """Enter a budget capped at ``fraction``; ``current`` is the fraction in force now, kept
        as the original when this is the first. Returns the entry's token and the fraction to set."""
        if self.original is None:
            self.original = current
        self._issued += 1
        self._caps[self._issued] = fraction
        effective = self.effective()
        assert effective is not None
        return self._issued, effective

    def pop(self, token: int) -> float:
        """Leave the budget ``token``; returns the fraction to set: the smallest cap still
        active, or the original when none is."""
        del self._caps[token]
        effective = self.effective()
        assert effective is not None
        if not self._caps:
            self.original = None
        return effective
