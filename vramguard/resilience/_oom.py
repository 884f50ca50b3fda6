"""What counts as running out of memory: decided by the exception's type, never by its text.

``torch.OutOfMemoryError`` is what the CUDA caching allocator raises (and a capped allocator,
``gpu_session(hard=True)`` on CUDA); ``MemoryError`` is Python's own and the host budget's
(:class:`~vramguard.BudgetExceeded` is one). torch's default CPU allocator raises a plain
``RuntimeError`` (a ``c10::Error``: "DefaultCPUAllocator: can't allocate memory") that no type
tells apart from any other failure, so it is not recognised: on the host, use a hard budget.
"""

from __future__ import annotations

import traceback

import torch

OUT_OF_MEMORY: tuple[type[BaseException], ...] = (torch.OutOfMemoryError, MemoryError)


def is_out_of_memory(error: BaseException) -> bool:
    """True when ``error``'s type says it is an out-of-memory error."""
    return isinstance(error, OUT_OF_MEMORY)


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
