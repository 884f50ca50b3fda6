"""The sizes of the cuBLAS and cuBLASLt workspaces torch allocates through its caching allocator.

The first matmul a thread runs on a stream allocates a cuBLAS workspace for that (handle, stream)
through the caching allocator, and torch keeps it for the handle's life
(aten/src/ATen/cuda/CublasHandlePool.cpp: ``setWorkspaceForHandle`` → ``getNewWorkspace`` →
``CUDACachingAllocator::get()->allocate(getChosenWorkspaceSize())``). It is in the allocator's
allocated and reserved figures, held by no tensor; torch's own leak check frees it before
comparing (torch/testing/_internal/common_utils.py, ``_cuda_clearCublasWorkspaces``). A block of
exactly one of these sizes that no tensor uses is a workspace, not a leak.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable

import torch

from vramguard.probes._blocks import Block, live_blocks

_PAIR = re.compile(r":([0-9]+):([0-9]+)")
_CUBLAS_DEFAULT_BYTES = 4096 * 1024 * 2 + 16 * 1024 * 8
"""``:4096:2:16:8``, torch's default before Hopper (CublasHandlePool.cpp, parseChosenWorkspaceSize)."""
_CUBLAS_SM90_BYTES = 4096 * 8 * 1024
"""32 MiB, torch's default on compute capability 9.0 (the H100 and H200)."""
_CUBLASLT_DEFAULT_KIB = 1024
"""1 MiB: parseCUDABlasLtWorkspaceSize's default (#73328)."""


def cublas_workspace_bytes(config: str | None, capability: tuple[int, int] | None) -> int:
    """The cuBLAS workspace torch allocates per (handle, stream), as ``parseChosenWorkspaceSize``
    computes it: the sum of SIZE KiB × COUNT over ``CUBLAS_WORKSPACE_CONFIG``'s ``:SIZE:COUNT``
    pairs, else 32 MiB on compute capability 9.0 and ``:4096:2:16:8`` elsewhere (also when the
    variable holds no pair, as torch warns and does)."""
    default = _CUBLAS_SM90_BYTES if capability == (9, 0) else _CUBLAS_DEFAULT_BYTES
    if not config:
        return default
    pairs = _PAIR.findall(config)
    if not pairs:
        return default
    return sum(int(size) * 1024 * int(count) for size, count in pairs)


def cublaslt_workspace_bytes(size_kib: str | None, cublas_bytes: int) -> int:
    """The cuBLASLt workspace: ``CUBLASLT_WORKSPACE_SIZE`` KiB (1024 by default), no larger than
    the cuBLAS workspace unless ``TORCH_CUBLASLT_UNIFIED_WORKSPACE=0`` (parseCUDABlasLtWorkspaceSize,
    getCUDABlasLtWorkspaceSize; an unparsable value falls back to the default, as torch's does)."""
    kib = _CUBLASLT_DEFAULT_KIB
    if size_kib is not None:
        try:
            kib = int(size_kib.strip())
        except ValueError:
            pass
    unified = os.environ.get("TORCH_CUBLASLT_UNIFIED_WORKSPACE", "").strip().lower() not in ("0", "false", "off", "no")
    lt = kib * 1024
    return min(lt, cublas_bytes) if unified else lt


def workspace_sizes(device: torch.device) -> frozenset[int]:
    """The workspace sizes torch would allocate on ``device`` (empty off CUDA, or before CUDA is
    initialised: the device's capability is read only from an initialised process)."""
    if device.type != "cuda" or not torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        return frozenset()
    index = device.index if device.index is not None else torch.cuda.current_device()
    capability = tuple(torch.cuda.get_device_capability(index))
    cublas = cublas_workspace_bytes(os.environ.get("CUBLAS_WORKSPACE_CONFIG"), (capability[0], capability[1]))
    return frozenset({cublas, cublaslt_workspace_bytes(os.environ.get("CUBLASLT_WORKSPACE_SIZE"), cublas)})


_lock = threading.Lock()
_known: dict[int, frozenset[int]] = {}
"""By device index: the addresses of the live workspace-sized blocks at vramguard's last look."""


def _index(device: torch.device) -> int:
    return device.index if device.index is not None else 0


def split_workspaces(blocks: Iterable[Block], sizes: frozenset[int]) -> tuple[list[Block], list[Block]]:
    """(the blocks of exactly a workspace's requested size, the others), in order. Among blocks
    no tensor covers, the first are cuBLAS/cuBLASLt workspaces."""
    workspaces: list[Block] = []
    others: list[Block] = []
    for block in blocks:
        is_workspace = block.requested_bytes is not None and block.requested_bytes in sizes
        (workspaces if is_workspace else others).append(block)
    return workspaces, others


def _workspace_blocks(device: torch.device) -> dict[int, Block] | None:
    blocks = live_blocks(device)
    if blocks is None:
        return None
    workspaces, _ = split_workspaces(blocks.values(), workspace_sizes(device))
    return {block.address: block for block in workspaces}


def seed_workspaces(device: torch.device) -> None:
    """Remember the workspace-sized blocks live now, once per device and process (one allocator
    snapshot; before CUDA is initialised there are none, read without touching the driver)."""
    index = _index(device)
    if device.type != "cuda" or index in _known:
        return
    found = _workspace_blocks(device)
    with _lock:
        _known.setdefault(index, frozenset(found or ()))


def new_workspaces(device: torch.device) -> list[Block]:
    """Workspace-sized blocks live now that were not at the last look (see :func:`seed_workspaces`).

    Without the census nothing tells such a block from a tensor of exactly that size; a thread
    allocates its workspace at its first matmul on a stream, once, which is what this counts.
    """
    found = _workspace_blocks(device)
    if found is None:
        return []
    index = _index(device)
    with _lock:
        known = _known.get(index, frozenset())
        _known[index] = frozenset(found)
    return [block for address, block in found.items() if address not in known]
