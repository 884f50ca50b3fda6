"""One shared background thread that samples memory while sessions need it.

Host sessions need it for their peak (malloc has no peak counter); any session asking for a
timeline (``sample_every=``) gets its samples from it. The thread starts on first use, looks every
``HOST_SAMPLE_INTERVAL_S`` while nobody is subscribed, and ends after ``IDLE_EXIT_S`` without
subscribers. Subscribing to a running thread costs a lock, not a thread start (about 120 µs) nor
a wake-up, which keeps an empty session cheap. A session that records a timeline stops and joins the
thread at its exit when nobody else needs it, so no thread outlives such a block.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import torch

from vramguard.probes import heap_in_use_bytes, read_allocator, read_nvml, resident_bytes

IDLE_EXIT_S = 1.0
MAX_TIMELINE_SAMPLES = 100_000
"""A timeline keeps at most this many samples: past it, every other sample is dropped and the
interval doubles, so a long recorded block costs bounded memory (a leak tool must not leak)."""
HOST_SAMPLE_INTERVAL_S = 0.005
"""How often a host session's peak is sampled (malloc keeps no peak of its own)."""


@dataclass
class Subscription:
    """What one session wants from the sampler, and what it got."""

    device: torch.device
    interval_s: float
    record: bool
    nvml: bool = False
    origin_s: float = field(default_factory=time.monotonic)
    peak_allocated_bytes: int | None = None
    peak_reserved_bytes: int | None = None
    samples: list[tuple[float, int | None, int | None, int | None]] = field(default_factory=list)
    next_due_s: float = 0.0

    def observe(self, now: float, allocated: int | None, reserved: int | None, process: int | None) -> None:
        if allocated is not None and (self.peak_allocated_bytes is None or allocated > self.peak_allocated_bytes):
            self.peak_allocated_bytes = allocated
        if reserved is not None and (self.peak_reserved_bytes is None or reserved > self.peak_reserved_bytes):
            self.peak_reserved_bytes = reserved
        if self.record:
            self.samples.append((now - self.origin_s, allocated, reserved, process))
            if len(self.samples) >= MAX_TIMELINE_SAMPLES:
                del self.samples[1::2]
                self.interval_s *= 2

    def close(self, now: float, allocated: int | None, reserved: int | None, process: int | None) -> None:
        """End the timeline with the session's final reading (its ``after`` snapshot), so the
        plot's last point is the report's ``after``: the thread's last sample may predate the
        last release step. Samples taken later than ``now`` (while the thread was stopping) go."""
        if not self.record:
            return
        t_s = now - self.origin_s
        while self.samples and self.samples[-1][0] > t_s:
            self.samples.pop()
        self.samples.append((t_s, allocated, reserved, process))


def read_now(device: torch.device, nvml: bool = False) -> tuple[int | None, int | None, int | None]:
    """(allocated, reserved, NVML process used) of ``device``, as cheaply as possible."""
    if device.type == "cpu":
        statm = resident_bytes()
        return heap_in_use_bytes(), None if statm is None else statm[1], None
    process = read_nvml(device.index or 0).process_used_bytes if nvml else None
    stats = read_allocator(device)  # one memory_stats() call for both figures
    return stats.allocated_bytes, stats.reserved_bytes, process


class Sampler:
    """The shared sampling thread."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._subs: list[Subscription] = []
        self._thread: threading.Thread | None = None
        self._wake_at = 0.0  # when the thread plans to look again

    def subscribe(self, sub: Subscription) -> None:
        with self._cond:
            now = time.monotonic()
            # The session's entry reading covers t=0: the first sample is due one interval later.
            sub.next_due_s = now + sub.interval_s
            self._subs.append(sub)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="vramguard-sampler", daemon=True)
                self._thread.start()
            elif sub.next_due_s < self._wake_at:
                # Only wake the thread when it would look too late: a wake-up competes for the
                # GIL with the session's own entry.
                self._cond.notify()

    def unsubscribe(self, sub: Subscription, *, join: bool = False) -> None:
        """Stop sampling for ``sub``; with ``join``, also end the thread if nobody else needs it."""
        with self._cond:
            if sub in self._subs:
                self._subs.remove(sub)
            thread = self._thread
            if join and not self._subs and thread is not None:
                self._thread = None
                self._cond.notify_all()
            else:
                thread = None
        if thread is not None:
            thread.join()

    def _loop(self) -> None:
        me = threading.current_thread()
        last_busy = time.monotonic()
        while True:
            with self._cond:
                if self._thread is not me:
                    return
                now = time.monotonic()
                if not self._subs:
                    # Idle: keep looking every host interval for a while (a new session is then
                    # picked up without a wake-up), and end after IDLE_EXIT_S.
                    if now - last_busy >= IDLE_EXIT_S:
                        self._thread = None
                        return
                    self._wake_at = now + HOST_SAMPLE_INTERVAL_S
                    self._cond.wait(timeout=HOST_SAMPLE_INTERVAL_S)
                    continue
                last_busy = now
                due = [s for s in self._subs if s.next_due_s <= now]
                if not due:
                    wait = min(s.next_due_s for s in self._subs) - now
                    self._wake_at = now + wait
                    self._cond.wait(timeout=max(wait, 0.0005))
                    continue
            readings: dict[tuple[str, bool], tuple[int | None, int | None, int | None]] = {}
            for sub in due:
                key = (str(sub.device), sub.nvml)
                if key not in readings:
                    readings[key] = read_now(sub.device, sub.nvml)
                sub.observe(time.monotonic(), *readings[key])
                sub.next_due_s = now + sub.interval_s


SAMPLER = Sampler()
