"""``gpu_session(device="all")`` or ``device=[0, 2]``: one session over several devices.

A composite: one :class:`GpuSession` per device, entered in the order given and exited in
reverse, each measuring and releasing its own device; the report is a
:class:`MultiDeviceReport`. The single-device path never comes here.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from vramguard.core._decorate import check_decorated, decorate
from vramguard.core._distributed_exit import check_distributed, gatherer, require_initialized
from vramguard.core._errors import InvalidArgument, SessionError
from vramguard.core._multi_report import MultiDeviceReport
from vramguard.core._records import ReleaseStep, _diff
from vramguard.core._sizes import format_size
from vramguard.core._tensors import storage_bytes
from vramguard.probes import (
    ACCEPTED_DEVICES,
    DeviceLike,
    MemorySnapshot,
    cuda_device_count,
    cuda_initialized,
    malloc_trim,
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

    def __init__(self, name: str | None = None, *, device: MultiDeviceLike = "all", **options: Any) -> None:
        from vramguard.core._session import GpuSession

        self.name = name
        self.devices = resolve_devices(device)
        self._device_arg = device
        self.distributed = options.pop("distributed", False)
        self.group = options.pop("group", None)
        self.gather_timeout = options.pop("gather_timeout", None)
        check_distributed(self.distributed, self.group, self.gather_timeout)
        self._options = options
        # Built once to validate every option now, as a single-device session would.
        self.sessions: tuple[GpuSession, ...] = tuple(GpuSession(name, device=d, **options) for d in self.devices)
        self.report: MultiDeviceReport | None = None
        self.cluster_report: Any = None
        self._gather = _make_gatherer(self) if self.distributed or self.group is not None else None
        self._owned: list[tuple[object, bool]] | None = None
        self._started_s = 0.0

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
        import time

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
        import time

        owned, self._owned = self._owned or [], None
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
        config = {**self._options, "distributed": self.distributed, "group": self.group}
        if self.gather_timeout is not None:
            config["gather_timeout"] = self.gather_timeout
        return decorate(fn, lambda: MultiDeviceSession(name, device=self._device_arg, **config))


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


def _make_gatherer(session: MultiDeviceSession) -> Callable[[BaseException | None], None]:
    return gatherer(session, session.group, session.gather_timeout)


# -- one release for several devices (issue 24, point 7) ---------------------------------------
#
# torch.cuda.empty_cache() empties every device's cache, whatever the current device: the native
# allocator's emptyCache loops over all its per-device allocators (c10/cuda/CUDACachingAllocator.cpp,
# NativeCachingAllocator::emptyCache: `for (auto& da : device_allocator) da->emptyCache();`).
# Released device by device, the first device's release would empty the others' caches before
# they read their exit figures, and they would report 0 reclaimed. So: every device's exit
# reading first, then one drop, one collection per device, a synchronize per device, one empty,
# and every device's final reading.

Reading = Callable[[torch.device], MemorySnapshot]


@dataclass(frozen=True)
class DeviceRelease:
    """One device's part of a release shared by several devices: its readings at the block's end
    (``at_exit``) and after (``after``), and each shared step's figures as this device saw them."""

    device: torch.device
    at_exit: MemorySnapshot
    steps: tuple[ReleaseStep, ...]
    after: MemorySnapshot

    @property
    def reclaimed_bytes(self) -> int | None:
        return _diff(self.at_exit.reserved_bytes, self.after.reserved_bytes)


def release_together(
    devices: Sequence[torch.device],
    actions: Sequence[tuple[str, Callable[[], str]]],
    *,
    read_exit: Reading,
    read: Reading,
    read_final: Reading,
    mark: Callable[[str], None] | None = None,
) -> tuple[DeviceRelease, ...]:
    """Run ``actions`` (name, action returning a detail) once for all ``devices``.

    ``read_exit`` is each device's exit reading, taken for every device before the first action
    (a session's also stops its census there); after each action every device is read again
    with ``read``, so each step's figures are per device; ``read_final`` is the last reading.
    """
    current = {dev: read_exit(dev) for dev in devices}
    at_exit = dict(current)
    steps: dict[torch.device, list[ReleaseStep]] = {dev: [] for dev in devices}
    for name, action in actions:
        if mark is not None:
            mark(f"release:{name}")
        began = time.perf_counter()
        detail = action()
        duration = time.perf_counter() - began
        for dev in devices:
            now = read(dev)
            freed_allocated = _diff(current[dev].allocated_bytes, now.allocated_bytes)
            freed_reserved = _diff(current[dev].reserved_bytes, now.reserved_bytes)
            steps[dev].append(ReleaseStep(name, duration, freed_allocated, freed_reserved, detail))
            current[dev] = now
    return tuple(DeviceRelease(dev, at_exit[dev], tuple(steps[dev]), read_final(dev)) for dev in devices)


def shared_release_actions(
    devices: Sequence[torch.device], drop: Callable[[], str], collects: Sequence[Callable[[], str]]
) -> list[tuple[str, Callable[[], str]]]:
    """The release's steps for several devices: drop once, each device's collection, then on
    CUDA a synchronize per device and one ``empty_cache`` (it empties them all)."""

    def collect() -> str:
        return "; ".join(detail for detail in (c() for c in collects) if detail)

    actions: list[tuple[str, Callable[[], str]]] = [("drop", drop), ("gc", collect)]
    cuda = [dev for dev in devices if dev.type == "cuda"]
    if cuda:
        if not cuda_initialized():
            # Nothing was ever allocated; touching CUDA now would create a context.
            skip = "skipped: CUDA not initialised in this process"
            actions += [("synchronize", lambda: skip), ("empty_cache", lambda: skip)]
        else:

            def synchronize() -> str:
                # synchronize(None) would wait for the current device only (torch/cuda/__init__.py).
                for dev in cuda:
                    torch.cuda.synchronize(dev)
                return ", ".join(str(dev) for dev in cuda)

            def empty() -> str:
                from vramguard.core._release import _raw_empty_cache  # torch's own, not the census's wrapper

                _raw_empty_cache()
                torch.cuda.ipc_collect()  # type: ignore[no-untyped-call]
                return f"once for {', '.join(str(dev) for dev in cuda)}: empty_cache empties every device"

            actions += [("synchronize", synchronize), ("empty_cache", empty)]
    if any(dev.type == "cpu" for dev in devices):
        actions.append(("malloc_trim", lambda: "" if malloc_trim() else "malloc_trim unavailable (not glibc)"))
    return actions
