"""torch's CUDA memory history for ``gpu_session(record_history=True)``; nested sessions share it."""

from __future__ import annotations

import threading
from typing import Any

import torch

_lock = threading.Lock()
_history_users = [0]
HISTORY_MAX_ENTRIES = 100_000
"""Allocator events torch keeps for ``record_history=True`` (several KB each in the pickle)."""


def record_history(start: bool) -> Any:
    """Turn torch's CUDA memory history on (nested sessions share it) or take its snapshot and
    turn it off when the last recording session leaves."""
    snap = None if start else torch.cuda.memory._snapshot()
    with _lock:
        if start and _history_users[0] == 0:
            torch.cuda.memory._record_memory_history(max_entries=HISTORY_MAX_ENTRIES)
        _history_users[0] += 1 if start else -1
        if not start and _history_users[0] == 0:
            torch.cuda.memory._record_memory_history(enabled=None)
    return snap
