"""Hard budgets: ``gpu_session(max_peak=..., hard=True)`` makes an allocation past the budget fail
inside the block, instead of letting the block starve everyone else and be judged afterwards.

CUDA: the caching allocator itself is capped (``torch.cuda.set_per_process_memory_fraction``)
at the bytes allocated at entry plus the budget, so the block gets ``torch.OutOfMemoryError``
from the allocator. The allocator checks its cap against reserved segments, so the refusal can
come before the block's allocated bytes reach the budget, never after, unless the free space
inside partly used segments at entry was already larger than the budget (docs/reliability.md).
The cap in force is the smallest of the active budgets on the device; the fraction found at
the first entry comes back when the last leaves, also after an exception. The host has no
allocator cap to set, so every op the block runs goes through a dispatch mode that counts the
storages it creates (exactly, once per storage, freed ones dropped) and refuses the op whose
output would take them past the budget with :class:`~vramguard.BudgetExceeded`, a
``MemoryError``; that output is freed at once.
"""

from __future__ import annotations

import threading
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from vramguard.census._scan import StorageWeakRef
from vramguard.core._errors import BudgetExceeded
from vramguard.core._release import _raw_empty_cache
from vramguard.core._sizes import format_size
from vramguard.core._tensors import storage_key
from vramguard.probes import cuda_initialized, read_allocator
from vramguard.resilience._caps import CapPlan, FractionStack, fraction_for, plan_cap


class HostBudget(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """Counts the host storages the block's ops create and refuses the one that would pass
    ``budget_bytes``. Storages an op shares with its inputs (views, in-place ops) are not new.

    The count is an upper bound between checks (a freed storage is dropped only when the bound
    would be passed), so an op costs a dictionary update, and the refusal is exact."""

    def __init__(self, budget_bytes: int, device: torch.device) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.budget_bytes = budget_bytes
        self.device = device
        self.peak_bytes = 0
        self._live: dict[int, tuple[StorageWeakRef, int]] = {}
        self._counted = 0

    def in_use_bytes(self) -> int:
        """The bytes of the storages the block created that are still alive."""
        self._prune()
        return self._counted

    def _prune(self) -> None:
        dead = [key for key, (ref, _) in self._live.items() if ref.expired()]
        for key in dead:
            self._counted -= self._live.pop(key)[1]

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        new: dict[int, tuple[StorageWeakRef, int]] = {}
        inputs: set[int] | None = None
        for leaf in tree_leaves(out):
            if not isinstance(leaf, torch.Tensor) or leaf.device != self.device:
                continue
            key = storage_key(leaf)
            if key is None or key[0] in self._live or key[0] in new:
                continue
            if inputs is None:
                found = (storage_key(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor))
                inputs = {k[0] for k in found if k is not None}
            if key[0] not in inputs:
                new[key[0]] = (StorageWeakRef(key[1]), key[1].nbytes())
        if not new:
            return out
        added = sum(nbytes for _, nbytes in new.values())
        if self._counted + added > self.budget_bytes:
            self._prune()
        if self._counted + added > self.budget_bytes:
            in_use = self._counted
            del out, new  # the refused output is freed here, before the error reaches the block
            message = (
                f"hard budget: {func} would allocate {format_size(added)} with {format_size(in_use)} of the "
                f"block's memory in use, past its max_peak of {format_size(self.budget_bytes)}"
            )
            raise BudgetExceeded(message, budget_bytes=self.budget_bytes, requested_bytes=added, in_use_bytes=in_use)
        self._live.update(new)
        self._counted += added
        self.peak_bytes = max(self.peak_bytes, self._counted)
        return out


def _entry_figures(index: int) -> tuple[int, int, int | None]:
    """(total, allocated, reserved) bytes of device ``index`` once its cache is emptied.

    torch's own ``empty_cache`` (``_raw_empty_cache``): the census of an enclosing session wraps
    the public one to catch a user emptying the cache before dropping references, and the
    budget's own call is not the user's. Synchronized first, so blocks freed by work still
    queued are back in the cache to be returned."""
    if cuda_initialized():
        torch.cuda.synchronize(index)
        with torch.cuda.device(index):
            _raw_empty_cache()
    total = int(torch.cuda.get_device_properties(index).total_memory)
    reading = read_allocator(torch.device("cuda", index))
    return total, reading.allocated_bytes, reading.reserved_bytes


def _read_fraction(index: int) -> float:
    # get_per_process_memory_fraction is documented from torch 2.9 on (torch/cuda/memory.py:200
    # in 2.13; 2.11 has it). Without it the fraction in force cannot be read: torch's default,
    # 1.0, is assumed, and a fraction set by hand before the first hard budget is lost at its exit.
    getter = getattr(torch.cuda, "get_per_process_memory_fraction", None)
    return float(getter(index)) if getter is not None else 1.0


def _write_fraction(fraction: float, index: int) -> None:
    torch.cuda.set_per_process_memory_fraction(fraction, index)


_STACKS: dict[int, FractionStack] = {}
"""The hard budgets active per device index: the fraction is process-wide, budgets nest and
run in several threads at once, and they leave in any order."""
_STACKS_LOCK = threading.Lock()


class CudaBudget:
    """Caps the CUDA caching allocator of ``device`` at the bytes allocated at entry plus
    ``budget_bytes`` (see :func:`~vramguard.resilience._caps.plan_cap`: the allocator counts
    reserved segments, and allocated ≤ reserved), through the per-process memory fraction.

    The cap is process-wide for the device: other threads' allocations count against it while
    the block runs. Budgets active at once share a stack per device: the smallest cap is in
    force, and when one leaves, in any order, the smallest of the others comes back (the
    fraction found at the first entry when none is left)."""

    def __init__(self, budget_bytes: int, device: torch.device) -> None:
        self.budget_bytes = budget_bytes
        self.device = device
        self.index = device.index if device.index is not None else torch.cuda.current_device()
        self.plan: CapPlan | None = None
        self.fraction: float | None = None
        self._token: int | None = None

    def __enter__(self) -> CudaBudget:
        index = self.index
        total, allocated, reserved = _entry_figures(index)
        self.plan = plan_cap(self.budget_bytes, allocated, reserved)
        self.fraction = fraction_for(self.plan.cap_bytes, total)
        with _STACKS_LOCK:
            stack = _STACKS.setdefault(index, FractionStack())
            current = _read_fraction(index) if stack.original is None else stack.original
            token, effective = stack.push(self.fraction, current)
            try:
                _write_fraction(effective, index)
            except BaseException:
                stack.pop(token)
                if stack.empty:
                    del _STACKS[index]
                raise
        self._token = token
        return self

    def __exit__(self, *exc: object) -> None:
        token, self._token = self._token, None
        if token is None:
            return
        with _STACKS_LOCK:
            stack = _STACKS[self.index]
            fraction = stack.pop(token)
            if stack.empty:
                del _STACKS[self.index]
            _write_fraction(fraction, self.index)


class Budget:
    """The hard budget of one session entry: the device's mechanism, entered and left once."""

    def __init__(self, budget_bytes: int, device: torch.device) -> None:
        self.host: HostBudget | None = None
        self.cuda: CudaBudget | None = None
        if device.type == "cuda":
            self.cuda = CudaBudget(budget_bytes, device)
        else:
            self.host = HostBudget(budget_bytes, device)

    def __enter__(self) -> Budget:
        if self.cuda is not None:
            self.cuda.__enter__()
        elif self.host is not None:
            self.host.__enter__()  # type: ignore[no-untyped-call]
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cuda is not None:
            self.cuda.__exit__()
        elif self.host is not None:
            self.host.__exit__(None, None, None)  # type: ignore[no-untyped-call]


def enter_budget(budget_bytes: int, device: torch.device) -> Budget:
    """Start a hard budget of ``budget_bytes`` on ``device``; leave it with ``__exit__``."""
    return Budget(budget_bytes, device).__enter__()
