"""``gpu_session``: the public shortcut that checks its arguments once into a
:class:`~vramguard.SessionOptions` and picks the session for them: the core's
:class:`~vramguard.GpuSession`, a :class:`~vramguard.MultiDeviceSession`, or the resilience
package's budgeted (``hard=True``) and isolated (``isolate=True``) sessions. It sits above the
core and the resilience package, so neither imports the other."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar, overload

import vramguard.report.plot  # noqa: F401  (the records' .plot() draws through the plotter it registers)
from vramguard.core._multi import MultiDeviceSession, is_multi
from vramguard.core._options import LeakPolicy, SessionOptions, options_of
from vramguard.core._session import GpuSession
from vramguard.core._sizes import SizeLike
from vramguard.probes import DeviceLike

__all__ = ["gpu_session"]

F = TypeVar("F", bound=Callable[..., Any])

_session_type: Callable[..., type[GpuSession]] | None = None
"""vramguard.resilience's choice of session class, imported at the first call (an import
statement costs a microsecond at every session)."""


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
def gpu_session(name: str | None = None, *, options: SessionOptions) -> GpuSession: ...


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


def gpu_session(name: Any = None, /, **arguments: Any) -> Any:
    """A measured block: ``with gpu_session("whisper", device="cuda", max_peak="6 GiB") as s:``.

    Also ``async with``, and a decorator bare (``@gpu_session``) or with arguments; each call of
    a decorated function runs in a fresh session built from the options checked once, at
    decoration. The arguments (every one is listed, with its default, in
    docs/sessions.md): ``device`` ("auto", "cpu",
    "cuda", "cuda:N", int, torch.device), ``release`` (run the ordered release at exit),
    ``leaks`` ("ignore", "warn", "raise") above ``leak_tolerance`` (a size), ``max_peak`` (a
    size: the most the block may add at its peak), ``census`` (track tensors created in the
    block to name leaks and their holders), ``strict`` (raise on release-order violations),
    ``sample_every`` (seconds: record a timeline), ``record_history`` (CUDA: torch's memory
    history for the block), ``holder_levels`` / ``holder_width`` / ``holder_leaks`` (the holder
    search's bounds: steps up from a leak, objects per level, leaks walked; a report that
    reached one says so), ``hard`` (with ``max_peak``: an allocation past the budget fails
    inside the block; CUDA caps the allocator, the host refuses the op, docs/reliability.md),
    ``isolate`` (decorator only: each call runs in a spawned child process that returns
    everything it held, see :func:`vramguard.isolated`). ``device="all"`` (every visible GPU;
    the CPU alone on a host) or a list (``[0, 2]``) gives a :class:`MultiDeviceSession`, one
    session per device (docs/distributed.md). ``distributed=True`` (or ``group=`` a process
    group) gathers every rank's report at exit into ``cluster_report``, waiting at most
    ``gather_timeout`` seconds (60) for the other ranks. ``options=`` a
    :class:`~vramguard.SessionOptions` built once instead of the keyword arguments.
    """
    global _session_type
    if _session_type is None:
        from vramguard.resilience._sessions import session_type

        _session_type = session_type
    fn: Any = None
    if callable(name) and not isinstance(name, str):
        fn, name = name, None
    if is_multi(arguments.get("device")):
        # Each device's options are checked by the composite; the flags only pick the class here.
        kind = _session_type(hard=arguments.get("hard") is True, isolate=arguments.get("isolate") is True)
        session: Any = MultiDeviceSession(name, session_type=kind, **arguments)
    else:
        options = arguments.pop("options", None)
        if options is None:
            options = options_of(arguments)
            arguments = {}
        session = _session_type(hard=options.hard, isolate=options.isolate)(name, options=options, **arguments)
    return session if fn is None else session(fn)
