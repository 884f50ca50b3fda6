"""Per-rank and per-device reports built by hand, for the record and renderer tests."""

from __future__ import annotations

from typing import Any

from vramguard import Leak, MemorySnapshot, SessionReport

MIB = 2**20


def snap(device: str, allocated: int | None, reserved: int | None) -> MemorySnapshot:
    return MemorySnapshot(device=device, time_s=0.0, allocated_bytes=allocated, reserved_bytes=reserved, rss_bytes=None)


def session(
    device: str = "cuda:0", *, peak: int | None = 300 * MIB, leaked: int | None = 0, **changes: Any
) -> SessionReport:
    """A session that started at 100 MiB, peaked at ``peak`` and leaked ``leaked`` bytes."""
    holder = ("global __main__.CACHE[0]",)
    leaks = (Leak(leaked, f"float32 tensor on {device}", "train.py:7", holder),) if leaked else ()
    fields: dict[str, Any] = {
        "name": "step",
        "device": device,
        "before": snap(device, 100 * MIB, 128 * MIB),
        "at_exit": snap(device, 200 * MIB, 320 * MIB),
        "after": snap(device, 100 * MIB + (leaked or 0), 160 * MIB),
        "peak_allocated_bytes": peak,
        "peak_reserved_bytes": None if peak is None else peak + 20 * MIB,
        "kept_bytes": 0,
        "leaked_bytes": leaked,
        "release_steps": (),
        "duration_s": 0.5,
        "leaks": leaks,
    }
    fields.update(changes)
    return SessionReport(**fields)
