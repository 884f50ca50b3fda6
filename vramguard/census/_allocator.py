"""CUDA: the allocator's live blocks at a census's start, diffed after the release.

A block allocated in the block and still live that no tensor the census saw accounts for is new
memory an older Python object holds (a model loaded earlier moved to the GPU, gradients written
into an older model): :meth:`BlockDiff.tensors_in` finds the tensors whose storages lie in it,
over the whole heap. What no tensor accounts for is held from C++ only (an autograd graph, a
library's workspace) and is noted, not counted. See :mod:`vramguard.probes._blocks`.
"""

from __future__ import annotations

import torch

from vramguard.census._epoch import EPOCH
from vramguard.census._judge import grad_of
from vramguard.census._scan import heap_tensors, on_device
from vramguard.core._sizes import format_size
from vramguard.core._tensors import tensor_key
from vramguard.probes import Block, live_blocks, new_blocks, split_workspaces, uncovered, workspace_sizes


class BlockDiff:
    """The live blocks of ``device`` at start (None off CUDA: then it does nothing)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._entry = live_blocks(device)
        self._now: dict[int, Block] = {}

    @property
    def active(self) -> bool:
        return self._entry is not None

    def unaccounted(self, pointers: set[int]) -> list[Block]:
        """Blocks live now, not at start, that none of ``pointers`` (storages' data pointers) lies in."""
        if self._entry is None:
            return []
        now = live_blocks(self.device)
        if now is None:
            return []
        self._now = now
        return uncovered(new_blocks(self._entry, now), pointers)

    def tensors_in(self, blocks: list[Block]) -> list[torch.Tensor]:
        """Every tensor on the heap (gradients of parameters included) whose storage lies in ``blocks``."""
        found: list[torch.Tensor] = []
        parameter = torch.nn.Parameter
        with EPOCH.thawed():
            for tensor in heap_tensors():
                if not on_device(tensor, self.device):
                    continue
                candidates = [tensor]
                if issubclass(type(tensor), parameter):
                    grad = grad_of(tensor)
                    if grad is not None:
                        candidates.append(grad)
                    del grad
                for candidate in candidates:
                    key = tensor_key(candidate)
                    if key is not None and not uncovered(blocks, [key[2].data_ptr()]):
                        found.append(candidate)
                del candidates
        return found

    def site_of(self, pointer: int) -> str | None:
        """The allocating stack's first frame outside torch (with the memory history on)."""
        block = self._now.get(pointer)
        return None if block is None else block.site

    def note(self, blocks: list[Block]) -> tuple[str, ...]:
        """Lines for the blocks no tensor uses: cuBLAS workspaces named as such, the rest as
        memory held from C++."""
        return held_from_cpp(blocks, workspace_sizes(self.device))


def held_from_cpp(blocks: list[Block], workspace_bytes: frozenset[int]) -> tuple[str, ...]:
    """The report's lines for new blocks that no Python tensor uses. A block of exactly a cuBLAS
    or cuBLASLt workspace's requested size is one (torch keeps one per thread, device and stream
    for the handle's life: not a leak); the rest is held from C++ (an autograd graph, another
    library's workspace)."""
    workspaces, rest = split_workspaces(blocks, workspace_bytes)
    lines = []
    if workspaces:
        total = sum(b.size_bytes for b in workspaces)
        lines.append(
            f"{format_size(total)} in {len(workspaces)} cuBLAS workspace(s) allocated in the block: torch keeps "
            "one per thread and stream for the cuBLAS handle's life (not a leak; "
            "torch._C._cuda_clearCublasWorkspaces() frees them)"
        )
    if rest:
        total = sum(b.size_bytes for b in rest)
        lines.append(
            f"{format_size(total)} in {len(rest)} allocator block(s) allocated in the block are still live "
            "with no Python tensor using them (held from C++: an autograd graph, a library's workspace)"
        )
    return tuple(lines)
