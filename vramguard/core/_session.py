"""``gpu_session``: measure a block's memory, release it in the right order, report what survived.

One object is a context manager (``with``, ``async with``) and a decorator (bare or with
arguments, sync or async functions). Each entry produces a fresh :class:`SessionReport`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal, TypeVar, overload

import torch

from vramguard.core import _lifecycle
from vramguard.core._decorate import check_decorated, decorate
from vramguard.core._distributed_exit import check_distributed, finish_then_gather, gatherer, require_initialized
from vramguard.core._errors import (
    InvalidArgument,
    SessionError,
)
from vramguard.core._multi import MultiDeviceSession, is_multi
from vramguard.core._records import SessionReport
from vramguard.core._run import _Run
from vramguard.core._sampler import HOST_SAMPLE_INTERVAL_S
from vramguard.core._sizes import SizeLike, parse_size
from vramguard.probes import (
    DeviceLike,
    resolve_device,
    take,
)

F = TypeVar("F", bound=Callable[..., Any])
_ENTRY_LOCK = threading.Lock()
"""Held only to check and claim a session object at entry (one lock for all: it is never held
for longer than two attribute reads and a write)."""
T = TypeVar("T")
LeakPolicy = Literal["ignore", "warn", "raise"]
_LEAK_POLICIES = ("ignore", "warn", "raise")


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
        hard: bool = False,
        isolate: bool = False,
        distributed: bool = False,
        group: Any = None,
        gather_timeout: float | None = None,
    ) -> None:
        if name is not None and not isinstance(name, str):
            raise InvalidArgument("name", name, "a str, or None for the decorated function's name")
        if not isinstance(leaks, str) or leaks not in _LEAK_POLICIES:  # `in` on an array compares elementwise
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
        for flag, value in (("hard", hard), ("isolate", isolate)):
            if not isinstance(value, bool):
                raise InvalidArgument(flag, value, "True or False")
        if hard and self.max_peak_bytes is None:
            raise InvalidArgument("hard", hard, "hard=True only with max_peak=<a size>: the budget it enforces")
        self.hard = hard
        self.isolate = isolate
        self.report: SessionReport | None = None
        self._run: _Run | None = None
        self._entering = False
        self._budget: Any = None
        check_distributed(distributed, group, gather_timeout)
        self.distributed, self.group, self.gather_timeout = distributed, group, gather_timeout
        self.cluster_report: Any = None
        """With ``distributed=True`` (or ``group=``): the :class:`vramguard.distributed.ClusterReport`
        gathered from every rank at exit."""
        self._gather = gatherer(self, group, gather_timeout) if distributed or group is not None else None

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

    def park(self, obj: Any, **options: Any) -> Any:
        """:func:`vramguard.park` as a marked, timed step of the block: ``park:<type>`` and
        ``park:<type> done`` on the timeline, the park's line in the report's notes. The handle
        is kept (its host copy is expected to survive the block). Options go to ``park``."""
        run = self._require_run("park")
        # The one reach of the core up into vramguard.parking: lazy, only when a block parks.
        from vramguard.parking import park

        label = type(obj).__name__
        run.mark(f"park:{label}")
        handle = park(obj, **options)
        run.mark(f"park:{label} done")
        run.steps.append(str(handle.report).splitlines()[0])
        run.kept.append(handle)
        return handle

    def wake(self, parked: Any, **options: Any) -> Any:
        """:func:`vramguard.wake` (of a handle or of the parked object) as a marked, timed step:
        ``wake:<type>`` and ``wake:<type> done``, the wake's line in the notes. The woken tensors
        are kept (their storages are new, and expected to outlive the block)."""
        run = self._require_run("wake")
        from vramguard.parking import parked_handle, wake

        handle = parked_handle(parked)
        label = type(parked if handle is None else handle.obj).__name__
        run.mark(f"wake:{label}")
        report = wake(parked, **options)
        run.mark(f"wake:{label} done")
        run.steps.append(str(report).splitlines()[0])
        run.kept.append(handle)
        return report

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
        with _ENTRY_LOCK:
            # Checked and claimed at once: two threads entering one session object both got past
            # a bare check of _run, and both registered runs.
            if self._run is not None or self._entering:
                raise SessionError(f"session {self.name!r} is already active; create one session per block")
            self._entering = True
        try:
            return self._enter()
        finally:
            self._entering = False

    def _enter(self) -> GpuSession:
        if self._gather is not None:
            require_initialized()
        if self.isolate:
            accepted = "isolate=True only for a decorated function (a with-block cannot move), or vramguard.isolated"
            raise InvalidArgument("isolate", True, accepted)
        budget = None
        if self.hard:
            # Entered before the run starts (and left before it finishes): the session's own
            # bookkeeping is never counted against the block's budget.
            from vramguard.resilience._budget import enter_budget

            assert self.max_peak_bytes is not None
            budget = enter_budget(self.max_peak_bytes, self.device)
        try:
            self._run = _lifecycle.start(self, self.name or "session")
        except BaseException:
            if budget is not None:
                budget.__exit__()
            raise
        self._budget = budget
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
        name = self.name or check_decorated(fn)
        config = self._config()
        if self.isolate:
            from vramguard.resilience._isolate import isolate_decorated

            return isolate_decorated(fn, str(name), {**config, "isolate": False})  # type: ignore[return-value]
        return decorate(fn, lambda: GpuSession(name, **config))

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
            "hard": self.hard,
            "isolate": self.isolate,
            "distributed": self.distributed,
            "group": self.group,
            "gather_timeout": self.gather_timeout,
        }

    def hand_over_exit(self, *, owns: bool) -> None:
        """Read the block's end now, before any release (a multi-device session calls this for
        every device first: one device's empty_cache() empties the others' caches too)."""
        run = self._run
        if run is not None:
            run.at_exit = take(run.device, nvml=False)
            run.owns_for_good = owns

    def _finish(self, exc: BaseException | None) -> None:
        run = self._run
        assert run is not None
        self._run = None
        budget, self._budget = self._budget, None
        limit = self.max_peak_bytes
        try:
            if budget is not None:
                budget.__exit__()
                if budget.host is not None:
                    # The host budget refused every allocation past max_peak, counted per storage:
                    # the report's resident peak (interpreter pages too) is not judged against it again.
                    self.max_peak_bytes = None
        finally:
            try:
                if self._gather is None:
                    _lifecycle.finish(self, run, exc)
                else:
                    finish_then_gather(lambda: _lifecycle.finish(self, run, exc), self._gather, exc)
            finally:
                self.max_peak_bytes = limit


@overload
def gpu_session(name: F, /) -> F: ...


# "all" is also a str, so this overload overlaps the next one; it comes first, so it wins.
@overload
def gpu_session(  # type: ignore[overload-overlap]
    name: str | None = None,
    *,
    device: Literal["all"] | list[DeviceLike] | tuple[DeviceLike, ...],
    **options: Any,
) -> MultiDeviceSession: ...


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
    hard: bool = False,
    isolate: bool = False,
    distributed: bool = False,
    group: Any = None,
    gather_timeout: float | None = None,
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
    objects per level, leaks walked; a report that reached one says so), ``hard`` (with
    ``max_peak``: an allocation past the budget fails inside the block; CUDA caps the allocator,
    the host refuses the op, docs/reliability.md), ``isolate`` (decorator only: each call runs in
    a spawned child process that returns everything it held, see :func:`vramguard.isolated`).
    ``device="all"`` (every visible GPU; the CPU alone on a host) or a list (``[0, 2]``) gives a
    :class:`MultiDeviceSession`, one session per device (docs/distributed.md). ``distributed=True``
    (or ``group=`` a process group) gathers every rank's report at exit into ``cluster_report``,
    waiting at most ``gather_timeout`` seconds (60) for the other ranks.
    """
    if is_multi(options.get("device")):
        if callable(name) and not isinstance(name, str):
            return MultiDeviceSession(None, **options)(name)
        return MultiDeviceSession(name, **options)
    if callable(name) and not isinstance(name, str):
        return GpuSession(None, **options)(name)
    return GpuSession(name, **options)
