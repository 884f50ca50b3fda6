"""``gpu_session(hard=True)`` and ``gpu_session(isolate=True)``: sessions the resilience package
owns, around the core's :class:`~vramguard.GpuSession` and the same
:class:`~vramguard.SessionOptions` value (the core never imports this package).

- :class:`BudgetedSession` enters the hard budget (:mod:`._budget`) before the run starts and
  leaves it before the run finishes, so the session's own bookkeeping is never counted against
  the block's budget.
- :class:`IsolatedSession` is a decorator only: each call runs in a spawned child process
  (:mod:`._isolate`); a ``with`` block cannot move to another process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from vramguard.core._decorate import check_decorated
from vramguard.core._errors import InvalidArgument
from vramguard.core._options import SessionOptions
from vramguard.core._session import GpuSession

F = TypeVar("F", bound=Callable[..., Any])


class BudgetedSession(GpuSession):
    """A session whose ``max_peak`` is a hard budget: an allocation past it fails inside the
    block (CUDA caps the allocator, the host refuses the op; docs/reliability.md)."""

    def _handles(self, flag: str) -> bool:
        return flag == "hard"

    def _open(self) -> Any:
        from vramguard.resilience._budget import enter_budget

        limit = self.options.max_peak_bytes
        assert limit is not None  # SessionOptions refuses hard=True without max_peak
        return enter_budget(limit, self.options.device)

    def _close(self, guard: Any) -> SessionOptions:
        if guard is None:
            return self.options
        guard.__exit__()
        if guard.host is not None:
            # The host budget refused every allocation past max_peak, counted per storage: the
            # report's resident peak (interpreter pages too) is not judged against it again.
            return replace(self.options, max_peak_bytes=None)
        return self.options


class IsolatedSession(GpuSession):
    """``@gpu_session(isolate=True)``: each call of the decorated function runs in a spawned
    child, in a session with the same options; ``fn.vram_report`` is the child's report."""

    def _handles(self, flag: str) -> bool:
        return flag in ("isolate", "hard")  # a budget goes with the options to the child's session

    def __enter__(self) -> GpuSession:
        accepted = "isolate=True only for a decorated function (a with-block cannot move), or vramguard.isolated"
        raise InvalidArgument("isolate", True, accepted)

    def __call__(self, fn: F) -> F:
        from vramguard.resilience._isolate import isolate_decorated

        name = self.name or check_decorated(fn)
        child = replace(self.options, isolate=False)
        kind = session_type(hard=child.hard, isolate=False)
        return isolate_decorated(fn, str(name), child, kind)  # type: ignore[return-value]


def session_type(*, hard: bool, isolate: bool) -> type[GpuSession]:
    """The session class that carries out ``hard=`` and ``isolate=``."""
    if isolate:
        return IsolatedSession
    return BudgetedSession if hard else GpuSession
