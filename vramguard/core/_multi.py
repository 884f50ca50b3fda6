"""``gpu_session(device="all")`` or ``device=[0, 2]``: one session over several devices.

A composite: one :class:`GpuSession` per device, entered in the order given and exited in
reverse, each measuring and releasing its own device; the report is a
:class:`MultiDeviceReport`. The single-device path never comes here.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from vramguard.core._decorate import check_decorated, decorate
from vramguard.core._distributed_exit import gatherer, require_initialized
from vramguard.core._errors import InvalidArgument, SessionError
from vramguard.core._multi_report import MultiDeviceReport
from vramguard.core._options import SessionOptions, gather_settings
from vramguard.core._sizes import format_size
from vramguard.core._tensors import storage_bytes
from vramguard.probes import (
    ACCEPTED_DEVICES,
    DeviceLike,
    cuda_device_count,
    resolve_device,
)

if TYPE_CHECKING:
    from vramguard.core._session import GpuSession

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
MultiDeviceLike = str | Sequence[DeviceLike]
ACCEPTED_MULTI = f'"all", or a list of devices (each {ACCEPTED_DEVICES})'


def is_multi(device: object) -> bool:
    """Whether ``device`` asks for several devices: ``"all"`` or a list or tuple of devices."""
    if isinstance(device, str):
        return device.strip().lower() == "all"
    return isinstance(device, (list, tuple))


def resolve_devices(device: object, *, argument: str = "device") -> tuple[torch.device, ...]:
    """The devices ``"all"`` or a list names: ``"all"`` is every visible CUDA device, or the CPU
    alone on a host without CUDA; a list is resolved entry by entry, each device once."""
    if isinstance(device, str) and device.strip().lower() == "all":
        # NVML's count, not is_available(): that one calls cuInit, and a later fork() then fails.
        count = cuda_device_count()
        if count > 0:
            return tuple(torch.device("cuda", i) for i in range(count))
        return (torch.device("cpu"),)
    if not isinstance(device, (list, tuple)) or not device:
        raise InvalidArgument(argument, device, ACCEPTED_MULTI)
    resolved = tuple(resolve_device(d, argument=argument) for d in device)
    if len(set(resolved)) != len(resolved):
        raise InvalidArgument(argument, device, f"{ACCEPTED_MULTI}, each device once")
    return resolved


class MultiDeviceSession:
    """A measured, released block on several devices. Create with ``gpu_session(device="all")``.

    Options are those of :func:`gpu_session`; limits (``max_peak``, ``leak_tolerance``) apply to
    each device. ``report`` is a :class:`MultiDeviceReport`; with ``distributed=True`` it is
    gathered across ranks into ``cluster_report`` at exit.
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        device: MultiDeviceLike = "all",
        session_type: type[GpuSession] | None = None,
        **options: Any,
    ) -> None:
        from vramguard.core._session import GpuSession

        self.name = name
        self.devices = resolve_devices(device)
        self._device_arg = device
        self._session_type = session_type or GpuSession
        gather = gather_settings(
            options.pop("distributed", False), options.pop("group", None), options.pop("gather_timeout", None)
        )
        self._gather_settings = gather
        self._options = options
        # Built once to validate every option now, as a single-device session would.
        self.sessions: tuple[GpuSession, ...] = tuple(
            self._session_type(name, options=SessionOptions.from_arguments(device=d, **options)) for d in self.devices
        )
        self.report: MultiDeviceReport | None = None
        self.cluster_report: Any = None
        self._gather = None
        if gather is not None:
            devices = tuple(str(d) for d in self.devices)
            self._gather = gatherer(name, devices, lambda: self.report, self._deliver, gather.group, gather.timeout_s)
        self._owned: list[tuple[object, bool]] | None = None
        self._started_s = 0.0

    def _deliver(self, cluster: Any) -> None:
        self.cluster_report = cluster

    # -- the block's API ------------------------------------------------------------------
    def own(self, obj: T, *, evict: bool = False) -> T:
        """As :meth:`GpuSession.own`; ``evict=True`` frees a module's tensors on every device.

        The references are dropped before any device's release, so no device's release sees
        memory that only the session still held on another."""
        if self._owned is None:
            raise SessionError("own() is only valid inside the session's block")
        if not isinstance(evict, bool):
            raise InvalidArgument("evict", evict, "True or False")
        if evict and not isinstance(obj, torch.nn.Module):
            raise InvalidArgument("evict", evict, f"evict=True only for torch.nn.Module, not {type(obj).__name__}")
        self._owned.append((obj, evict))
        return obj

    def keep(self, obj: T) -> T:
        """As :meth:`GpuSession.keep`, on every device (each counts its own storages)."""
        if self._owned is None:
            raise SessionError("keep() is only valid inside the session's block")
        for session in self.sessions:
            session.keep(obj)
        return obj

    @property
    def active(self) -> bool:
        return self._owned is not None

    # -- context manager ------------------------------------------------------------------
    def __enter__(self) -> MultiDeviceSession:

        if self._owned is not None:
            raise SessionError(f"session {self.name!r} is already active; create one session per block")
        if self._gather is not None:
            require_initialized()
        entered: list[GpuSession] = []
        try:
            for session in self.sessions:
                session.__enter__()
                entered.append(session)
        except BaseException as error:
            for session in reversed(entered):
                session.__exit__(type(error), error, error.__traceback__)
            raise
        self._owned = []
        self._started_s = time.monotonic()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._finish(exc)

    async def __aenter__(self) -> MultiDeviceSession:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._finish(exc)

    def _finish(self, exc: BaseException | None) -> None:

        owned, self._owned = self._owned or [], None
        # torch.cuda.empty_cache() empties every device's cache, whatever the current device (the
        # native allocator's emptyCache loops over its per-device allocators:
        # c10/cuda/CUDACachingAllocator.cpp, NativeCachingAllocator::emptyCache). Released device
        # by device, the first release would empty the others' caches before they read their exit
        # figures, and they would report nothing reclaimed: every device reads its exit first.
        # What the session owned is dropped here for all of them, so each device's release
        # empties its cache as an owning session's does.
        for session in self.sessions:
            session.hand_over_exit(owns=bool(owned))
        evicted, refs = _drop_owned(owned, self.devices)
        del owned
        failures: list[BaseException] = []
        for session in reversed(self.sessions):
            try:
                session.__exit__(None if exc is None else type(exc), exc, None)
            except BaseException as failure:  # a device's limit: the other devices still release
                failures.append(failure)
        reports = tuple(s.report for s in self.sessions if s.report is not None)
        alive = [kind for kind, ref in refs if ref() is not None]
        notes = tuple(f"owned {kind} still alive after the release: something else holds it" for kind in alive)
        duration = time.monotonic() - self._started_s
        name = self.name or "session"
        raised = None if exc is None else type(exc).__name__
        self.report = (
            MultiDeviceReport(name, reports, duration, raised, evicted=evicted, notes=notes)
            if len(reports) == len(self.sessions)
            else None
        )
        pending = exc or (failures[0] if failures else None)
        if self._gather is not None:
            self._gather(pending)
        if failures and exc is None:
            raise failures[0]

    # -- decorator --------------------------------------------------------------------------
    def __call__(self, fn: F) -> F:
        """Decorate ``fn``: each call runs in a fresh session; the last report is ``fn.vram_report``."""
        name = self.name or check_decorated(fn)
        config = dict(self._options)
        gather = self._gather_settings
        if gather is not None:
            config.update(distributed=True, group=gather.group, gather_timeout=gather.timeout_s)
        kind = self._session_type
        return decorate(fn, lambda: MultiDeviceSession(name, device=self._device_arg, session_type=kind, **config))


def _drop_owned(
    owned: list[tuple[object, bool]], devices: tuple[torch.device, ...]
) -> tuple[tuple[str, ...], list[tuple[str, weakref.ref[Any]]]]:
    """Evict the owned modules asked for and drop the session's references, before any device
    releases; returns what was evicted and weak references to check survival afterwards."""
    evicted: list[str] = []
    refs: list[tuple[str, weakref.ref[Any]]] = []
    for obj, evict in owned:
        if evict:
            assert isinstance(obj, torch.nn.Module)
            nbytes = sum(storage_bytes([obj], d) for d in devices)
            obj.to(device="meta")
            moved = f"{format_size(nbytes)} of parameters and buffers moved to the meta device"
            evicted.append(f"{type(obj).__name__}: {moved}")
        try:
            refs.append((type(obj).__name__, weakref.ref(obj)))
        except TypeError:
            pass  # not weak-referenceable: cannot be checked afterwards
    owned.clear()
    return tuple(evicted), refs
