"""The CUDA allocator's live blocks: what is allocated now, block by block, without the Python heap.

``torch.cuda.memory_snapshot()`` lists every segment the caching allocator holds and the blocks
in it; an ``active_allocated`` block is memory some storage uses now. Two readings, at a
session's entry and after its release, tell which memory the block allocated and still holds,
at the cost of the allocator's block count (never of the Python heap): a session that leaked
nothing is judged without looking at a single Python object, and one that did learns where
(the census then looks for the tensors whose storages lie in the new blocks, old Python objects
given new storage included: ``model.to("cuda")`` on a model loaded earlier, gradients written
into an old model). With the memory history on (``record_history=True``), each block carries
the stack that allocated it: the first frame outside torch names the creation site.
"""

from __future__ import annotations

import bisect
import inspect
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from vramguard.probes._torch import cuda_initialized

_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_OWN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


@dataclass(frozen=True)
class Block:
    """One live allocator block: its address, its size, and where it was allocated (with the
    memory history on; else None)."""

    address: int
    size_bytes: int
    site: str | None = None
    requested_bytes: int | None = None
    """What was asked for (the snapshot's ``requested_size``): a block is rounded up from it."""


def parse_snapshot(segments: Iterable[Mapping[str, Any]], device_index: int) -> dict[int, Block]:
    """The ``active_allocated`` blocks of one device from ``torch.cuda.memory_snapshot()``'s
    segments, by address (each segment's blocks are contiguous from its address)."""
    found: dict[int, Block] = {}
    for segment in segments:
        if segment.get("device") != device_index:
            continue
        address = int(segment.get("address", 0))
        for block in segment.get("blocks", ()):
            size = int(block.get("size", 0))
            if block.get("state") == "active_allocated":
                requested = block.get("requested_size")
                found[address] = Block(
                    address, size, _site(block.get("frames") or ()), None if requested is None else int(requested)
                )
            address += size
    return found


def _site(frames: Iterable[Mapping[str, Any]]) -> str | None:
    for frame in frames:
        filename = str(frame.get("filename", ""))
        if filename and not filename.startswith((_TORCH_DIR, _OWN_DIR)) and not filename.startswith("<"):
            return f"{os.path.basename(filename)}:{frame.get('line')} in {frame.get('name')}"
    return None


def live_blocks(device: torch.device) -> dict[int, Block] | None:
    """The live blocks of a CUDA device; None off CUDA, or where the allocator cannot list them.

    Before CUDA is initialised nothing is allocated: the answer is "no blocks" ({}), read without
    touching the driver (``memory_stats()`` and the snapshot would create a context;
    torch/cuda/memory.py:352-354 answers ``{}`` before initialisation for the same reason). A
    session that starts before ``model.to("cuda")`` in a fresh process thus diffs against an
    empty entry, and sees every block the block allocated.
    """
    read = read_blocks(device)
    return None if read is None else read[0]


def read_blocks(device: torch.device) -> tuple[dict[int, Block], tuple[int, int]] | None:
    """The live blocks of a CUDA device and its :func:`stranded` (segments, free bytes), from one
    allocator snapshot; ({}, (0, 0)) before CUDA is initialised, None off CUDA or where the
    allocator keeps no block list (``cudaMallocAsync``)."""
    if device.type != "cuda":
        return None
    if not cuda_initialized():
        return {}, (0, 0)
    try:
        if torch.cuda.get_allocator_backend() != "native":
            return None  # cudaMallocAsync keeps no block list torch can read
        segments = _segments()
    except Exception:
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    return parse_snapshot(segments, index), stranded(segments, index)


def stranded(segments: Iterable[Mapping[str, Any]], device_index: int) -> tuple[int, int]:
    """(segments, free bytes) of one device's segments that hold a live block and free space:
    what ``empty_cache()`` cannot return, since it frees only whole unused segments
    (CUDACachingAllocator.cpp, release_cached_blocks → release_blocks of blocks with no
    prev/next split). Requests up to 1 MiB share 2 MiB small-pool segments (kSmallSize,
    kSmallBuffer): one live scalar keeps its segment's other 2 MiB − 512 B cached."""
    count = free = 0
    for segment in segments:
        if segment.get("device") != device_index:
            continue
        blocks = list(segment.get("blocks", ()))
        if not any(b.get("state") == "active_allocated" for b in blocks):
            continue
        idle = sum(int(b.get("size", 0)) for b in blocks if b.get("state") == "inactive")
        if idle:
            count += 1
            free += idle
    return count, free


def stranded_segments(device: torch.device) -> tuple[int, int] | None:
    """:func:`stranded` for a CUDA device now; None off CUDA, before initialisation, or where the
    allocator keeps no block list."""
    read = read_blocks(device) if device.type == "cuda" and cuda_initialized() else None
    return None if read is None else read[1]


def _segments() -> list[dict[str, Any]]:
    """The allocator's segments, without the trace of past events: ``memory_snapshot()`` reads
    every recorded trace entry by default (``include_traces=True``, torch/cuda/memory.py:625-647),
    which the block list never uses. Torch releases before the argument existed read them all."""
    if _TAKES_INCLUDE_TRACES:
        return list(torch.cuda.memory_snapshot(include_traces=False))  # type: ignore[no-untyped-call]
    return list(torch.cuda.memory_snapshot())  # type: ignore[no-untyped-call]


_TAKES_INCLUDE_TRACES = "include_traces" in inspect.signature(torch.cuda.memory_snapshot).parameters


def new_blocks(entry: Mapping[int, Block], now: Mapping[int, Block]) -> list[Block]:
    """Blocks live now that were not live at entry (a block at an address with another size is new)."""
    return [b for a, b in now.items() if a not in entry or entry[a].size_bytes != b.size_bytes]


def uncovered(blocks: Iterable[Block], pointers: Iterable[int]) -> list[Block]:
    """The blocks that none of ``pointers`` (storages' data pointers) falls into."""
    starts = sorted(pointers)
    left = []
    for block in blocks:
        i = bisect.bisect_left(starts, block.address)
        if i < len(starts) and starts[i] < block.address + block.size_bytes:
            continue
        left.append(block)
    return left
