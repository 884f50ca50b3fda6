"""Exceptions and warnings raised by vramguard.

The tree::

    VramGuardError
    ├── InvalidArgument (also ValueError)    a bad argument; names it and what is accepted
    ├── ProbeUnavailable                      a memory source cannot be read (no driver, no NVML)
    ├── MissingDependency (also ImportError)  an optional extra is not installed; says what to pip install
    ├── ReportFormatError (also ValueError)   a report's JSON is malformed; names the key and what is accepted
    ├── SessionError                          a session used wrongly (entered twice at once)
    ├── LeakError                             leaked bytes above the tolerance; carries the report
    ├── PeakExceeded                          the block's peak above ``max_peak``; carries the report
    ├── ReleaseOrderError                     empty_cache() ran before references were dropped (strict)
    ├── BudgetExceeded (also MemoryError)     a hard budget refused a host allocation (gpu_session(hard=True))
    ├── ClusterError                          a distributed session's gather: ranks missing or failed; names them
    ├── ParkError                             park/wake refused: storages held elsewhere (names holders), parked twice
    ├── LedgerNotWritten                      explain --pid: the process caught the signal but wrote no ledger in time
    └── IsolationError                        a function run in a child process (isolated) did not come back
        ├── ChildCrashed                      the child was killed or crashed; names the signal or exit status
        └── NotPicklable                      an argument, result or exception could not cross the process boundary

    Warning
    ├── LeakWarning                           the warning form of LeakError
    └── ReleaseOrderWarning                   the warning form of ReleaseOrderError
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any


class VramGuardError(Exception):
    """Base of every error vramguard raises."""


class InvalidArgument(VramGuardError, ValueError):
    """An argument has a value vramguard does not accept.

    The message names the argument, the value received and the accepted forms.
    """

    def __init__(self, argument: str, value: object, accepted: str | Iterable[str]) -> None:
        if not isinstance(accepted, str):
            accepted = ", ".join(accepted)
        self.argument = argument
        self.value = value
        self.accepted = accepted
        super().__init__(f"invalid {argument}={_value_repr(value)}; accepted: {accepted}")


class ProbeUnavailable(VramGuardError):
    """A memory source cannot be read here; ``reason`` says why."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source} unavailable: {reason}")


class MissingDependency(VramGuardError, ImportError):
    """An optional dependency is missing; the message gives the exact install command.

    ``extra`` is the vramguard extra that installs ``module``; None when no extra lists it,
    and the command is then ``pip install <module>``.
    """

    def __init__(self, module: str, extra: str | None, feature: str) -> None:
        self.module = module
        self.extra = extra
        command = f"pip install {module}" if extra is None else f"pip install 'vramguard[{extra}]'"
        super().__init__(f"{feature} needs the '{module}' package: {command}")


class ReportFormatError(VramGuardError, ValueError):
    """A report's JSON (a file, or a dict given to ``from_dict``) has a missing or malformed key.

    ``key`` is the key's path in the document (``"before.allocated_bytes"``, ``"leaks[2].nbytes"``),
    ``value`` what was found there (``None`` when missing) and ``accepted`` what is accepted. The
    message is one line.
    """

    def __init__(self, key: str, value: object, accepted: str, *, missing: bool = False) -> None:
        self.key = key
        self.value = value
        self.accepted = accepted
        self.missing = missing
        found = "missing" if missing else f"{_short_repr(value)}"
        super().__init__(f"malformed report: key {key!r} is {found}; accepted: {accepted}")


def _value_repr(value: object) -> str:
    """``repr(value)``, except for what cannot or should not be printed whole: an int of more than
    256 bits (``repr`` refuses past 4,300 digits) gives its size, a failing ``repr`` its type, a
    repr over 200 characters its start."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        return f"<an int of {value.bit_length()} bits>"
    try:
        shown = repr(value)
    except Exception:  # a user's object whose __repr__ raises must not replace the real error
        return f"<{type(value).__name__} object>"
    return shown if len(shown) <= 200 else f"{shown[:160]}...<{len(shown)} characters>"


def _short_repr(value: object) -> str:
    """A one-line repr of at most 80 characters (see :func:`_value_repr`)."""
    shown = " ".join(_value_repr(value).split())
    return shown if len(shown) <= 80 else shown[:77] + "..."


class SessionError(VramGuardError):
    """A session object was used in a way it does not support."""


class _ReportError(VramGuardError):
    def __init__(self, message: str, report: Any) -> None:
        super().__init__(message)
        self.report = report


class LeakError(_ReportError):
    """Memory allocated inside a session survived its release; ``report`` says what and where."""


class PeakExceeded(_ReportError):
    """A session's peak went above its ``max_peak``; ``report`` has the figures."""


class ReleaseOrderError(_ReportError):
    """``empty_cache()`` ran while memory freed later was still referenced (strict mode)."""


class BudgetExceeded(VramGuardError, MemoryError):
    """A host allocation inside ``gpu_session(max_peak=..., hard=True)`` would have taken the
    block past its budget; the allocation was refused. A ``MemoryError``, so out-of-memory
    handlers (:func:`vramguard.adaptive_batch`) recognise it by type."""

    def __init__(self, message: str, *, budget_bytes: int, requested_bytes: int, in_use_bytes: int) -> None:
        super().__init__(message)
        self.budget_bytes = budget_bytes
        self.requested_bytes = requested_bytes
        self.in_use_bytes = in_use_bytes

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only fields: the default reduce (type, args) could not rebuild it in a parent process.
        fields = {"budget_bytes": self.budget_bytes, "requested_bytes": self.requested_bytes}
        return (functools.partial(type(self), str(self), in_use_bytes=self.in_use_bytes, **fields), (), self.__dict__)


class IsolationError(VramGuardError):
    """A function run in a child process (:func:`vramguard.isolated`) did not come back."""


class ChildCrashed(IsolationError):
    """The child process died before answering: ``signal_name`` (``"SIGKILL"``) when a signal
    killed it, else ``exitcode`` is its exit status."""

    def __init__(self, message: str, *, exitcode: int | None, signal_name: str | None) -> None:
        super().__init__(message)
        self.exitcode = exitcode
        self.signal_name = signal_name

    def __reduce__(self) -> tuple[Any, ...]:
        rebuild = functools.partial(type(self), str(self), exitcode=self.exitcode, signal_name=self.signal_name)
        return (rebuild, (), self.__dict__)


class NotPicklable(IsolationError):
    """An argument, the result or the exception of an isolated call could not be pickled
    across the process boundary; ``what`` says which."""

    def __init__(self, what: str, detail: str) -> None:
        super().__init__(f"the {what} of the isolated call cannot be pickled: {detail}")
        self.what = what
        self.detail = detail

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.what, self.detail), self.__dict__)


class ClusterError(_ReportError):
    """A distributed session's gather could not complete: ``missing_ranks`` did not reach it
    within ``timeout_s`` (they raised before the session's exit, hung or died), or had no report.
    ``report`` is this rank's own report (None if it had none)."""

    def __init__(
        self,
        name: str,
        missing_ranks: tuple[int, ...],
        timeout_s: float,
        report: Any,
        *,
        reason: str | None = None,
    ) -> None:
        ranks = ", ".join(str(r) for r in missing_ranks)
        word = "rank" if len(missing_ranks) == 1 else "ranks"
        why = reason or (
            f"did not reach the end of session {name!r} within {timeout_s:g} s "
            "(it raised before the session's exit, hung or died)"
        )
        super().__init__(f"{word} {ranks} {why}", report)
        self.name = name
        self.missing_ranks = missing_ranks
        self.timeout_s = timeout_s
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        rebuild = functools.partial(type(self), reason=self.reason)
        return (rebuild, (self.name, self.missing_ranks, self.timeout_s, self.report), self.__dict__)


class LedgerNotWritten(VramGuardError):
    """``vramguard explain --pid``: the process caught the signal but no ledger came within the
    timeout, or it wrote an error instead."""


class ParkError(VramGuardError):
    """:func:`vramguard.park` or :func:`vramguard.wake` refused, changing nothing: another object
    still holds the storages (``holders`` names who), the object is already parked, or the
    parked object was already woken."""

    def __init__(self, message: str, *, holders: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.holders = holders

    def __reduce__(self) -> tuple[Any, ...]:
        return (functools.partial(type(self), str(self), holders=self.holders), (), self.__dict__)


class LeakWarning(UserWarning):
    """Memory allocated inside a session survived its release."""


class ReleaseOrderWarning(UserWarning):
    """``empty_cache()`` ran before the references it should have freed were dropped."""
