"""Exceptions and warnings raised by vramguard.

The tree::

    VramGuardError
    ├── InvalidArgument (also ValueError)    a bad argument; names it and what is accepted
    ├── ProbeUnavailable                      a memory source cannot be read (no driver, no NVML)
    ├── MissingDependency (also ImportError)  an optional extra is not installed; says what to pip install
    ├── SessionError                          a session used wrongly (entered twice at once)
    ├── LeakError                             leaked bytes above the tolerance; carries the report
    ├── PeakExceeded                          the block's peak above ``max_peak``; carries the report
    └── ReleaseOrderError                     empty_cache() ran before references were dropped (strict)

    Warning
    ├── LeakWarning                           the warning form of LeakError
    └── ReleaseOrderWarning                   the warning form of ReleaseOrderError
"""

from __future__ import annotations

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
        super().__init__(f"invalid {argument}={value!r}; accepted: {accepted}")


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


class LeakWarning(UserWarning):
    """Memory allocated inside a session survived its release."""


class ReleaseOrderWarning(UserWarning):
    """``empty_cache()`` ran before the references it should have freed were dropped."""
