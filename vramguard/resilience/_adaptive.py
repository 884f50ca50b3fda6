"""``adaptive_batch``: run a function at the largest batch size that fits, shrinking on
out-of-memory and growing back after a run of successes.

Unlike accelerate's ``find_executable_batch_size`` it recognises an out-of-memory error by its
type (and a CUDA library's allocation failure, which torch raises as a plain ``RuntimeError``,
by its status name: :mod:`vramguard.resilience._oom`), drops the failed attempt's frames before it
releases (they hold the activations), releases in vramguard's order, remembers the size that
worked per key, and keeps every argument when the function is partially applied.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from vramguard.core._errors import InvalidArgument
from vramguard.core._policy import add_note
from vramguard.core._release import release
from vramguard.core._sizes import format_size
from vramguard.probes import DeviceLike, resolve_device
from vramguard.resilience._oom import drop_frames, is_out_of_memory

T = TypeVar("T")
KeyFunction = Callable[..., Hashable]

LOG = logging.getLogger("vramguard.resilience")
_NO_KEY = object()


@dataclass
class _State:
    """What one key has learned: the size to try next and the successes at it."""

    size: int
    successes: int = 0


class _Sizes:
    """The per-key sizes, shared by every call of one decorated function (and its threads)."""

    def __init__(self, start: int, minimum: int, shrink: float, grow_after: int | None) -> None:
        self.start, self.minimum, self.shrink, self.grow_after = start, minimum, shrink, grow_after
        self._lock = threading.Lock()
        self._states: dict[Hashable, _State] = {}

    def first(self, key: Hashable) -> int:
        with self._lock:
            state = self._states.setdefault(key, _State(self.start))
            grow = self.grow_after
            if grow is not None and state.size < self.start and state.successes >= grow:
                # A run of successes: try one step larger (the inverse of a shrink), never past start.
                state.size = min(self.start, max(state.size + 1, math.ceil(state.size / self.shrink)))
                state.successes = 0
            return state.size

    def smaller(self, size: int) -> int | None:
        """The next size after ``size`` ran out of memory; None below the minimum."""
        nxt = min(size - 1, int(size * self.shrink))
        return nxt if nxt >= self.minimum else None

    def worked(self, key: Hashable, size: int) -> None:
        with self._lock:
            state = self._states.setdefault(key, _State(size))
            if state.size != size:
                state.size, state.successes = size, 0
            state.successes += 1

    def learned(self) -> dict[Hashable, int]:
        with self._lock:
            return {key: state.size for key, state in self._states.items()}

    def forget(self) -> None:
        with self._lock:
            self._states.clear()


def _check(start: object, minimum: object, shrink: object, grow_after: object, key: object) -> None:
    for name, value in (("start", start), ("min", minimum)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidArgument(name, value, "an int >= 1")
    assert isinstance(start, int) and isinstance(minimum, int)
    if minimum > start:
        raise InvalidArgument("min", minimum, f"an int from 1 to start ({start})")
    if isinstance(shrink, bool) or not isinstance(shrink, (int, float)) or not 0 < shrink < 1:
        raise InvalidArgument("shrink", shrink, "a number in (0, 1): the factor a batch size shrinks by")
    if grow_after is not None and (isinstance(grow_after, bool) or not isinstance(grow_after, int) or grow_after < 1):
        raise InvalidArgument("grow_after", grow_after, "None (never grow back) or an int >= 1")
    if key is not None and not callable(key):
        raise InvalidArgument("key", key, "None, or a function of the call's arguments returning a hashable key")


def _most_positional(signature: inspect.Signature | None) -> int | None:
    """How many positional arguments a caller may pass (the batch size left out); None when any
    number may come (``*args``) or the signature is unknown."""
    if signature is None:
        return None
    kinds = [p.kind for p in signature.parameters.values()]
    if inspect.Parameter.VAR_POSITIONAL in kinds:
        return None
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(kind in positional for kind in kinds)


def _names(signature: inspect.Signature | None) -> list[str]:
    return [] if signature is None else list(signature.parameters)


def _signature_without_first(fn: Callable[..., Any]) -> inspect.Signature | None:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature
        return None
    params = list(signature.parameters.values())
    if not params or params[0].kind not in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
        raise InvalidArgument("fn", fn, "a function whose first parameter is the batch size")
    return signature.replace(parameters=params[1:])


@overload
def adaptive_batch(fn: Callable[..., T], /) -> Callable[..., T]: ...


@overload
def adaptive_batch(
    fn: None = None,
    /,
    *,
    start: int = 64,
    min: int = 1,
    shrink: float = 0.5,
    grow_after: int | None = 16,
    key: KeyFunction | None = None,
    device: DeviceLike | None = "auto",
) -> Callable[[Callable[..., T]], Callable[..., T]]: ...


@overload
def adaptive_batch(
    fn: Callable[..., T],
    /,
    *,
    start: int = 64,
    min: int = 1,
    shrink: float = 0.5,
    grow_after: int | None = 16,
    key: KeyFunction | None = None,
    device: DeviceLike | None = "auto",
) -> Callable[..., T]: ...


def adaptive_batch(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    start: int = 64,
    min: int = 1,  # the name for the smallest size, shadowing the builtin here only
    shrink: float = 0.5,
    grow_after: int | None = 16,
    key: KeyFunction | None = None,
    device: DeviceLike | None = "auto",
) -> Any:
    """Decorate ``fn(batch_size, ...)``: callers leave ``batch_size`` out and it is chosen.

    The first call tries ``start``. On an out-of-memory error (``torch.OutOfMemoryError``,
    ``MemoryError``, a hard budget's :class:`~vramguard.BudgetExceeded`, a cuBLAS, cuSOLVER or
    cuDNN allocation failure: :func:`vramguard.resilience.is_out_of_memory`) the failed attempt's
    frames are cleared, memory is released in order (:func:`vramguard.release` on ``device``),
    what was still held is logged (logger ``vramguard.resilience``) and the call is retried at
    ``batch_size * shrink``. Below ``min`` the original error is raised with ``attempts`` (the
    sizes tried) attached and a note. The size that worked is remembered per ``key(*args,
    **kwargs)`` (one size for all calls when None) and grows back one step after ``grow_after``
    successes at it. Sync and async functions; ``fn.batch_sizes()`` shows what was learned,
    ``fn.forget()`` resets it.
    """
    _check(start, min, shrink, grow_after, key)
    dev = resolve_device(device)

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(func):
            raise InvalidArgument("fn", func, "a function taking the batch size first")
        signature = _signature_without_first(func)
        sizes = _Sizes(start, min, shrink, grow_after)
        name = getattr(func, "__qualname__", type(func).__name__)

        most = _most_positional(signature)

        def key_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
            if "batch_size" in kwargs:
                raise InvalidArgument("batch_size", kwargs["batch_size"], "left out: adaptive_batch chooses it")
            if most is not None and len(args) > most:
                # The caller passed the batch size first, as to the undecorated function: say so
                # (as accelerate's guard does), not Python's "takes 3 positional arguments".
                rest = ", ".join(_names(signature))
                accepted = f"left out: adaptive_batch chooses it and passes it first; call {name}({rest})"
                raise InvalidArgument("batch_size", args[0], accepted)
            return _NO_KEY if key is None else key(*args, **kwargs)

        def failed(error: BaseException, size: int, attempts: list[int]) -> int | None:
            drop_frames(error)
            smaller = sizes.smaller(size)
            held = release(device=dev).after
            LOG.warning(
                "%s: out of memory at batch_size=%d (%s); after the release %s held %s allocated, %s reserved; %s",
                name,
                size,
                type(error).__name__,
                held.device,
                format_size(held.allocated_bytes) if held.allocated_bytes is not None else "unknown",
                format_size(held.reserved_bytes) if held.reserved_bytes is not None else "unknown",
                f"retrying at batch_size={smaller}" if smaller is not None else f"min={min} reached",
            )
            if smaller is None:
                error.attempts = tuple(attempts)  # type: ignore[attr-defined]
                tried = ", ".join(str(a) for a in attempts)
                note = f"vramguard adaptive_batch: out of memory at every batch_size tried ({tried}; min={min})"
                add_note(error, note)
            return smaller

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                k = key_of(args, kwargs)
                size: int | None = sizes.first(k)
                attempts: list[int] = []
                while size is not None:
                    attempts.append(size)
                    try:
                        result = await func(size, *args, **kwargs)
                    except Exception as error:
                        if not is_out_of_memory(error):
                            raise
                        size = failed(error, size, attempts)
                        if size is None:
                            raise
                        del error
                        continue
                    sizes.worked(k, size)
                    return result
                raise AssertionError("unreachable")  # pragma: no cover

            wrapper: Any = async_wrapper
        else:

            @functools.wraps(func)
            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                k = key_of(args, kwargs)
                size: int | None = sizes.first(k)
                attempts: list[int] = []
                while size is not None:
                    attempts.append(size)
                    try:
                        result = func(size, *args, **kwargs)
                    except Exception as error:
                        if not is_out_of_memory(error):
                            raise
                        size = failed(error, size, attempts)
                        if size is None:
                            raise
                        del error
                        continue
                    sizes.worked(k, size)
                    return result
                raise AssertionError("unreachable")  # pragma: no cover

            wrapper = sync_wrapper
        if signature is not None:
            wrapper.__signature__ = signature
        wrapper.batch_sizes = sizes.learned
        wrapper.forget = sizes.forget
        return wrapper  # type: ignore[no-any-return]

    if fn is not None:
        return decorate(fn)
    return decorate
