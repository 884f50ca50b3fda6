"""``GpuSession``: measure a block's memory, release it in the right order, report what survived.

One object is a context manager (``with``, ``async with``) and a decorator (bare or with
arguments, sync or async functions). Each entry produces a fresh :class:`SessionReport`. Its
settings are one :class:`~vramguard.SessionOptions` value; ``vramguard.gpu_session``
(:mod:`vramguard._api`) is the shortcut that builds it from keyword arguments.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

import torch

from vramguard.core import _lifecycle
from vramguard.core._decorate import check_decorated, decorate
from vramguard.core._distributed_exit import finish_then_gather, gatherer, require_initialized
from vramguard.core._errors import InvalidArgument, SessionError
from vramguard.core._options import SessionOptions, options_of
from vramguard.core._records import SessionReport
from vramguard.core._run import _Run
from vramguard.probes import take

F = TypeVar("F", bound=Callable[..., Any])
_ENTRY_LOCK = threading.Lock()
"""Held only to check and claim a session object at entry (one lock for all: it is never held
for longer than two attribute reads and a write)."""
T = TypeVar("T")


class GpuSession:
    """A measured, released block. Create with :func:`vramguard.gpu_session`, which checks the
    arguments once into a :class:`~vramguard.SessionOptions` (``options``); or pass one:
    ``GpuSession("step", options=opts)``.

    ``hard=True`` and ``isolate=True`` are sessions of the resilience package's own (a budgeted
    block, a call run in a child process): ``vramguard.gpu_session`` builds them; this class
    refuses them, so the core never imports the layer above it.
    """

    def __init__(self, name: str | None = None, *, options: SessionOptions | None = None, **arguments: Any) -> None:
        if name is not None and not isinstance(name, str):
            raise InvalidArgument("name", name, "a str, or None for the decorated function's name")
        if options is None:
            options = options_of(arguments)
        elif arguments:
            raise InvalidArgument("options", options, f"a SessionOptions alone, not with {', '.join(arguments)}")
        elif not isinstance(options, SessionOptions):
            raise InvalidArgument("options", options, "a vramguard.SessionOptions (SessionOptions.from_arguments(...))")
        for flag in ("hard", "isolate"):
            if getattr(options, flag) and not self._handles(flag):
                accepted = f"vramguard.gpu_session(..., {flag}=True): the resilience package's session does it"
                raise InvalidArgument(flag, True, accepted)
        self.name = name
        self.options = options
        self.report: SessionReport | None = None
        self._run: _Run | None = None
        self._entering = False
        self._guard: Any = None
        self.cluster_report: Any = None
        """With ``distributed=True`` (or ``group=``): the :class:`vramguard.distributed.ClusterReport`
        gathered from every rank at exit."""
        gather = options.gather
        self._gather = None
        if gather is not None:
            self._gather = gatherer(
                name, (str(options.device),), lambda: self.report, self._deliver, gather.group, gather.timeout_s
            )

    def _deliver(self, cluster: Any) -> None:
        self.cluster_report = cluster

    @property
    def device(self) -> torch.device:
        """The device the session measures."""
        return self.options.device

    def _handles(self, flag: str) -> bool:
        """Whether this class carries out ``hard=True`` / ``isolate=True`` (a subclass's)."""
        return False

    def _open(self) -> Any:
        """Entered before the run starts (and closed before it finishes): a subclass's guard
        around the block (the budget of ``hard=True``), so the session's own bookkeeping is
        never counted against it. None here."""
        return None

    def _close(self, guard: Any) -> SessionOptions:
        """Close ``_open``'s guard; returns the options the exit judges by (a subclass may drop
        a limit its guard already enforced)."""
        return self.options

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
        guard = self._open()
        try:
            self._run = _lifecycle.start(self.options, self.name or "session", self)
        except BaseException:
            self._close(guard)
            raise
        self._guard = guard
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
        """Decorate ``fn``: each call runs in a fresh session; the last report is ``fn.vram_report``.
        The options were checked once, here: each call builds its session from the same value."""
        name = self.name or check_decorated(fn)
        kind, options = type(self), self.options
        return decorate(fn, lambda: kind(name, options=options))

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
        guard, self._guard = self._guard, None
        options = self.options

        def finish() -> None:
            report = _lifecycle.finish(options, run, exc)
            if report is not None:
                self.report = report  # before any limit raises: the report stays readable
                _lifecycle.conclude(options, report, exc)

        try:
            options = self._close(guard)
        finally:
            # Whatever closing the guard did, the run is measured, released and unregistered.
            if self._gather is None:
                finish()
            else:
                finish_then_gather(finish, self._gather, exc)
