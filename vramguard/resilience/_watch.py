"""``watch``: a creep watchdog for long-running services. It samples a device's memory every so
often and, when it has grown past a bound since the baseline, calls back with the census's
answer to "what is new since the baseline": the tensors alive now whose storages were not, and
who holds them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import torch

from vramguard.core._errors import InvalidArgument
from vramguard.core._records import Leak
from vramguard.core._sizes import SizeLike, format_size, parse_duration, parse_size
from vramguard.core._tensors import storage_key
from vramguard.probes import DeviceLike, resolve_device, take

LOG = logging.getLogger("vramguard.resilience")
Metric = Literal["allocated", "reserved", "rss"]
_METRICS = ("allocated", "reserved", "rss")
NEW_TENSORS_LISTED = 32
"""The largest new storages a growth names (with holders): the walk costs per tensor."""


@dataclass(frozen=True)
class Growth:
    """Memory grew past the bound: the figures (``metric`` on ``device``) and the storages alive
    now that were not at the baseline, largest first (at most 32, with their holders)."""

    device: str
    metric: str
    baseline_bytes: int
    current_bytes: int
    max_growth_bytes: int
    elapsed_s: float
    new_tensors: tuple[Leak, ...]
    new_tensor_bytes: int

    @property
    def growth_bytes(self) -> int:
        return self.current_bytes - self.baseline_bytes

    def __str__(self) -> str:
        lines = [
            f"{self.device} {self.metric} memory grew by {format_size(self.growth_bytes)} in {self.elapsed_s:.1f} s "
            f"(bound {format_size(self.max_growth_bytes)}); {format_size(self.new_tensor_bytes)} in new tensors"
        ]
        for leak in self.new_tensors:
            where = leak.holders[0] if leak.holders else "holder not found"
            lines.append(f"  {format_size(leak.nbytes)} {leak.description}, held by {where}")
        return "\n".join(lines)


class Watch:
    """The watchdog (create with :func:`watch`). ``check()`` samples now (the thread calls it
    every ``every_s``); ``start()``/``stop()``, or use it as a context manager."""

    def __init__(
        self,
        every: float | str,
        max_growth: SizeLike,
        on_growth: Callable[[Growth], object],
        device: DeviceLike | None,
        metric: Metric,
    ) -> None:
        self.every_s = parse_duration(every, argument="every")
        self.max_growth_bytes = parse_size(max_growth, argument="max_growth")
        if not callable(on_growth):
            raise InvalidArgument("on_growth", on_growth, "a function taking a Growth record")
        if metric not in _METRICS:
            raise InvalidArgument("metric", metric, _METRICS)
        self.on_growth = on_growth
        self.device = resolve_device(device)
        self.metric: Metric = metric
        self.growths = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._baseline_bytes = 0
        self._baseline_s = 0.0
        self._storages: dict[int, Any] = {}
        self.rebaseline()

    # -- sampling -------------------------------------------------------------------------------
    def sample(self) -> int | None:
        """The watched figure now, in bytes (None where it cannot be read)."""
        snap = take(self.device, nvml=False)
        value = {"allocated": snap.allocated_bytes, "reserved": snap.reserved_bytes, "rss": snap.rss_bytes}
        return value[self.metric]

    def rebaseline(self) -> None:
        """Make now the baseline: its figure, and the storages alive now."""
        from vramguard.census._scan import live_storages

        with self._lock:
            self._baseline_bytes = self.sample() or 0
            self._baseline_s = time.monotonic()
            self._storages = {key: ref for key, (ref, _) in live_storages(self.device).items()}

    def check(self) -> Growth | None:
        """Sample now; past the bound, call back with what is new, make now the new baseline
        (the next call back needs another ``max_growth``) and return the growth."""
        with self._lock:
            current = self.sample()
            if current is None or current - self._baseline_bytes <= self.max_growth_bytes:
                return None
            growth = self._growth(current)
        self.growths += 1
        self.rebaseline()
        self.on_growth(growth)
        return growth

    def _growth(self, current: int) -> Growth:
        from vramguard.census import Census
        from vramguard.census._scan import describe

        new = self._new_storages()
        total = sum(nbytes for _, nbytes in new.values())
        largest = sorted(new, key=lambda k: -new[k][1])[:NEW_TENSORS_LISTED]
        # Only ``tensors`` holds them during the walk: any other name here would be named as a holder.
        tensors: list[object] = [new[key][0] for key in largest]
        sizes = [(new[key][1], describe(new[key][0])) for key in largest]
        new.clear()
        holders: list[tuple[str, ...]] = [() for _ in tensors]
        try:
            if tensors:
                holders = Census(self.device).holders_of(tensors, [])
        except Exception:  # the watchdog must never break the service: report the growth without holders
            LOG.exception("vramguard.watch: the holder search failed; the growth is reported without holders")
        tensors.clear()
        leaks = tuple(
            Leak(nbytes=nbytes, description=text, created_at=None, holders=paths)
            for (nbytes, text), paths in zip(sizes, holders, strict=True)
        )
        return Growth(
            device=str(self.device),
            metric=self.metric,
            baseline_bytes=self._baseline_bytes,
            current_bytes=current,
            max_growth_bytes=self.max_growth_bytes,
            elapsed_s=time.monotonic() - self._baseline_s,
            new_tensors=leaks,
            new_tensor_bytes=total,
        )

    def _new_storages(self) -> dict[int, tuple[torch.Tensor, int]]:
        """A tensor per storage on the device that was not alive at the baseline, with its bytes."""
        from vramguard.census._scan import heap_tensors, on_device

        new: dict[int, tuple[torch.Tensor, int]] = {}
        for tensor in heap_tensors():
            if not on_device(tensor, self.device):
                continue
            key = storage_key(tensor)
            if key is None or key[0] in new:
                continue
            old = self._storages.get(key[0])
            if old is None or old.expired():  # new since the baseline (or a freed one's address reused)
                new[key[0]] = (tensor, key[1].nbytes())
        return new

    # -- the thread -----------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.check()
            except Exception:  # a failing callback must not end the watch
                LOG.exception("vramguard.watch: the growth check or its callback failed")

    def start(self) -> Watch:
        """Start the daemon thread (once; a second start while running does nothing)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="vramguard-watch", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread and wait for it (safe to call more than once, or from the callback)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> Watch:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def watch(
    *,
    every: float | str = "30 s",
    max_growth: SizeLike = "200 MiB",
    on_growth: Callable[[Growth], object],
    device: DeviceLike | None = "auto",
    metric: Metric = "allocated",
    start: bool = True,
) -> Watch:
    """Watch ``device``'s memory for creep: every ``every`` (seconds, or ``"30 s"``) sample
    ``metric`` ("allocated": the allocator's, on the host malloc's, in-use bytes; "reserved";
    "rss": the process's resident set) and call ``on_growth(growth)`` when it is more than
    ``max_growth`` above the baseline (taken now), with the tensors new since the baseline and
    their holders. A daemon thread, started unless ``start=False``; ``stop()`` it, or use
    ``with vramguard.watch(...):``. ``check()`` samples at once (between requests, in tests).
    """
    if not isinstance(start, bool):
        raise InvalidArgument("start", start, "True or False")
    watcher = Watch(every, max_growth, on_growth, device, metric)
    return watcher.start() if start else watcher
