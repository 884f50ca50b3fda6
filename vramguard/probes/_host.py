"""The process heap: glibc's mallinfo2, resident memory from /proc, and malloc_trim.

What the figures mean (see docs/memory-model.md and shared facts measured here):
- ``mallinfo2().uordblks + hblkhd`` is what malloc has handed out and not had back: torch's CPU
  tensors live there. Free chunks (``fordblks``) stay counted even after ``malloc_trim`` gave their
  pages back, so a trim is measured through resident memory, never through ``fordblks``.
- Resident anonymous memory (``/proc/self/statm`` resident − shared pages, the kernel's
  RssAnon + RssShmem counters) is what the process holds from the OS that no file backs; it is
  O(1) to read. It includes Python's pymalloc arenas and thread stacks, which malloc does not see.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from dataclasses import dataclass

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
            "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]


@dataclass(frozen=True)
class HeapReading:
    """One reading of the host heap; ``None`` where this platform cannot say."""

    in_use_bytes: int | None
    free_in_arenas_bytes: int | None
    resident_anonymous_bytes: int | None
    rss_bytes: int | None
    uss_bytes: int | None
    note: str | None


class _Libc:
    """glibc's heap functions, found once; absent on musl and macOS."""

    def __init__(self) -> None:
        self.mallinfo2 = None
        self.malloc_trim = None
        self.reason: str | None = None
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name)
        except OSError as error:  # pragma: no cover - every Linux has a libc
            self.reason = f"libc not loadable: {error}"
            return
        fn = getattr(libc, "mallinfo2", None)
        if fn is None:
            self.reason = "mallinfo2 not available (not glibc >= 2.33): heap in-use bytes unknown, RSS only"
        else:
            fn.restype = _Mallinfo2
            fn.argtypes = []
            self.mallinfo2 = fn
        trim = getattr(libc, "malloc_trim", None)
        if trim is not None:
            trim.restype = ctypes.c_int
            trim.argtypes = [ctypes.c_size_t]
            self.malloc_trim = trim


_libc: _Libc | None = None
_lock = threading.Lock()


def _get_libc() -> _Libc:
    global _libc
    if _libc is None:
        with _lock:
            if _libc is None:
                _libc = _Libc()
    return _libc


def heap_in_use_bytes() -> int | None:
    """malloc's in-use bytes (uordblks + hblkhd), or None without mallinfo2. Costs a few µs."""
    fn = _get_libc().mallinfo2
    if fn is None:
        return None
    info = fn()
    return int(info.uordblks + info.hblkhd)


_statm_fd: tuple[int, int] | None = None  # (pid, fd): /proc/self is resolved at open, so reopen after fork


def resident_bytes() -> tuple[int, int] | None:
    """(resident, resident anonymous) bytes from /proc/self/statm, O(1) in the kernel.

    The file stays open and is re-read with pread (about 1 µs instead of 9 µs for open+read).
    """
    global _statm_fd
    pid = os.getpid()
    try:
        if _statm_fd is None or _statm_fd[0] != pid:
            _statm_fd = (pid, os.open("/proc/self/statm", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)))
        fields = os.pread(_statm_fd[1], 128, 0).split()
    except OSError:
        return None
    resident = int(fields[1]) * _PAGE
    shared = int(fields[2]) * _PAGE
    return resident, resident - shared


def read_heap(*, uss: bool = False) -> HeapReading:
    """Read the heap and resident memory. ``uss=True`` also walks the page tables (slower)."""
    libc = _get_libc()
    in_use = free = None
    if libc.mallinfo2 is not None:
        info = libc.mallinfo2()
        in_use = int(info.uordblks + info.hblkhd)
        free = int(info.fordblks)
    rss = anon = None
    statm = resident_bytes()
    if statm is not None:
        rss, anon = statm
    else:
        import psutil

        rss = int(psutil.Process().memory_info().rss)
    uss_bytes = None
    if uss:
        import psutil

        try:
            uss_bytes = int(psutil.Process().memory_full_info().uss)
        except (psutil.AccessDenied, AttributeError):  # pragma: no cover - platform dependent
            uss_bytes = None
    return HeapReading(in_use, free, anon, rss, uss_bytes, libc.reason)


def malloc_trim() -> bool:
    """Return free heap pages to the OS (glibc ``malloc_trim(0)``); False where unavailable."""
    trim = _get_libc().malloc_trim
    if trim is None:
        return False
    return bool(trim(0))
