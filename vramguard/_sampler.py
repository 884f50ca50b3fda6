"""One shared background thread that samples memory while sessions need it.

Host sessions need it for their peak (malloc has no peak counter); any session asking for a
timeline (``sample_every=``) gets its samples from it. The thread starts on first use, sleeps on
a condition while nobody is subscribed, and ends after ``IDLE_EXIT_S`` without subscribers.
Subscribing to a running thread costs a lock and a notify, not a thread start (about 120 µs),
which keeps an empty session cheap. A session that records a timeline stops and joins the
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

    def subscribe(self, sub: Subscription) -> None:
        with self._cond:
            sub.next_due_s = time.monotonic()
            self._subs.append(sub)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="vramguard-sampler", daemon=True)
                self._thread.start()
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

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        me = threading.current_thread()
        while True:
            with self._cond:
                while not self._subs and self._thread is me:
                    if not self._cond.wait(timeout=IDLE_EXIT_S) and not self._subs:
                        if self._thread is me:
                            self._thread = None
                        return
                if self._thread is not me:
                    return
                now = time.monotonic()
                due = [s for s in self._subs if s.next_due_s <= now]
                wait = min(s.next_due_s for s in self._subs) - now
            if due:
                readings: dict[tuple[str, bool], tuple[int | None, int | None, int | None]] = {}
                for sub in due:
                    key = (str(sub.device), sub.nvml)
                    if key not in readings:
                        readings[key] = read_now(sub.device, sub.nvml)
                    sub.observe(time.monotonic(), *readings[key])
                    sub.next_due_s = now + sub.interval_s
                continue
            with self._cond:
                self._cond.wait(timeout=max(wait, 0.0005))


SAMPLER = Sampler()
