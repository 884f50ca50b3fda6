"""What counts as running out of memory: decided by the exception's type wherever torch gives
one, and by a CUDA library's own status name only where torch raises a plain ``RuntimeError``.

- ``torch.OutOfMemoryError`` (``torch.cuda.OutOfMemoryError`` before torch had the top-level
  name): the CUDA caching allocator, capped or not (``gpu_session(hard=True)`` on CUDA).
- ``MemoryError``: Python's own and the host budget's (:class:`~vramguard.BudgetExceeded`).
- ``torch.AcceleratorError`` (torch 2.8 and later) whose ``error_code`` is
  ``cudaErrorMemoryAllocation`` (2): a CUDA runtime call outside the caching allocator that
  ran out of memory (``C10_CUDA_CHECK``, c10/cuda/CUDAException.cpp).
- a plain ``RuntimeError`` naming a library's allocation failure: cuBLAS
  (``TORCH_CUDABLAS_CHECK``: "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling ..."),
  cuSOLVER ("cusolver error: CUSOLVER_STATUS_ALLOC_FAILED"), cuDNN (``AT_CUDNN_CHECK``: "cuDNN
  error: CUDNN_STATUS_ALLOC_FAILED..."), all in aten/src/ATen/cuda/Exceptions.h and
  Exceptions.cpp; and, on torch before 2.8, ``C10_CUDA_CHECK``'s "CUDA error: out of memory".
  Their workspaces come from the device too, and a smaller batch needs a smaller one.

Any other text, "CUDA out of memory" in a ``RuntimeError`` included, is not recognised: the
allocator's own message comes with its own type. torch's default CPU allocator raises a plain
``RuntimeError`` ("DefaultCPUAllocator: can't allocate memory") that nothing tells apart from
any other failure, so it is not recognised: on the host, use a hard budget.
"""

from __future__ import annotations

import traceback

import torch

_TORCH_OOM: type[BaseException] = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
_ACCELERATOR_ERROR: type[BaseException] | None = getattr(torch, "AcceleratorError", None)
CUDA_ERROR_MEMORY_ALLOCATION = 2
"""``cudaErrorMemoryAllocation`` (and ``hipErrorOutOfMemory``): the runtime's out-of-memory code."""

OUT_OF_MEMORY: tuple[type[BaseException], ...] = (_TORCH_OOM, MemoryError)
"""The types that always mean out of memory; :func:`is_out_of_memory` also reads the others."""

LIBRARY_ALLOC_FAILED: tuple[str, ...] = (
    "CUBLAS_STATUS_ALLOC_FAILED",
    "CUSOLVER_STATUS_ALLOC_FAILED",
    "CUDNN_STATUS_ALLOC_FAILED",
    *(() if _ACCELERATOR_ERROR is not None else ("CUDA error: out of memory",)),
)
"""The status names torch puts in a plain ``RuntimeError`` for a library's allocation failure."""


def is_out_of_memory(error: BaseException) -> bool:
    """True when ``error`` is an out-of-memory error: by its type, by its CUDA error code, or,
    for a plain ``RuntimeError`` only, by a CUDA library's allocation-failure status name."""
    if isinstance(error, OUT_OF_MEMORY):
        return True
    if _ACCELERATOR_ERROR is not None and isinstance(error, _ACCELERATOR_ERROR):
        return getattr(error, "error_code", None) == CUDA_ERROR_MEMORY_ALLOCATION
    if type(error) is RuntimeError:
        text = str(error)
        return any(status in text for status in LIBRARY_ALLOC_FAILED)
    return False


def drop_frames(error: BaseException) -> None:
    """Clear the local variables of every finished frame in ``error``'s traceback and those of
    its causes and contexts: a failed forward's frames hold its activations, and nothing can be
    released while the exception keeps them. The traceback's lines stay printable."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)
        pending += [current.__cause__, current.__context__]
