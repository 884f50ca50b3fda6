"""Release order at run time: ``empty_cache()`` called while memory freed later was still held.

While any census runs, ``vramguard.empty_cache`` is listened to through
:mod:`vramguard.core._hooks`, and while a CUDA census runs ``torch.cuda.empty_cache`` is wrapped
(restored when the last one stops; it empties no host cache). Each call
in the session's thread, for the session's device, records its call site and weak references
to every storage then alive on the device (one heap scan per call: about the cost of
``gc.get_objects()``, small beside ``empty_cache`` itself).

At the block's end only the last call matters: storages alive at an earlier call and freed
before a later one were emptied by the later one. Storages alive at the last call and freed
since are memory the call could not return, now back in the cache. On CUDA that figure is
capped by what the device still caches (reserved − allocated); on the host, glibc hands
large blocks back at once, so it is judged at the block's end from the frees alone.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import torch

from vramguard.census._epoch import EPOCH
from vramguard.census._frames import user_site
from vramguard.census._scan import StorageWeakRef, live_storages
from vramguard.core import _hooks
from vramguard.core._records import OrderViolation
from vramguard.probes import is_host, read_allocator

ORDER_MIN_BYTES = 64 * 1024
"""Frees after the call below this are temporaries, not a release in the wrong order."""

_lock = threading.Lock()
_recorders: list[OrderRecorder] = []
_wrapped: Callable[..., Any] | None = None


class OrderRecorder:
    """Records the ``empty_cache`` calls a session's block makes and judges them at its end."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.thread = threading.get_ident()
        self._site: str | None = None
        self._alive: list[tuple[StorageWeakRef, int]] = []

    def start(self) -> None:
        with _lock:
            if not _recorders:
                _hooks.empty_cache_listeners.append(_on_vramguard_empty_cache)
            # torch.cuda.empty_cache() empties no host cache: a host recorder needs only
            # vramguard.empty_cache's listener, and a host session per step does not wrap torch.
            if not is_host(self.device) and _wrapped is None:
                _install()
            _recorders.append(self)

    def stop(self) -> tuple[OrderViolation, ...]:
        """Stop recording and judge the last call; drops every reference it held."""
        with _lock:
            if self in _recorders:
                _recorders.remove(self)
            if _wrapped is not None and all(is_host(r.device) for r in _recorders):
                _uninstall()
            if not _recorders and _on_vramguard_empty_cache in _hooks.empty_cache_listeners:
                _hooks.empty_cache_listeners.remove(_on_vramguard_empty_cache)
        site, alive = self._site, self._alive
        self._site, self._alive = None, []
        if site is None:
            return ()
        freed = sum(nbytes for ref, nbytes in alive if ref.expired())
        if self.device.type == "cuda":
            reading = read_allocator(self.device)
            if reading.reserved_bytes is not None:  # None under cudaMallocAsync: no cache to cap by
                freed = min(freed, max(0, reading.reserved_bytes - reading.allocated_bytes))
        if freed < ORDER_MIN_BYTES:
            return ()
        return (OrderViolation(call_site=site, bytes_left_cached=freed),)

    def _matches(self, device_type: str, index: int | None) -> bool:
        if threading.get_ident() != self.thread or device_type != self.device.type:
            return False
        return index is None or self.device.index is None or index == self.device.index

    def record(self, frame: FrameType | None) -> None:
        self._site = user_site(frame) or "unknown call site"
        # Every storage, old ones included: the maintainer's order empties the cache while the
        # model loaded before the session is still referenced (see census/_epoch.py).
        with EPOCH.thawed():
            self._alive = list(live_storages(self.device).values())


def _notify(device_type: str, index: int | None, frame: FrameType | None) -> None:
    with _lock:
        recorders = [r for r in _recorders if r._matches(device_type, index)]
    for recorder in recorders:
        recorder.record(frame)


def _on_vramguard_empty_cache(device: torch.device, stacklevel: int) -> None:
    _notify(device.type, device.index, sys._getframe(stacklevel))


def _install() -> None:
    """Wrap ``torch.cuda.empty_cache`` (lock held; ``vramguard.empty_cache`` is listened to
    while any recorder runs)."""
    global _wrapped, _made
    original = torch.cuda.empty_cache
    _wrapped = original
    if _made is None or _made[0] is not original:
        _made = (original, _wrap(original))
    torch.cuda.empty_cache = _made[1]


_made: tuple[Callable[..., Any], Callable[..., Any]] | None = None
"""(the original, our wrapper of it): made once, put back at each install (a session per step
installs and removes it at every step; functools.wraps alone cost 2 µs)."""


def _wrap(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def empty_cache(*args: Any, **kwargs: Any) -> Any:
        # torch.cuda.empty_cache() empties every device's cache: any CUDA session matches.
        _notify("cuda", None, sys._getframe(1))
        return original(*args, **kwargs)

    empty_cache.__vramguard_wrapper__ = True  # type: ignore[attr-defined]
    return empty_cache


def _uninstall() -> None:
    """Restore what :func:`_install` changed (lock held). A wrapper someone placed over ours
    is left in place; ours then only forwards."""
    global _wrapped
    if _wrapped is not None and getattr(torch.cuda.empty_cache, "__vramguard_wrapper__", False):
        torch.cuda.empty_cache = _wrapped
    _wrapped = None


def recording() -> bool:
    """True while some census records ``empty_cache`` calls (for tests and diagnostics)."""
    with _lock:
        return bool(_recorders)
