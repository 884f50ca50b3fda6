"""One pinned host buffer per park: every CUDA storage's copy at an aligned offset in it, pinned
as one range of its own size, unpinned and freed when the park is woken.

Why not ``torch.empty(..., pin_memory=True)``: torch's pinned host allocator rounds every block up
to a power of two before asking CUDA for it (``ATen/core/CachingHostAllocator.h:300-309``; the
threshold that would stop it, ``pinned_max_round_threshold``, defaults to ``SIZE_MAX``,
``c10/core/AllocatorConfig.h:361``), and keeps freed blocks cached until
``torch.accelerator.empty_host_cache()`` (``torch/accelerator/memory.py:35``, absent from older
torch) or ``torch._C._host_emptyCache()``: a 1.1 GiB copy pinned 2 GiB and stayed pinned after
the wake. Emptying that cache is process-wide (it frees every idle pinned block, other code's
too), so this module stays out of it: it pins plain host memory with ``cudaHostRegister``, as
torch's own checkpoint stager does (``torch/distributed/checkpoint/_state_dict_stager.py:169-177``,
``torch/cuda/_pin_memory_utils.py``), exactly the pages the copy needs, and unregisters them on
wake, after which the memory is freed like any tensor's.
"""

from __future__ import annotations

import mmap
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from vramguard.core._errors import InvalidArgument

ALIGNMENT_BYTES = 512
"""Where each storage's copy starts in the buffer: the CUDA caching allocator's block granularity
(``kMinBlockSize``), so a copy is as aligned on the host as its storage was on the device, and
a view of any dtype (16 bytes at most) starts on an element."""


@dataclass(frozen=True)
class Packing:
    """Where each storage lies in the one host buffer, and the buffer's size."""

    offsets_bytes: tuple[int, ...]
    total_bytes: int


def pack(sizes_bytes: Sequence[int], alignment_bytes: int = ALIGNMENT_BYTES) -> Packing:
    """Each size placed in order at the next multiple of ``alignment_bytes``: the total is the sum
    plus less than ``alignment_bytes`` of padding per storage, never a rounding of the whole."""
    if not isinstance(alignment_bytes, int) or alignment_bytes < 1 or alignment_bytes & (alignment_bytes - 1):
        raise InvalidArgument("alignment_bytes", alignment_bytes, "a power of two, at least 1")
    offsets: list[int] = []
    end = 0
    for size in sizes_bytes:
        if not isinstance(size, int) or size < 0:
            raise InvalidArgument("sizes_bytes", size, "sizes in bytes, each an int >= 0")
        start = -(-end // alignment_bytes) * alignment_bytes
        offsets.append(start)
        end = start + size
    return Packing(tuple(offsets), end)


class Registrar(Protocol):
    """Pins and unpins a host address range; each returns the CUDA error code (0: success)."""

    def register(self, address: int, nbytes: int) -> int: ...

    def unregister(self, address: int) -> int: ...


@dataclass(frozen=True)
class CudaRegistrar:
    """``cudaHostRegister`` / ``cudaHostUnregister`` with ``device`` current, so that pinning
    uses that device's context and never creates one on device 0 for a model on device 1
    (torch's pinned allocator picks a device with a context for the same reason)."""

    device: torch.device

    def register(self, address: int, nbytes: int) -> int:
        with torch.cuda.device(self.device):
            # Flag 1 is cudaHostRegisterPortable: pinned for every device's context, as
            # torch/cuda/_pin_memory_utils.py registers it.
            error = int(_cudart().cudaHostRegister(address, nbytes, 1))
            if error:
                _clear_last_error(self.device)
            return error

    def unregister(self, address: int) -> int:
        with torch.cuda.device(self.device):
            error = int(_cudart().cudaHostUnregister(address))
            if error:
                _clear_last_error(self.device)
            return error


def _cudart() -> Any:
    runtime: Any = torch.cuda.cudart  # untyped in torch
    return runtime()


def _clear_last_error(device: torch.device) -> None:
    """Read back the CUDA runtime's last error after a failed call we handled.

    torch's ``cudart`` bindings return the error without clearing it (``C10_CUDA_ERROR_HANDLED``
    is the bare expression, torch/csrc/cuda/shared/cudart.cpp), and every later kernel launch
    checks ``cudaGetLastError()`` (``C10_CUDA_KERNEL_LAUNCH_CHECK``): left set, it would fail
    the user's next, unrelated kernel. One small launch here reads it and clears it."""
    try:
        torch.empty(1, dtype=torch.uint8, device=device).fill_(1)
    except RuntimeError:
        pass


def _unpin(registrar: Registrar, address: int, memory: torch.Tensor) -> None:
    """Unregister before the memory can be freed (``memory`` is held until this returns):
    freed pages still registered would stay pinned in the driver."""
    registrar.unregister(address)
    del memory


class HostBuffer:
    """``total_bytes`` of host memory, pinned as whole pages of its own when ``registrar``
    succeeds; ``data`` is the flat uint8 buffer. :meth:`release` unpins it (the caller must
    have waited for every copy from it: registered memory carries no event of torch's)."""

    def __init__(self, total_bytes: int, registrar: Registrar) -> None:
        page = mmap.PAGESIZE
        span = -(-total_bytes // page) * page
        # One page more than the whole pages needed, so the registered pages lie wholly inside
        # this allocation: no other allocation shares them, and no other park's range overlaps
        # (cudaHostRegister refuses a range that is partly registered already).
        raw = torch.empty(span + page, dtype=torch.uint8)
        skip = -raw.data_ptr() % page
        self.data = raw[skip : skip + total_bytes]
        address = raw.data_ptr() + skip
        self.error = registrar.register(address, span) if span else 0
        self._release = weakref.finalize(self, _unpin, registrar, address, raw) if span and not self.error else None
        if self._release is not None:
            # At exit the CUDA context may be gone before finalizers run; the process ends anyway.
            self._release.atexit = False

    @property
    def pinned(self) -> bool:
        return self._release is not None and self._release.alive

    def release(self) -> None:
        """Unpin the pages now (idempotent); the memory goes once the last view of ``data`` does."""
        if self._release is not None:
            self._release()
