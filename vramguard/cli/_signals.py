"""Ctrl-C and SIGTERM end a subcommand the same way: what was finished is kept (the report
printed, the files written), one line says what stopped it, and the exit code is the shell's
(128 + the signal: 130 for Ctrl-C, 143 for SIGTERM).

SIGTERM is what ``timeout``, ``kill`` and job schedulers send; Python's default for it ends the
process at once, with nothing printed and nothing written. Inside :func:`terminate_as_interrupt`
it raises :class:`Terminated`, a ``KeyboardInterrupt``, so one ``except KeyboardInterrupt``
handles both.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (raised where the main thread was, as Ctrl-C raises KeyboardInterrupt)."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Inside the block, SIGTERM raises :class:`Terminated`; the previous handler comes back at
    its end. Only the main thread can set a handler: elsewhere (a CLI called from a worker
    thread) the block runs with the handler as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        # None: a handler set outside Python, which cannot be put back from here.
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def interrupted_signal(interrupt: BaseException) -> signal.Signals:
    """The signal behind ``interrupt``: SIGTERM for :class:`Terminated`, else SIGINT (Ctrl-C)."""
    return signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT


def exit_code(interrupt: BaseException) -> int:
    """The shell's exit code for a process ended by ``interrupt``'s signal: 128 + its number."""
    return 128 + int(interrupted_signal(interrupt))


def describe(interrupt: BaseException) -> str:
    """``"Ctrl-C"`` or ``"SIGTERM"``, for the one line saying what stopped the command."""
    return "SIGTERM" if isinstance(interrupt, Terminated) else "Ctrl-C"


def child_interrupt(returncode: int) -> KeyboardInterrupt | None:
    """The interrupt a child process's exit code shows (killed by, or exited for, SIGINT or
    SIGTERM), or None: a child ended by the signal that reached its parent is not a failure."""
    if returncode in (-signal.SIGTERM, 128 + signal.SIGTERM):
        return Terminated()
    if returncode in (-signal.SIGINT, 128 + signal.SIGINT):
        return KeyboardInterrupt()
    return None
