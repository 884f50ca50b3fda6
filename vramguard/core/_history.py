"""torch's CUDA memory history for ``gpu_session(record_history=True)``; nested sessions share it."""

from __future__ import annotations

import threading
from typing import Any

import torch

_lock = threading.Lock()
_history_users = [0]
HISTORY_MAX_ENTRIES = 100_000
"""Allocator events torch keeps for ``record_history=True`` (several KB each in the pickle)."""
HISTORY_OPTIONS: dict[str, Any] = {"enabled": "all", "stacks": "python", "max_entries": HISTORY_MAX_ENTRIES}
"""The arguments of ``torch.cuda.memory._record_memory_history`` (all three exist since torch 2.1)."""


def record_history(start: bool) -> Any:
    """Turn torch's CUDA memory history on (nested sessions share it) or take its snapshot and
    turn it off when the last recording session leaves."""
    snap = None if start else torch.cuda.memory._snapshot()
    with _lock:
        if start and _history_users[0] == 0:
            # stacks="python": the default "all" records C++ frames as well and symbolises them
            # in every snapshot, so a creation site read like "??:0 in c10::...::malloc"
            # (torch/cuda/memory.py:_record_memory_history, stacks defaults to "all").
            torch.cuda.memory._record_memory_history(**HISTORY_OPTIONS)
        _history_users[0] += 1 if start else -1
        if not start and _history_users[0] == 0:
            torch.cuda.memory._record_memory_history(enabled=None)
    return snap
