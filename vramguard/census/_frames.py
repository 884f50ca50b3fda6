"""Frames: the user's call site, readable locations, and reading a frame's locals safely.

On Python < 3.13, ``frame.f_locals`` of a function frame copies the fast locals into a
snapshot dict that the frame keeps; that copy would keep a local alive after the user deletes
it. :func:`frame_locals` therefore empties the snapshot after reading it, unless someone else
holds it: the snapshot is the very dict ``locals()`` returns, so user code that kept
``ctx = locals()`` would see it emptied (it then keeps its locals alive by its own choice).
Emptying an unshared snapshot is safe: the next ``locals()`` call rebuilds it, and the only
writer back into the fast locals (the trace trampoline) rebuilds it first. From 3.13 on,
``f_locals`` is a view and nothing is copied.
"""

from __future__ import annotations

import asyncio
import os
import sys
import sysconfig
from types import FrameType

import torch

_CO_OPTIMIZED = 0x0001
_SNAPSHOTS = sys.version_info < (3, 13)
# References to an unshared snapshot while frame_locals reads it: the frame's, the local
# ``namespace`` and sys.getrefcount's argument. Any more and someone else holds it.
_UNSHARED_REFS = 3


CENSUS_DIR = os.path.join(os.path.dirname(os.path.realpath(__file__)), "")
_VRAMGUARD_DIR = os.path.dirname(os.path.dirname(CENSUS_DIR))


def _library_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    dirs = {paths.get(k, "") for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    dirs |= {os.path.dirname(torch.__file__), _VRAMGUARD_DIR}
    return tuple(sorted(os.path.join(os.path.realpath(d), "") for d in dirs if d))


_LIBRARY_DIRS = _library_dirs()
_is_library_cache: dict[str, bool] = {}


def is_library(filename: str) -> bool:
    """True for code in the standard library, installed packages, torch or vramguard."""
    known = _is_library_cache.get(filename)
    if known is None:
        if filename.startswith("<"):
            known = filename.startswith("<frozen")
        else:
            real = os.path.realpath(filename)
            known = real.startswith(_LIBRARY_DIRS)
        _is_library_cache[filename] = known
    return known


_INTERNAL_DIRS = (CENSUS_DIR, os.path.join(_VRAMGUARD_DIR, "core", ""))
_INTERNAL_FILES = (os.path.join(_VRAMGUARD_DIR, "pytest_plugin.py"),)
_is_internal_cache: dict[str, bool] = {}


def is_census_frame(frame: FrameType) -> bool:
    """Frames of vramguard's own machinery (the census, the core, the pytest plugin), which
    hold what they inspect and release: never a holder. The ASR consumer's frames are user code."""
    filename = frame.f_code.co_filename
    known = _is_internal_cache.get(filename)
    if known is None:
        real = os.path.realpath(filename)
        known = _is_internal_cache[filename] = real.startswith(_INTERNAL_DIRS) or real in _INTERNAL_FILES
    return known


def short_path(filename: str) -> str:
    """A path relative to the working directory when inside it, else the file's name."""
    try:
        rel = os.path.relpath(filename)
    except ValueError:  # another drive on Windows
        return os.path.basename(filename)
    return os.path.basename(filename) if rel.startswith("..") else rel


def location(frame: FrameType, line: int | None = None) -> str:
    """``app.py:41 in infer``."""
    code = frame.f_code
    lineno = frame.f_lineno if line is None else line
    return f"{short_path(code.co_filename)}:{lineno} in {getattr(code, 'co_qualname', code.co_name)}"


def function_at(frame: FrameType, line: int | None = None) -> str:
    """``infer() at app.py:41``."""
    code = frame.f_code
    lineno = frame.f_lineno if line is None else line
    return f"{getattr(code, 'co_qualname', code.co_name)}() at {short_path(code.co_filename)}:{lineno}"


def user_site(frame: FrameType | None) -> str | None:
    """Where user code made the call that reached ``frame``: the innermost frame outside the
    libraries, and the library function it went through (``app.py:12 in main (via
    clear_device_cache)``)."""
    first = frame
    while frame is not None and is_library(frame.f_code.co_filename):
        frame = frame.f_back
    if frame is None:
        return None if first is None else location(first)
    site = location(frame)
    if first is not None and first is not frame:
        site += f" (via {getattr(first.f_code, 'co_qualname', first.f_code.co_name)})"
    return site


def frame_locals(frame: FrameType) -> list[tuple[str, object]]:
    """The (name, value) pairs of a frame's locals, leaving no copy behind (see module doc)."""
    try:
        namespace = frame.f_locals
        # Counted before the items are listed: they may hold the dict itself (``ctx = locals()``).
        unshared = sys.getrefcount(namespace) <= _UNSHARED_REFS
        items = list(namespace.items())
    except Exception:
        return []
    if _SNAPSHOTS and unshared and frame.f_code.co_flags & _CO_OPTIMIZED and isinstance(namespace, dict):
        namespace.clear()
    return items


def is_optimized(frame: FrameType) -> bool:
    """A function frame (its locals are not a module's or a class body's namespace)."""
    return bool(frame.f_code.co_flags & _CO_OPTIMIZED)


def other_task_frames() -> list[object]:
    """The suspended coroutines of this thread's event loop, except the current task's (the
    exiting block's own), and their frames: each task's chain of awaits, outermost first. (A
    coroutine refers to its frame's locals directly, so it is a holder as much as its frame.)"""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return []
    current = asyncio.current_task(loop)
    found: list[object] = []
    for task in list(asyncio.all_tasks(loop)):
        if task is current:
            continue
        coro: object = task.get_coro()
        for _ in range(256):  # an await chain is short; the bound only guards against a loop
            if coro is None:
                break
            found.append(coro)
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if isinstance(frame, FrameType):
                found.append(frame)
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return found
