"""The CUDA ledger: NVML's figure for this process, line by line.

- **tensors**, one line per owner: the allocator blocks their storages lie in (a block is
  rounded up from the request, ``round_size`` in c10/cuda/CUDACachingAllocator.cpp, and a large
  block may keep an unsplit tail), so that tensors, workspaces and the blocks no tensor covers
  add up to ``memory_allocated()`` exactly. ``storage_bytes`` keeps the storages' own bytes;
- **cuBLAS workspaces**: live blocks no tensor covers whose requested size is a workspace's
  (``vramguard.probes.workspace_sizes``; CublasHandlePool.cpp allocates them through the
  caching allocator and keeps them for the handle's life);
- **blocks no tensor covers**: what only C++ holds (a graph's saved tensors no Python object
  wraps, a library allocating through torch's allocator);
- **cached free**, split: free space in segments that also hold a live block (stranded:
  ``empty_cache()`` frees only whole segments, ``release_cached_blocks``), and the rest, which
  ``empty_cache()`` returns;
- **the CUDA context**: NVML's process figure less reserved at the first reading in this
  process (it grows a little when kernels load lazily: that growth is then in the next line);
- **outside torch's allocator**: NVML's figure less reserved less the context (NCCL, cupy,
  CTranslate2, cuDNN/cuBLAS's own device memory);
- **residual**: the readings' disagreement (the block list and the counters are read apart).

Nothing here initialises CUDA: before torch has, there is no tensor and no block; NVML alone
is read.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Mapping

from vramguard.ledger._attribute import Attribution
from vramguard.ledger._host import tensor_lines
from vramguard.ledger._records import RESIDUAL, LedgerLine
from vramguard.probes._blocks import Block
from vramguard.probes._workspaces import split_workspaces

_lock = threading.Lock()
_context_first: dict[int, int] = {}
"""By device index: NVML's process figure less reserved at the first reading (the context)."""


def context_bytes(index: int, process_used: int, reserved: int) -> int:
    """The context's size: the first reading of ``process_used - reserved`` on this device."""
    with _lock:
        return _context_first.setdefault(index, process_used - reserved)


def block_sizes(attribution: Attribution, blocks: Mapping[int, Block]) -> tuple[dict[int, int], set[int]]:
    """(storage index -> the bytes of its block, counted for the first storage in it and 0 for
    the others and for storages in no block; the addresses of the blocks some storage covers)."""
    starts = sorted(blocks)
    sizes: dict[int, int] = {}
    covered: set[int] = set()
    for i, storage in enumerate(attribution.storages):
        j = bisect.bisect_right(starts, storage.pointer) - 1
        block = blocks[starts[j]] if j >= 0 else None
        if block is None or storage.pointer >= block.address + block.size_bytes:
            sizes[i] = 0  # not torch's allocator's memory (a DLPack import): NVML counts it outside torch
            continue
        sizes[i] = 0 if block.address in covered else block.size_bytes
        covered.add(block.address)
    return sizes, covered


def cuda_lines(
    attribution: Attribution,
    blocks: Mapping[int, Block] | None,
    *,
    allocated: int,
    reserved: int | None,
    stranded: tuple[int, int] | None,
    workspace_sizes: frozenset[int],
    process_used: int | None,
    context: int | None,
) -> tuple[int, str, list[LedgerLine], list[str]]:
    """(total, where it comes from, lines ending with the residual, notes) from the readings."""
    notes: list[str] = []
    lines: list[LedgerLine] = []
    if blocks is not None:
        sizes, covered = block_sizes(attribution, blocks)
        lines += tensor_lines(attribution, sizes=sizes)
        left = [b for a, b in sorted(blocks.items()) if a not in covered]
        workspaces, others = split_workspaces(left, workspace_sizes)
        if workspaces:
            lines.append(
                LedgerLine(
                    "workspace",
                    sum(b.size_bytes for b in workspaces),
                    f"cuBLAS/cuBLASLt workspaces ({len(workspaces)}: one per handle and stream)",
                    "torch._C._cuda_clearCublasWorkspaces(), then empty_cache()",
                )
            )
        if others:
            lines.append(
                LedgerLine(
                    "uncovered blocks",
                    sum(b.size_bytes for b in others),
                    f"allocator blocks no Python tensor covers ({len(others)})",
                    "not returnable from Python: native code holds them (an autograd graph, a library)",
                    detail="; ".join(dict.fromkeys(b.site for b in others if b.site)) or None,
                )
            )
    else:
        lines += tensor_lines(attribution)
        notes.append(
            "the allocator's block list is not readable (cudaMallocAsync, or CUDA not initialised): tensors "
            "are counted by storage bytes, workspaces are not told apart"
        )
    if reserved is not None:
        cached = reserved - allocated
        stuck = min(stranded[1], cached) if stranded is not None else 0
        if stuck:
            lines.append(
                LedgerLine(
                    "cached free",
                    stuck,
                    f"free space in {stranded[0] if stranded else 0} segments that still hold a live block",
                    "not returnable by empty_cache(): free the live blocks that share the segments",
                )
            )
        lines.append(
            LedgerLine(
                "cached free",
                cached - stuck,
                "the caching allocator's free segments",
                "empty_cache()",
            )
        )
    else:
        notes.append("reserved bytes not reported (cudaMallocAsync): the cache is in the residual")
    base = reserved if reserved is not None else allocated
    if process_used is not None and context is not None:
        total, source = process_used, "NVML's figure for this process"
        lines.append(
            LedgerLine(
                "context",
                context,
                "the CUDA context (NVML's figure less reserved, at the first reading)",
                "not returnable: the context (run the GPU work in a child process: vramguard.isolated)",
            )
        )
        lines.append(
            LedgerLine(
                "outside torch",
                process_used - base - context,
                "memory outside torch's allocator (NCCL, cupy, CTranslate2, lazily loaded kernels)",
                "the library that allocated it, or a child process",
            )
        )
    else:
        total, source = base, "the allocator's reserved bytes (NVML gives no figure for this process)"
        notes.append("NVML gives no figure for this process: the context and memory outside torch are not counted")
    lines.append(
        LedgerLine(
            RESIDUAL,
            total - sum(line.nbytes for line in lines),
            "not explained by any line above",
            "unknown",
            detail="the block list and the allocator's counters are read one after the other",
        )
    )
    return total, source, lines, notes
