"""``vramguard.install_explain_signal(signal.SIGUSR2)``: a running process writes its ledger when
it gets a signal, and keeps running.

The handler writes ``<path>.json`` then ``<path>.txt`` (each a temporary file renamed over the
old one, so a reader never sees half a ledger); ``{pid}`` in the path is the process's id when
the signal comes, so the workers a server forks after installing write a file each.
``vramguard explain --pid PID`` sends the signal and waits for the ``.txt`` to change.

The ledger is taken in the handler, in the main thread between two bytecodes: the interrupted
frames are this thread's, so a tensor a local holds is named by its local. Two cases run it in a
thread instead, which waits for the main thread's locks rather than deadlocking on them: a
signal that interrupts vramguard's own code (which may hold a lock explain needs), and a signal
that comes while a ledger is being written (counted, then one more ledger is written after it).

This module imports only the standard library: ``VRAMGUARD_EXPLAIN_SIGNAL`` installs the handler
at ``import vramguard``, which must stay cheap; torch and the ledger load when the signal comes.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import threading
import warnings
from collections.abc import Mapping
from types import FrameType
from typing import Any

from vramguard.core._errors import InvalidArgument

ENVIRONMENT = "VRAMGUARD_EXPLAIN_SIGNAL"
"""``SIGNAL[:PATH]``, e.g. ``USR2`` or ``USR2:/var/tmp/ledger-{pid}``: installs the handler at import."""

DEFAULT_NAME = "vramguard-ledger-{pid}"
ERROR_FORMAT = "vramguard-ledger-error/1"
_VRAMGUARD_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__file__))), "")
# SIGKILL and SIGSTOP cannot be caught; SIGINT and SIGTERM already mean "stop" to servers.
_REFUSED = {"SIGKILL", "SIGSTOP", "SIGINT", "SIGTERM"}


def default_path(environ: Mapping[str, str] | None = None) -> str:
    """``<temp dir>/vramguard-ledger-{pid}``, the temp dir read from ``environ`` as
    :func:`tempfile.gettempdir` reads it (so the CLI finds another process's from its environment)."""
    env = os.environ if environ is None else environ
    folder = next((env[k] for k in ("TMPDIR", "TEMP", "TMP") if env.get(k)), None)
    return os.path.join(folder or tempfile.gettempdir(), DEFAULT_NAME)


def parse_signal(value: object, argument: str = "signum") -> signal.Signals:
    """A catchable signal from a number, a ``signal.Signals``, ``"USR2"`` or ``"SIGUSR2"``."""
    accepted = 'a catchable signal other than INT and TERM, such as signal.SIGUSR2 or "USR2"'
    try:
        if isinstance(value, str):
            name = value.strip().upper()
            found = signal.Signals[name if name.startswith("SIG") else f"SIG{name}"]
        elif isinstance(value, int) and not isinstance(value, bool):
            found = signal.Signals(value)
        else:
            raise InvalidArgument(argument, value, accepted)
    except (KeyError, ValueError) as error:
        raise InvalidArgument(argument, value, accepted) from error
    if found.name in _REFUSED:
        raise InvalidArgument(argument, value, accepted)
    return found


def parse_environment(value: str) -> tuple[signal.Signals, str | None]:
    """``SIGNAL[:PATH]`` -> (the signal, the path or None for the default)."""
    name, _, path = value.partition(":")
    try:
        return parse_signal(name, ENVIRONMENT), path or None
    except InvalidArgument as error:
        raise InvalidArgument(ENVIRONMENT, value, 'SIGNAL[:PATH], e.g. "USR2" or "USR2:/tmp/ledger-{pid}"') from error


def files(path: str, pid: int) -> tuple[str, str]:
    """The JSON and the text file a process with ``pid`` writes for the path template ``path``."""
    stem = path.replace("{pid}", str(pid))
    return f"{stem}.json", f"{stem}.txt"


class _Dumper:
    """The installed handler's state: where to write, and whether a ledger is being written."""

    def __init__(self, path: str, device: str | None) -> None:
        self.path = path
        self.device = device
        # Re-entrant: a second signal can run this handler inside the first, in the same thread.
        self.lock = threading.RLock()
        self.busy = False
        self.pending = 0
        self.written = 0

    def handle(self, signum: int, frame: FrameType | None) -> None:
        inside = _inside_vramguard(frame)
        del frame  # the interrupted frame is a live frame already: this one must hold nothing
        with self.lock:
            if self.busy:
                self.pending += 1
                return
            self.busy = True
        if inside:
            threading.Thread(target=self.run, name="vramguard-explain", daemon=True).start()
        else:
            self.run()

    def run(self) -> None:
        while True:
            try:
                self.write_once()
            finally:
                with self.lock:
                    again = self.pending > 0
                    self.pending = 0
                    self.busy = again
            if not again:
                return

    def write_once(self) -> None:
        json_path, text_path = files(self.path, os.getpid())
        try:
            data, text = _ledger(self.device)
        except Exception as error:  # the interrupted program must never see an error of ours
            message = f"vramguard explain failed in process {os.getpid()}: {type(error).__name__}: {error}"
            data, text = {"format": ERROR_FORMAT, "error": message}, message + "\n"
        try:
            _replace(json_path, json.dumps(data, indent=2))
            _replace(text_path, text)
            self.written += 1
        except OSError as error:
            print(f"vramguard: could not write the ledger to {text_path}: {error}", file=sys.stderr)


def _ledger(device: str | None) -> tuple[dict[str, Any], str]:
    # Imported here, not at install: installing stays torch-free (see the module's docstring).
    from vramguard.ledger._explain import explain
    from vramguard.report.ledger_text import ledger_text

    ledger = explain(device)
    return ledger.to_dict(), ledger_text(ledger)


def _replace(path: str, text: str) -> None:
    """Write ``path`` as a whole: a temporary file beside it, renamed over it."""
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=".vramguard-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def _inside_vramguard(frame: FrameType | None) -> bool:
    """True when the interrupted stack runs vramguard's code (a lock of ours may be held)."""
    while frame is not None:
        if os.path.realpath(frame.f_code.co_filename).startswith(_VRAMGUARD_DIR):
            return True
        frame = frame.f_back
    return False


_installed: dict[int, _Dumper] = {}


def install_explain_signal(
    signum: int | str = signal.SIGUSR2, path: str | os.PathLike[str] | None = None, *, device: str | None = None
) -> str:
    """Write this process's ledger (:func:`vramguard.explain` of ``device``) to ``<path>.json``
    and ``<path>.txt`` each time it gets ``signum``, and keep running. ``path`` may contain
    ``{pid}`` (default: ``<temp dir>/vramguard-ledger-{pid}``). Call it from the main thread
    (Python runs signal handlers there). Returns the path template; ``vramguard explain --pid
    PID`` sends the signal and prints the ledger."""
    chosen = parse_signal(signum)
    if path is None:
        template = default_path()
    else:
        template = os.fspath(path)
        if not isinstance(template, str) or not template or template.endswith(os.sep):
            raise InvalidArgument("path", path, "a file path without extension, e.g. '/tmp/ledger-{pid}'")
    folder = os.path.dirname(os.path.abspath(template.replace("{pid}", "0")))
    if not os.path.isdir(folder):
        raise InvalidArgument("path", path, f"a path in an existing folder ({folder} does not exist)")
    if threading.current_thread() is not threading.main_thread():
        raise InvalidArgument("install_explain_signal", "a call from another thread", "a call from the main thread")
    dumper = _Dumper(template, device)
    signal.signal(chosen, dumper.handle)
    _installed[int(chosen)] = dumper
    return template


def install_from_environment(environ: Mapping[str, str] | None = None) -> str | None:
    """Install the handler ``VRAMGUARD_EXPLAIN_SIGNAL`` asks for (at ``import vramguard``).
    A bad value raises :class:`InvalidArgument`; an import outside the main thread warns."""
    value = (os.environ if environ is None else environ).get(ENVIRONMENT, "")
    if not value.strip():
        return None
    chosen, path = parse_environment(value)
    if threading.current_thread() is not threading.main_thread():
        warnings.warn(
            f"{ENVIRONMENT} is set but vramguard was first imported outside the main thread: no signal handler "
            "installed (call vramguard.install_explain_signal() from the main thread)",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    return install_explain_signal(chosen, path)
