"""``gpu_session``: measure a block's memory, release it in the right order, report what survived.

One object is a context manager (``with``, ``async with``) and a decorator (bare or with
arguments, sync or async functions). Each entry produces a fresh :class:`SessionReport`.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, TypeVar, overload

import torch

from vramguard.core import _collect, _hooks, _release
from vramguard.core._errors import (
    InvalidArgument,
    LeakError,
    LeakWarning,
    PeakExceeded,
    ReleaseOrderError,
    ReleaseOrderWarning,
    SessionError,
)
from vramguard.core._history import record_history as _history
from vramguard.core._records import Leak, OrderViolation, SessionReport, Timeline
from vramguard.core._sampler import HOST_SAMPLE_INTERVAL_S, SAMPLER, Subscription
from vramguard.core._sizes import SizeLike, format_size, parse_size
from vramguard.core._tensors import storage_bytes
from vramguard.probes import (
    DeviceLike,
    MemorySnapshot,
    read_resident_peak,
    reset_peak,
    reset_resident_peak,
    resident_bytes,
    resident_peak_reset_unavailable,
    resolve_device,
    take,
)

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
LeakPolicy = Literal["ignore", "warn", "raise"]
_LEAK_POLICIES = ("ignore", "warn", "raise")

HOST_NOISE_FLOOR_BYTES = 256 * 1024
"""Without the census, a host leak figure under this is interpreter noise (malloc deltas of
1–42 KiB were measured for a block that kept nothing) and is reported as 0."""

# Sessions active now, per device: for nesting (peaks fold into the outer's) and concurrency.
_active_lock = threading.Lock()
_active: dict[str, list[_Run]] = {}


@dataclass
class _Run:
    """The state of one entry into a session."""

    name: str
    device: torch.device
    owner: tuple[int, int]
    started_s: float
    before: MemorySnapshot
    subscription: Subscription | None
    owned: list[tuple[object, bool]] = field(default_factory=list)
    kept: list[object] = field(default_factory=list)
    peak_floor_allocated: int | None = None
    peak_floor_reserved: int | None = None
    # Host only: the resident set when the entry reset VmHWM (None: no reset, peaks are sampled),
    # and the highest VmHWM read before a later session's reset wiped it.
    host_rss_entry_bytes: int | None = None
    host_hwm_floor_bytes: int | None = None
    concurrent: bool = False
    marks: list[tuple[float, str]] = field(default_factory=list)
    listener: _hooks.EmptyCacheListener | None = None
    history_on: bool = False
    census: Any = None

    def fold_peak(self, allocated: int | None, reserved: int | None) -> None:
        if allocated is not None:
            self.peak_floor_allocated = max(self.peak_floor_allocated or 0, allocated)
        if reserved is not None:
            self.peak_floor_reserved = max(self.peak_floor_reserved or 0, reserved)

    def mark(self, label: str) -> None:
        self.marks.append((time.monotonic() - self.started_s, label))


def _owner() -> tuple[int, int]:
    """Who runs a block: the thread, and the asyncio task within it (0 outside a task).

    Two tasks of one event loop interleave their blocks, so their figures mix like two threads'.
    """
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running event loop in this thread
        task = None
    return threading.get_ident(), 0 if task is None else id(task)


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _user_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside vramguard, so
    warning filters by module and the printed location name the user's code."""
    frame = sys._getframe(1)
    level = 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    return level


def _max(*values: int | None) -> int | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


class GpuSession:
    """A measured, released block. Create with :func:`gpu_session`."""

    def __init__(
        self,
        name: str | None = None,
        *,
        device: DeviceLike | None = "auto",
        release: bool = True,
        leaks: LeakPolicy = "warn",
        leak_tolerance: SizeLike = 0,
        max_peak: SizeLike | None = None,
        census: bool = True,
        strict: bool = False,
        sample_every: float | None = None,
        record_history: bool = False,
        holder_levels: int = 24,
        holder_width: int = 64,
        holder_leaks: int = 256,
    ) -> None:
        if name is not None and not isinstance(name, str):
            raise InvalidArgument("name", name, "a str, or None for the decorated function's name")
        if leaks not in _LEAK_POLICIES:
            raise InvalidArgument("leaks", leaks, _LEAK_POLICIES)
        flags = (("release", release), ("census", census), ("strict", strict), ("record_history", record_history))
        for flag, value in flags:
            if not isinstance(value, bool):
                raise InvalidArgument(flag, value, "True or False")
        if sample_every is not None and (
            isinstance(sample_every, bool) or not isinstance(sample_every, (int, float)) or not 0 < sample_every <= 60
        ):
            raise InvalidArgument("sample_every", sample_every, "None or a number of seconds in (0, 60]")
        self.name = name
        self.device = resolve_device(device)
        self.release = release
        self.leaks: LeakPolicy = leaks
        self.leak_tolerance_bytes = parse_size(leak_tolerance, argument="leak_tolerance")
        self.max_peak_bytes = None if max_peak is None else parse_size(max_peak, argument="max_peak")
        self.census = census
        self.strict = strict
        self.sample_every = None if sample_every is None else float(sample_every)
        self.record_history = record_history
        for bound, count in (
            ("holder_levels", holder_levels),
            ("holder_width", holder_width),
            ("holder_leaks", holder_leaks),
        ):
            if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 100_000:
                raise InvalidArgument(
                    bound, count, "an int from 1 to 100000 (a count: the holder search is bounded by work)"
                )
        self.holder_bounds = (holder_levels, holder_width, holder_leaks)
        if record_history and self.device.type != "cuda":
            accepted = "a CUDA device: record_history=True records torch's CUDA memory history"
            raise InvalidArgument("device", device, accepted)
        self.sample_interval_s = self.sample_every or HOST_SAMPLE_INTERVAL_S
        self.report: SessionReport | None = None
        self._run: _Run | None = None

    # -- the block's API ------------------------------------------------------------------
    def own(self, obj: T, *, evict: bool = False) -> T:
        """Hold ``obj`` for the block and drop the session's reference at exit, before the
        collection, so nothing the session holds keeps it alive. Only that reference is dropped:
        a name of yours (``model = s.own(...)``) still holds it, and the report then says who
        (``owned Linear still held by local 'model' in main()``). ``evict=True`` also moves an
        ``nn.Module``'s parameters and buffers to the meta device, freeing them even if someone
        else still holds the module."""
        run = self._require_run("own")
        if not isinstance(evict, bool):
            raise InvalidArgument("evict", evict, "True or False")
        if evict and not isinstance(obj, torch.nn.Module):
            raise InvalidArgument("evict", evict, f"evict=True only for torch.nn.Module, not {type(obj).__name__}")
        run.owned.append((obj, evict))
        return obj

    def keep(self, obj: T) -> T:
        """Mark ``obj`` (and the tensors reachable from it) as an expected survivor, not a leak.

        With ``census=False`` the leak figure is allocated after − before − kept bytes, so keep
        only what the block created: keeping an older tensor would hide as much of a leak.
        """
        self._require_run("keep").kept.append(obj)
        return obj

    @property
    def active(self) -> bool:
        """True between entry and exit."""
        return self._run is not None

    def _require_run(self, what: str) -> _Run:
        if self._run is None:
            raise SessionError(f"{what}() is only valid inside the session's block")
        return self._run

    # -- context manager ------------------------------------------------------------------
    def __enter__(self) -> GpuSession:
        if self._run is not None:
            raise SessionError(f"session {self.name!r} is already active; create one session per block")
        self._run = self._start(self.name or "session")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._finish(exc)

    async def __aenter__(self) -> GpuSession:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._finish(exc)

    # -- decorator --------------------------------------------------------------------------
    def __call__(self, fn: F) -> F:
        """Decorate ``fn``: each call runs in a fresh session; the last report is ``fn.vram_report``."""
        if not callable(fn):
            raise InvalidArgument("fn", fn, "a function to decorate")
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            # The wrapper would return the generator at once and close the session before
            # the body ever ran: nothing would be measured.
            raise InvalidArgument(
                "fn", fn, "a function or coroutine function; for a generator, use `with gpu_session(...)` inside it"
            )
        name = self.name or getattr(fn, "__qualname__", getattr(fn, "__name__", "session"))
        config = self._config()

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                session = GpuSession(name, **config)
                try:
                    async with session:
                        result = await fn(*args, **kwargs)
                        session.keep(result)
                        return result
                finally:
                    async_wrapper.vram_report = session.report  # type: ignore[attr-defined]

            async_wrapper.vram_report = None  # type: ignore[attr-defined]
            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            session = GpuSession(name, **config)
            try:
                with session:
                    result = fn(*args, **kwargs)
                    session.keep(result)
                    return result
            finally:
                wrapper.vram_report = session.report  # type: ignore[attr-defined]

        wrapper.vram_report = None  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    def _config(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "release": self.release,
            "leaks": self.leaks,
            "leak_tolerance": self.leak_tolerance_bytes,
            "max_peak": self.max_peak_bytes,
            "census": self.census,
            "strict": self.strict,
            "sample_every": self.sample_every,
            "record_history": self.record_history,
            "holder_levels": self.holder_bounds[0],
            "holder_width": self.holder_bounds[1],
            "holder_leaks": self.holder_bounds[2],
        }

    # -- entry and exit ---------------------------------------------------------------------
    def _start(self, name: str) -> _Run:
        dev = self.device
        key = str(dev)
        me = _owner()
        record = self.sample_every is not None
        subscription = None
        if dev.type == "cpu" or record:
            subscription = Subscription(dev, self.sample_interval_s, record, nvml=record)
        before = take(dev, nvml=True)
        run = _Run(name, dev, me, time.monotonic(), before, subscription)
        with _active_lock:
            others = _active.setdefault(key, [])
            for other in others:
                # Fold everyone's peak so far before the reset below wipes it.
                other.fold_peak(before.peak_allocated_bytes, before.peak_reserved_bytes)
                if other.owner != me:
                    other.concurrent = run.concurrent = True
            others.append(run)
        try:
            # torch's peak counters are process-wide: a session resets them at entry (and so
            # does every nested one); max_memory_allocated() read elsewhere sees the reset.
            reset_peak(dev)
            run.fold_peak(before.allocated_bytes, before.reserved_bytes)
            if self.census:
                run.census = _start_census(dev, self.strict, self.holder_bounds)
            _enter_host_peak(run)  # after the census's heap scan: its lists are not the block's
            if subscription is not None:
                SAMPLER.subscribe(subscription)
            if record:
                # Timeline marks for the block's empty_cache calls (the release's own are release:*).
                def on_empty_cache(device: torch.device, depth: int) -> None:
                    if device == dev:
                        run.mark("empty_cache")

                run.listener = on_empty_cache
                _hooks.empty_cache_listeners.append(on_empty_cache)
            if self.record_history:
                _history(True)
                run.history_on = True
            run.mark("enter")
        except BaseException:
            # A failed entry leaves nothing behind: no registry entry, listener, sampler or census.
            self._detach(run)
            if run.census is not None:
                run.census.abort()
            raise
        return run

    def _finish(self, exc: BaseException | None) -> None:
        run = self._run
        assert run is not None
        self._run = None
        try:
            report = self._measure_and_release(run, exc)
        except BaseException as failure:
            # Whatever failed (a device error in synchronize, an interrupt), nothing stays
            # registered, and the block's own exception is never replaced.
            self._detach(run)
            if run.census is not None:
                run.census.abort()
            if exc is None:
                raise
            problem = f"{type(failure).__name__}: {failure}"
            _add_note(exc, f"vramguard could not measure or release the failed block: {problem}")
            return
        self.report = report
        if exc is not None:
            # Never swallow or replace the block's exception: attach the report to it.
            _add_note(exc, f"vramguard report for the failed block:\n{report}")
            return
        self._enforce(report)

    @staticmethod
    def _detach(run: _Run) -> tuple[bool, Any]:
        """Take the run out of everything process-wide; idempotent. Returns whether another
        owner was active on the device, and the memory history if this run had it on."""
        if run.listener is not None:
            if run.listener in _hooks.empty_cache_listeners:
                _hooks.empty_cache_listeners.remove(run.listener)
            run.listener = None
        history = None
        if run.history_on:
            run.history_on = False
            history = _history(False)
        subscription = run.subscription
        if subscription is not None:
            SAMPLER.unsubscribe(subscription, join=subscription.record)
        with _active_lock:
            runs = _active.get(str(run.device), [])
            if run in runs:
                runs.remove(run)
            concurrent = run.concurrent or any(other.owner != run.owner for other in runs)
        return concurrent, history

    def _measure_and_release(self, run: _Run, exc: BaseException | None) -> SessionReport:
        dev = run.device
        run.mark("exit")
        if run.listener is not None:
            _hooks.empty_cache_listeners.remove(run.listener)
            run.listener = None
        at_exit = take(dev, nvml=False)
        _fold_host_hwm([run])  # the block's resident peak, before the census and the release run
        census = run.census
        if census is not None:
            census.stop(run.kept)
        evicted: list[str] = []

        owned_refs: list[tuple[str, weakref.ref[Any]]] = []

        def drop() -> str:
            count = len(run.owned)
            for obj, evict in run.owned:
                if evict:
                    assert isinstance(obj, torch.nn.Module)
                    evicted.append(_release.evict_module(obj, dev))
                try:
                    owned_refs.append((type(obj).__name__, weakref.ref(obj)))
                except TypeError:
                    pass  # not weak-referenceable (a list, a dict): cannot be checked afterwards
            run.owned.clear()
            return f"{count} owned reference(s) dropped" if count else ""

        if self.release:
            if census is not None:
                collect = _collect.census_policy(census, run.kept)
            else:
                floor = HOST_NOISE_FLOOR_BYTES if dev.type == "cpu" else 0
                collect = _collect.allocator_policy(dev, run.before, run.kept, floor)
            steps, after = _release.run_release(dev, drop, start=at_exit, mark=run.mark, collect=collect)
        else:
            drop()
            # Nothing was released: on the host the exit reading is the final one (NVML is CUDA only).
            steps, after = (), at_exit if dev.type == "cpu" else take(dev, nvml=True)
        concurrent, history = self._detach(run)
        subscription = run.subscription
        peak_allocated = _max(
            run.peak_floor_allocated,
            at_exit.peak_allocated_bytes,
            at_exit.allocated_bytes,
            subscription.peak_allocated_bytes if subscription else None,
        )
        peak_reserved = _max(
            run.peak_floor_reserved,
            at_exit.peak_reserved_bytes,
            at_exit.reserved_bytes,
            subscription.peak_reserved_bytes if subscription else None,
        )
        peak_allocated, peak_reserved, host_note = _exit_host_peak(
            run, peak_allocated, peak_reserved, self.sample_interval_s
        )
        with _active_lock:
            for other in _active.get(str(dev), []):
                other.fold_peak(peak_allocated, peak_reserved)
        kept_bytes = storage_bytes(run.kept, dev)
        notes: list[str] = list(after.notes)
        if host_note is not None:
            notes.append(host_note)
        leaks: tuple[Leak, ...] = ()
        violations: tuple[OrderViolation, ...] = ()
        leaked: int | None
        cycles: tuple[str, ...] = ()
        if census is not None:
            notes += _owned_notes(census, owned_refs, run.kept)
            leaks, violations = census.finish(run.kept)
            cycles = census.cycles
            notes += census.unattributed
            leaked = sum(leak.nbytes for leak in leaks)
        else:
            leaked = _allocator_leak(run.before, after, kept_bytes)
            if dev.type == "cpu" and leaked is not None and 0 < leaked < HOST_NOISE_FLOOR_BYTES:
                notes.append(
                    f"host malloc grew by {format_size(leaked)}, under the noise floor of "
                    f"{format_size(HOST_NOISE_FLOOR_BYTES)}: counted as no leak"
                )
                leaked = 0
        run.kept.clear()
        timeline = None
        if subscription is not None and subscription.record:
            timeline = Timeline(subscription.interval_s, tuple(subscription.samples), tuple(run.marks))
        return SessionReport(
            name=run.name,
            device=str(dev),
            before=run.before,
            at_exit=at_exit,
            after=after,
            peak_allocated_bytes=peak_allocated,
            peak_reserved_bytes=peak_reserved,
            kept_bytes=kept_bytes,
            leaked_bytes=leaked,
            release_steps=steps,
            duration_s=time.monotonic() - run.started_s,
            released=self.release,
            concurrent=concurrent,
            evicted=tuple(evicted),
            leaks=leaks,
            order_violations=violations,
            timeline=timeline,
            raised=None if exc is None else type(exc).__name__,
            notes=tuple(notes),
            memory_history=history,
            cycles=cycles,
        )

    def _enforce(self, report: SessionReport) -> None:
        if self.max_peak_bytes is not None:
            increase = report.peak_increase_bytes
            if increase is not None and increase > self.max_peak_bytes:
                raise PeakExceeded(
                    f"session {report.name!r} was limited to {format_size(self.max_peak_bytes)} "
                    f"but peaked at {format_size(increase)} above its start\n{report}",
                    report,
                )
        if report.order_violations:
            calls = "; ".join(str(v) for v in report.order_violations)
            message = f"session {report.name!r}: {calls}. Drop the references before emptying the cache\n{report}"
            if self.strict:
                raise ReleaseOrderError(message, report)
            warnings.warn(ReleaseOrderWarning(message), stacklevel=_user_stacklevel())
        leaked = report.leaked_bytes or 0
        if self.leaks != "ignore" and leaked > self.leak_tolerance_bytes:
            message = (
                f"session {report.name!r} leaked {format_size(leaked)} "
                f"(tolerance {format_size(self.leak_tolerance_bytes)})\n{report}"
            )
            if self.leaks == "raise":
                raise LeakError(message, report)
            warnings.warn(LeakWarning(message), stacklevel=_user_stacklevel())


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
    if run.device.type != "cpu":
        return
    with _active_lock:
        _fold_host_hwm([other for other in _active.get(str(run.device), []) if other is not run])
        if reset_resident_peak():
            # The entry's resident set, on VmHWM's basis: statm's resident figure is the same
            # kernel counter as VmRSS (file + anonymous + shmem pages), read in 1 µs, not 8.
            statm = resident_bytes()
            run.host_rss_entry_bytes = statm[0] if statm is not None else read_resident_peak().rss_bytes


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
    if run.device.type != "cpu":
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


def _owned_notes(census: Any, refs: list[tuple[str, weakref.ref[Any]]], kept: list[object]) -> list[str]:
    """A line per owned object still alive after the release, naming who holds it: the session
    dropped only its own reference."""
    alive = [(name, obj) for name, ref in refs if (obj := ref()) is not None]
    if not alive:
        return []
    holders = census.holders_of([obj for _, obj in alive], kept)
    notes = []
    for (name, _), paths in zip(alive, holders, strict=True):
        where = f"held by {paths[0]}" if paths else "still referenced"
        fix = "del it, or own(..., evict=True)" if name != "Tensor" else "del it"
        notes.append(f"owned {name} still {where}: {fix}")
    del alive
    return notes


def _allocator_leak(before: MemorySnapshot, after: MemorySnapshot, kept_bytes: int) -> int | None:
    if before.allocated_bytes is None or after.allocated_bytes is None:
        return None
    return max(0, after.allocated_bytes - before.allocated_bytes - kept_bytes)


def _add_note(exc: BaseException, note: str) -> None:
    if hasattr(exc, "add_note"):
        exc.add_note(note)
    else:  # Python 3.10
        exc.__notes__ = [*getattr(exc, "__notes__", []), note]


def _start_census(device: torch.device, strict: bool, bounds: tuple[int, int, int]) -> Any:
    """Start the census of tensors created in the block. Imported here, not at the top: the
    census sits beside the core, and a session with ``census=False`` never loads it."""
    from vramguard.census import Census
    from vramguard.census._holders import SearchBounds

    levels, width, leaks = bounds
    census = Census(device, strict=strict, bounds=SearchBounds(levels=levels, width=width, leaks=leaks))
    census.start()
    return census


@overload
def gpu_session(name: F, /) -> F: ...


@overload
def gpu_session(
    name: str | None = None,
    *,
    device: DeviceLike | None = "auto",
    release: bool = True,
    leaks: LeakPolicy = "warn",
    leak_tolerance: SizeLike = 0,
    max_peak: SizeLike | None = None,
    census: bool = True,
    strict: bool = False,
    sample_every: float | None = None,
    record_history: bool = False,
    holder_levels: int = 24,
    holder_width: int = 64,
    holder_leaks: int = 256,
) -> GpuSession: ...


def gpu_session(name: Any = None, /, **options: Any) -> Any:
    """A measured block: ``with gpu_session("whisper", device="cuda", max_peak="6 GiB") as s:``.

    Also ``async with``, and a decorator bare (``@gpu_session``) or with arguments. Options:
    ``device`` ("auto", "cpu", "cuda", "cuda:N", int, torch.device), ``release`` (run the
    ordered release at exit), ``leaks`` ("ignore", "warn", "raise") above ``leak_tolerance``
    (a size), ``max_peak`` (a size: the most the block may add at its peak), ``census``
    (track tensors created in the block to name leaks and their holders), ``strict``
    (raise on release-order violations), ``sample_every`` (seconds: record a timeline),
    ``record_history`` (CUDA: torch's memory history for the block), ``holder_levels`` /
    ``holder_width`` / ``holder_leaks`` (the holder search's bounds: steps up from a leak,
    objects per level, leaks walked; a report that reached one says so).
    """
    if callable(name) and not isinstance(name, str):
        return GpuSession(None, **options)(name)
    return GpuSession(name, **options)
