"""``vramguard.mark(name)``: a point in a program where ``vramguard explain --at name`` looks.

Without the command armed for that name, a mark costs a dict lookup and does nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from vramguard.core._errors import InvalidArgument

_lock = threading.Lock()
_armed: dict[str, Callable[[], None]] = {}


def mark(name: str) -> None:
    """Name this point of the program: ``vramguard explain script.py --at NAME`` explains the
    process here, the first time the program passes it. Does nothing otherwise."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgument("name", name, "a non-empty str")
    with _lock:
        callback = _armed.pop(name, None)
    if callback is not None:
        callback()


def arm(name: str, callback: Callable[[], None]) -> None:
    """Call ``callback`` the first time the program calls ``mark(name)``."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgument("--at", name, "a non-empty marker name")
    with _lock:
        _armed[name] = callback


def disarm(name: str) -> bool:
    """Forget ``name``; True when it was still armed (the program never reached it)."""
    with _lock:
        return _armed.pop(name, None) is not None
