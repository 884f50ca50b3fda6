"""The decorator form shared by :class:`GpuSession` and :class:`MultiDeviceSession`: each call
of the decorated function runs in a fresh session; the last report is ``fn.vram_report``."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from vramguard.core._errors import InvalidArgument

F = TypeVar("F", bound=Callable[..., Any])


class _Session(Protocol):
    report: Any

    def keep(self, obj: Any) -> Any: ...
    def __enter__(self) -> Any: ...
    def __exit__(self, *exc: Any) -> None: ...
    async def __aenter__(self) -> Any: ...
    async def __aexit__(self, *exc: Any) -> None: ...


def check_decorated(fn: object) -> str:
    """``fn``'s session name (its qualified name), after checking it can be decorated."""
    if not callable(fn):
        raise InvalidArgument("fn", fn, "a function to decorate")
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        # The wrapper would return the generator at once and close the session before the body
        # ever ran: nothing would be measured.
        raise InvalidArgument(
            "fn", fn, "a function or coroutine function; for a generator, use `with gpu_session(...)` inside it"
        )
    return str(getattr(fn, "__qualname__", getattr(fn, "__name__", "session")))


def decorate(fn: F, new_session: Callable[[], _Session]) -> F:
    """``fn`` wrapped (sync or async, signature kept) so that each call runs in ``new_session()``;
    its result is kept (an expected survivor, not a leak)."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            session = new_session()
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
        session = new_session()
        try:
            with session:
                result = fn(*args, **kwargs)
                session.keep(result)
                return result
        finally:
            wrapper.vram_report = session.report  # type: ignore[attr-defined]

    wrapper.vram_report = None  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]
