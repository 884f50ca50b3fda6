"""The leak figure of a session without the census: what the allocator holds more than at entry.

On CUDA the figure is the growth of ``requested_bytes`` (what client code asked for), not of
``allocated_bytes``: every request is rounded up to a whole block of at least 512 B, and a large
block may keep an unsplit tail, so keeping a 4-byte scalar grew ``allocated`` by 512 B
(torch/cuda/memory.py:303, "compare this with allocated_bytes"). The cuBLAS workspace a block's
first matmul allocates is counted apart (:mod:`vramguard.probes._workspaces`). On the host the
figure is malloc's in-use growth, under a noise floor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vramguard.core._sizes import format_size
from vramguard.probes import MemorySnapshot, is_host, new_workspaces

HOST_NOISE_FLOOR_BYTES = 256 * 1024
"""Without the census, a host leak figure under this is interpreter noise (malloc deltas of
1–42 KiB were measured for a block that kept nothing) and is reported as 0."""


def in_use_bytes(snapshot: MemorySnapshot) -> int | None:
    """What client code holds: ``requested_bytes`` on CUDA where torch reports it, else allocated."""
    if snapshot.requested_bytes is not None:
        return snapshot.requested_bytes
    return snapshot.allocated_bytes


def growth_bytes(before: MemorySnapshot, now: MemorySnapshot) -> int | None:
    """How much more client code holds now than at ``before`` (None if either is unknown)."""
    start, end = in_use_bytes(before), in_use_bytes(now)
    if start is None or end is None:
        return None
    return end - start


@dataclass(frozen=True)
class LeakFigure:
    """A census-free leak figure and the report lines that explain it."""

    leaked_bytes: int | None
    notes: tuple[str, ...] = ()


_FLOOR_TEXT = format_size(HOST_NOISE_FLOOR_BYTES)


def judge(growth: int | None, kept_bytes: int, workspace_bytes: int, host: bool) -> LeakFigure:
    """The leak from the allocator's growth, the kept storages and the workspaces allocated in the
    block (a pure function: the arithmetic of :func:`allocator_leak`)."""
    if growth is None:
        return LeakFigure(None)
    notes: list[str] = []
    left = growth - kept_bytes
    if workspace_bytes > 0 and left > 0:
        counted = min(left, workspace_bytes)
        left -= counted
        notes.append(
            f"{format_size(counted)} of the allocator's growth is the cuBLAS workspace of the block's first "
            "matmul on this thread and stream: torch keeps it for the handle's life, not a leak (without the "
            "census a tensor of exactly that size cannot be told from it)"
        )
    leaked = max(0, left)
    if host and 0 < leaked < HOST_NOISE_FLOOR_BYTES:
        # Written at almost every host session without the census: bytes with separators, not
        # format_size (a microsecond of every step for a line rarely read).
        notes.append(f"host malloc grew by {leaked:,} B, under the noise floor of {_FLOOR_TEXT}: counted as no leak")
        leaked = 0
    return LeakFigure(leaked, tuple(notes))


def allocator_leak(device: torch.device, before: MemorySnapshot, after: MemorySnapshot, kept_bytes: int) -> LeakFigure:
    """The leak of a session without the census, after its release (see the module's doc). The
    allocator's block list is read only when it grew past what the block kept."""
    growth = growth_bytes(before, after)
    workspaces = 0
    if not is_host(device) and growth is not None and growth > kept_bytes:
        workspaces = sum(block.requested_bytes or block.size_bytes for block in new_workspaces(device))
    return judge(growth, kept_bytes, workspaces, is_host(device))
