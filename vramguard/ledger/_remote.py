"""Ask another process for its ledger: check that it catches the signal, send it, wait for the file.

The default action of SIGUSR1/SIGUSR2 ends a process, so the signal is sent only when
``/proc/PID/status`` shows it caught (its ``SigCgt`` mask). Where the process set
``VRAMGUARD_EXPLAIN_SIGNAL`` at its start, its signal and path come from ``/proc/PID/environ``.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vramguard.core._errors import InvalidArgument, LedgerNotWritten
from vramguard.ledger._signal import ENVIRONMENT, ERROR_FORMAT, default_path, files, parse_environment, parse_signal

_POLL_S = 0.02


@dataclass(frozen=True)
class Request:
    """Where a process writes its ledger and the signal that asks for it."""

    pid: int
    signum: signal.Signals
    json_path: str
    text_path: str


def _status(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as file:
            return file.read()
    except FileNotFoundError as error:
        raise InvalidArgument("--pid", pid, f"the id of a running process (no process {pid})") from error
    except OSError as error:
        raise InvalidArgument("--pid", pid, f"a process whose /proc/{pid}/status is readable ({error})") from error


def catches(status: str, signum: int) -> bool:
    """Whether the ``SigCgt`` mask of a ``/proc/PID/status`` text has ``signum``'s bit."""
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split(":", 1)[1].strip(), 16) >> (signum - 1) & 1)
    return False


def _environ(pid: int) -> dict[str, str]:
    """The process's environment at its start; empty where it cannot be read (another user)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as file:
            raw = file.read()
    except OSError:
        return {}
    pairs = (item.decode("utf-8", "replace").partition("=") for item in raw.split(b"\0") if item)
    return {key: value for key, _, value in pairs}


def request_for(pid: int, signum: str | None, path: str | None, environ: Mapping[str, str] | None = None) -> Request:
    """The signal and files for ``pid``: the options given, else what its ``VRAMGUARD_EXPLAIN_SIGNAL``
    says, else SIGUSR2 and the default path. Refuses a process that does not catch the signal."""
    if pid <= 0:
        raise InvalidArgument("--pid", pid, "a process id (a positive integer)")
    status = _status(pid)
    env = _environ(pid) if environ is None else environ
    chosen, configured = (signal.SIGUSR2, None)
    if env.get(ENVIRONMENT, "").strip():
        try:
            chosen, configured = parse_environment(env[ENVIRONMENT])
        except InvalidArgument:
            pass  # the process refused it at import too; the options decide
    if signum is not None:
        chosen = parse_signal(signum, "--signal")
    template = path or configured or default_path(env or None)
    if not catches(status, chosen):
        raise InvalidArgument(
            "--pid",
            pid,
            f"a process with vramguard's handler (process {pid} does not catch {chosen.name}, which would end it; "
            f"it must call vramguard.install_explain_signal() or start with {ENVIRONMENT}=USR2)",
        )
    json_path, text_path = files(template, pid)
    return Request(pid, chosen, json_path, text_path)


def _identity(path: str) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_ino, status.st_mtime_ns


def ask(request: Request, timeout_s: float) -> dict[str, Any]:
    """Send the signal and return the ledger's dict once a new ``.txt`` appears (written after
    the ``.json``, each renamed into place): :class:`LedgerNotWritten` after ``timeout_s``."""
    if not timeout_s > 0:
        raise InvalidArgument("--timeout", timeout_s, "a number of seconds above 0")
    before = _identity(request.text_path)
    try:
        os.kill(request.pid, request.signum)
    except ProcessLookupError as error:
        raise InvalidArgument(
            "--pid", request.pid, f"the id of a running process (process {request.pid} ended)"
        ) from error
    except PermissionError as error:
        raise InvalidArgument("--pid", request.pid, "a process this user may signal") from error
    deadline = time.monotonic() + timeout_s
    while _identity(request.text_path) in (before, None):
        if time.monotonic() >= deadline:
            raise LedgerNotWritten(
                f"process {request.pid} caught {request.signum.name} but wrote no ledger to {request.text_path} "
                f"within {timeout_s:g} s (its handler is not vramguard's, it writes elsewhere (--path), or it is busy "
                "in native code: try a longer --timeout)"
            )
        time.sleep(_POLL_S)  # polling a file another process renames into place; not a measurement
    with open(request.json_path, encoding="utf-8") as file:
        data: dict[str, Any] = json.load(file)
    if data.get("format") == ERROR_FORMAT:
        raise LedgerNotWritten(str(data.get("error")))
    return data
