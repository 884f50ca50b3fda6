"""The state of one entry into a session, the registry of the active ones, and the folding of
peaks between them (torch's counters and the host's resident high-water mark are process-wide)."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any

import torch

from vramguard.core import _hooks
from vramguard.core._sampler import Subscription
from vramguard.probes import (
    MemorySnapshot,
    is_host,
    read_resident_peak,
    reset_resident_peak,
    resident_bytes,
    resident_peak_reset_unavailable,
)

# Sessions active now, per device: for nesting (peaks fold into the outer's) and concurrency.
_active_lock = threading.Lock()
_active: dict[str, list[_Run]] = {}
_KEYS: dict[torch.device, str] = {}


def device_key(device: torch.device) -> str:
    """``str(device)``, the registry's key, made once per device (a C call that builds a new
    string each time, several times a session)."""
    key = _KEYS.get(device)
    if key is None:
        key = _KEYS[device] = str(device)
    return key


class _Run:
    """The state of one entry into a session. A plain class, compared by identity (the registry
    looks runs up with ``in``): a session per inference step builds one at every step."""

    __slots__ = (
        "at_exit",
        "before",
        "census",
        "concurrent",
        "device",
        "history_on",
        "host_hwm_floor_bytes",
        "host_rss_entry_bytes",
        "kept",
        "listener",
        "marks",
        "name",
        "owned",
        "owner",
        "owns_for_good",
        "peak_floor_allocated",
        "peak_floor_reserved",
        "session_ref",
        "started_s",
        "steps",
        "subscription",
    )  # fmt: skip

    def __init__(
        self,
        name: str,
        device: torch.device,
        owner: tuple[int, int],
        started_s: float,
        before: MemorySnapshot,
        subscription: Subscription | None,
    ) -> None:
        self.name = name
        self.device = device
        self.owner = owner
        self.started_s = started_s
        self.before = before
        self.subscription = subscription
        self.owned: list[tuple[object, bool]] = []
        self.kept: list[object] = []
        self.peak_floor_allocated: int | None = None
        self.peak_floor_reserved: int | None = None
        # Host only: the resident set when the entry reset VmHWM (None: no reset, peaks are
        # sampled), and the highest VmHWM read before a later session's reset wiped it.
        self.host_rss_entry_bytes: int | None = None
        self.host_hwm_floor_bytes: int | None = None
        self.concurrent = False
        self.marks: list[tuple[float, str]] | None = None if subscription is None or not subscription.record else []
        """The timeline's marks; None (nothing marked) when no timeline was asked for."""
        self.steps: list[str] = []
        """Lines for the report's notes from steps the block asked for (``s.park``, ``s.wake``)."""
        self.listener: _hooks.EmptyCacheListener | None = None
        self.history_on = False
        self.census: Any = None
        self.session_ref: Any = None  # a weak reference to the session object: see _lifecycle.sweep_abandoned
        self.at_exit: MemorySnapshot | None = None
        """The block's end, read before the release by a multi-device session (see _multi)."""
        self.owns_for_good = False
        """A multi-device session dropped what it owned: the release empties as an owning one does."""

    def fold_peak(self, allocated: int | None, reserved: int | None) -> None:
        if allocated is not None:
            self.peak_floor_allocated = max(self.peak_floor_allocated or 0, allocated)
        if reserved is not None:
            self.peak_floor_reserved = max(self.peak_floor_reserved or 0, reserved)

    def mark(self, label: str) -> None:
        """A point on the timeline (a no-op without one)."""
        if self.marks is not None:
            self.marks.append((time.monotonic() - self.started_s, label))


def _owner() -> tuple[int, int]:
    """Who runs a block: the thread, and the asyncio task within it (0 outside a task).

    Two tasks of one event loop interleave their blocks, so their figures mix like two threads'.
    """
    # Outside an event loop (the common case) no task is looked for: current_task() would raise
    # and catch a RuntimeError, a microsecond of every session.
    loop = asyncio.events._get_running_loop()
    task = None if loop is None else asyncio.current_task(loop)
    return threading.get_ident(), 0 if task is None else id(task)


def _max(*values: int | None) -> int | None:
    best = None
    for value in values:
        if value is not None and (best is None or value > best):
            best = value
    return best


def _fold_host_hwm(runs: list[_Run]) -> None:
    """Fold the kernel's resident high-water mark (VmHWM) now into host runs that reset it."""
    runs = [run for run in runs if run.host_rss_entry_bytes is not None]
    if runs:
        hwm = read_resident_peak().hwm_bytes
        for run in runs:
            run.host_hwm_floor_bytes = _max(run.host_hwm_floor_bytes, hwm)


def _enter_host_peak(run: _Run) -> None:
    """A host session's entry: reset VmHWM, so that at exit it holds the block's resident peak
    however short the spike (malloc keeps no peak; the sampler looks every few ms).

    The reset is process-wide: it wipes the mark for every host session active now, so the mark
    read just before it folds into theirs first (as torch's peaks do in ``_start``). Under the
    registry's lock, so that no other entry resets between that read and this reset.
    """
    if not is_host(run.device):
        return
    if reset_host_peak(run.device, but=run):
        # The entry's resident set, on VmHWM's basis: statm's resident figure is the same
        # kernel counter as VmRSS (file + anonymous + shmem pages), read in 1 µs, not 8.
        statm = resident_bytes()
        run.host_rss_entry_bytes = statm[0] if statm is not None else read_resident_peak().rss_bytes


def reset_host_peak(device: torch.device, *, but: _Run | None = None) -> bool:
    """Fold VmHWM into the host runs active now (but ``but``), then reset it; False where it
    cannot be reset. Under the registry's lock, so that no other entry resets between the two.
    A session that resets before its entry reading takes that reading's resident set as the
    mark's start (one read of /proc instead of two)."""
    with _active_lock:
        others = _active.get(device_key(device))
        if others:  # most sessions have none active beside them: no list, no read
            _fold_host_hwm([other for other in others if other is not but])
        return reset_resident_peak()


def _exit_host_peak(
    run: _Run, allocated: int | None, reserved: int | None, interval_s: float
) -> tuple[int | None, int | None, str | None]:
    """A host session's (peak allocated, peak reserved) with its resident spike folded in, and
    a note where there is no spike to fold (the peaks are then only sampled).

    VmHWM counts every resident page, the entry's ``reserved_bytes`` only anonymous ones, so the
    spike is VmHWM − the resident set at entry, on VmHWM's basis, added to each entry figure.
    Adding it to malloc's in-use figure too makes ``peak_increase_bytes`` (what ``max_peak``
    limits) cover memory touched and freed between two samples; that figure then also counts
    memory malloc does not see (pymalloc arenas), which is the host memory the block took.
    """
    if not is_host(run.device):
        return allocated, reserved, None
    entry, hwm = run.host_rss_entry_bytes, run.host_hwm_floor_bytes
    if entry is None or hwm is None:
        reason = resident_peak_reset_unavailable() or "VmHWM not readable from /proc/self/status"
        every = f"{interval_s * 1000:g} ms" if interval_s < 1 else f"{interval_s:g} s"
        note = f"host peak sampled every {every}: {reason}, short spikes may be missed"
        return allocated, reserved, note
    spike = max(0, hwm - entry)
    before = run.before
    if before.allocated_bytes is not None:
        allocated = _max(allocated, before.allocated_bytes + spike)
    if before.reserved_bytes is not None:
        reserved = _max(reserved, before.reserved_bytes + spike)
    return allocated, reserved, None


@dataclass(frozen=True)
class ActiveSession:
    """A session of this process that is inside its block now (``vramguard devices --watch``)."""

    name: str
    device: str
    running_s: float
    concurrent: bool


def active_sessions() -> tuple[ActiveSession, ...]:
    """The sessions of this process inside their blocks now, oldest first, across devices."""
    now = time.monotonic()
    with _active_lock:
        runs = [run for runs in _active.values() for run in runs]
    runs.sort(key=lambda run: run.started_s)
    return tuple(ActiveSession(run.name, str(run.device), now - run.started_s, run.concurrent) for run in runs)
