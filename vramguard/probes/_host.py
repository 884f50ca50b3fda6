"""The process heap: glibc's mallinfo2, resident memory from /proc, and malloc_trim.

What the figures mean (see docs/memory-model.md and shared facts measured here):
- ``mallinfo2().uordblks + hblkhd`` is what malloc has handed out and not had back: torch's CPU
  tensors live there. Free chunks (``fordblks``) stay counted even after ``malloc_trim`` gave their
  pages back, so a trim is measured through resident memory, never through ``fordblks``.
- Resident anonymous memory (``/proc/self/statm`` resident − shared pages, the kernel's
  RssAnon + RssShmem counters) is what the process holds from the OS that no file backs; it is
  O(1) to read. It includes Python's pymalloc arenas and thread stacks, which malloc does not see.
- ``VmHWM`` in ``/proc/self/status`` is the kernel's resident high-water mark: the most the resident
  set (``VmRSS``, the statm resident figure) has been. Writing "5" to ``/proc/self/clear_refs``
  resets it to the resident set now, which turns it into an exact peak for a block of code, where
  the kernel allows the write.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import re
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


def read_host(with_peak: bool = False) -> tuple[int | None, int | None, int | None, int | None, int | None]:
    """(malloc's in-use bytes, malloc's free bytes, resident, resident anonymous, VmHWM) in
    bytes, ``None`` where unreadable: a session's host reading, as a plain tuple (the hot path).
    ``with_peak`` reads VmHWM too, and the resident figures with it from one read of
    /proc/self/status (VmRSS and RssAnon there are statm's resident and resident − shared: the
    same kernel counters); otherwise statm alone is read (1 µs, not 3)."""
    fn = (_libc or _get_libc()).mallinfo2
    in_use = free = None
    if fn is not None:
        info = fn()
        in_use, free = info.uordblks + info.hblkhd, info.fordblks
    hwm = None
    if with_peak:
        status = _read_status()
        if status is not None:
            found = _PEAK_FIELDS.search(status)
            if found is not None:
                return in_use, free, int(found[2]) << 10, int(found[3]) << 10, int(found[1]) << 10
            hwm = _kb_field(status, b"VmHWM:")
            rss, anon = _kb_field(status, b"VmRSS:"), _kb_field(status, b"RssAnon:")
            if rss is not None and anon is not None:
                return in_use, free, rss, anon, hwm
    statm = resident_bytes()
    if statm is not None:
        return in_use, free, statm[0], statm[1], hwm
    import psutil

    return in_use, free, int(psutil.Process().memory_info().rss), None, hwm


_PEAK_FIELDS = re.compile(rb"VmHWM:\s*(\d+) kB.*?VmRSS:\s*(\d+) kB.*?RssAnon:\s*(\d+) kB", re.S)
"""VmHWM, VmRSS and RssAnon, in the order /proc/self/status lists them (else: one find each)."""


def read_heap(*, uss: bool = False) -> HeapReading:
    """Read the heap and resident memory. ``uss=True`` also walks the page tables (slower)."""
    in_use, free, rss, anon, _ = read_host()
    return HeapReading(in_use, free, anon, rss, read_uss() if uss else None, host_note())


def read_uss() -> int | None:
    """Memory unique to this process (psutil walks the page tables: milliseconds), or None."""
    import psutil

    try:
        return int(psutil.Process().memory_full_info().uss)
    except (psutil.AccessDenied, AttributeError):  # pragma: no cover - platform dependent
        return None


def host_note() -> str | None:
    """Why the heap's in-use figures are missing here (not glibc ≥ 2.33), or None."""
    return (_libc or _get_libc()).reason


def malloc_trim() -> bool:
    """Return free heap pages to the OS (glibc ``malloc_trim(0)``); False where unavailable."""
    trim = _get_libc().malloc_trim
    if trim is None:
        return False
    return bool(trim(0))


_STATUS_PATH = "/proc/self/status"
_CLEAR_REFS_PATH = "/proc/self/clear_refs"
_RESET_CHECK_SPIKE_BYTES = 4 * 1024 * 1024
"""How far the reset check raises the high-water mark above the resident set before resetting it,
so that a reset which does nothing shows (see :func:`_check_reset`)."""


@dataclass(frozen=True)
class ResidentPeak:
    """The kernel's resident high-water mark and the resident set, read together from
    ``/proc/self/status`` (both file-backed + anonymous + shared memory pages); ``None`` where
    unreadable (not Linux, no /proc)."""

    hwm_bytes: int | None
    rss_bytes: int | None


# (pid, path, fd): /proc/self is resolved at open, so reopen after a fork (as for statm). A child
# writing to its parent's clear_refs would reset the parent's mark.
_status_fd: tuple[int, str, int] | None = None
_clear_refs_fd: tuple[int, str, int] | None = None
_reset_verified = False  # the reset was seen to work in this process
_reset_unavailable: str | None = None  # why it cannot work here; cached, never retried
_reset_lock = threading.Lock()


def _close(opened: tuple[int, str, int] | None) -> None:
    """Close a cached /proc fd that no longer fits (a fork's copy, or another path)."""
    if opened is not None:
        try:
            os.close(opened[2])
        except OSError:
            pass


def _kb_field(status: bytes, name: bytes) -> int | None:
    start = status.find(name)
    if start < 0:
        return None
    end = status.find(b"kB", start)
    try:
        return int(status[start + len(name) : end]) * 1024
    except ValueError:
        return None


def read_resident_peak() -> ResidentPeak:
    """VmHWM and VmRSS in bytes (one pread of an open /proc/self/status, about 8 µs); never raises."""
    status = _read_status()
    if status is None:
        return ResidentPeak(None, None)
    return ResidentPeak(_kb_field(status, b"VmHWM:"), _kb_field(status, b"VmRSS:"))


def _read_status() -> bytes | None:
    global _status_fd
    pid = os.getpid()
    try:
        if _status_fd is None or _status_fd[:2] != (pid, _STATUS_PATH):
            _close(_status_fd)
            _status_fd = None
            _status_fd = (pid, _STATUS_PATH, os.open(_STATUS_PATH, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)))
        return os.pread(_status_fd[2], 4096, 0)
    except OSError:
        return None


def _write_clear_refs() -> None:
    """Write "5" (reset the resident high-water mark) to clear_refs; raises OSError."""
    global _clear_refs_fd
    pid = os.getpid()
    if _clear_refs_fd is None or _clear_refs_fd[:2] != (pid, _CLEAR_REFS_PATH):
        _close(_clear_refs_fd)
        _clear_refs_fd = None
        _clear_refs_fd = (pid, _CLEAR_REFS_PATH, os.open(_CLEAR_REFS_PATH, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)))
    # The kernel parses each write on its own, whatever the file offset.
    os.write(_clear_refs_fd[2], b"5")


def _not_writable(error: OSError) -> str:
    return f"{_CLEAR_REFS_PATH} not writable ({type(error).__name__}: {error.strerror or error})"


def _check_reset() -> str | None:
    """Reset the mark once and see that it dropped; None when it works, else why not.

    A reset can be accepted and do nothing (an emulated /proc), and a mark already at the
    resident set cannot show a drop, so the check first raises it: it touches and unmaps
    ``_RESET_CHECK_SPIKE_BYTES`` of anonymous memory (about 0.2 ms, once per process).
    """
    reading = read_resident_peak()
    high, rss = reading.hwm_bytes, reading.rss_bytes
    if high is None or rss is None:
        return f"VmHWM not readable from {_STATUS_PATH}"
    if high - rss < _RESET_CHECK_SPIKE_BYTES:
        try:
            spike = mmap.mmap(-1, _RESET_CHECK_SPIKE_BYTES)
            for offset in range(0, _RESET_CHECK_SPIKE_BYTES, _PAGE):
                spike[offset] = 1
            spike.close()
        except OSError as error:
            return f"could not map memory to check the VmHWM reset ({error})"
        high = max(high, read_resident_peak().hwm_bytes or 0)
    try:
        _write_clear_refs()
    except OSError as error:
        return _not_writable(error)
    after = read_resident_peak().hwm_bytes
    # A reset sets the mark to the resident set: the spike above it must be gone.
    if after is None or after > high - _RESET_CHECK_SPIKE_BYTES // 2:
        return f"VmHWM did not drop after writing 5 to {_CLEAR_REFS_PATH}"
    return None


def reset_resident_peak() -> bool:
    """Reset the kernel's resident high-water mark (VmHWM) to the resident set now; process-wide.

    False where the kernel does not allow it (no /proc, clear_refs not writable, or a write that
    does not lower the mark): found out at the first call and cached. Never raises.
    """
    global _reset_verified, _reset_unavailable
    if not _reset_verified:
        with _reset_lock:
            if _reset_unavailable is not None:
                return False
            if not _reset_verified:
                _reset_unavailable = _check_reset()  # the check's own reset is this call's
                _reset_verified = _reset_unavailable is None
                return _reset_verified
    try:
        _write_clear_refs()
    except OSError as error:  # the file went away after it worked (a sandbox closing /proc)
        with _reset_lock:
            _reset_verified = False
            _reset_unavailable = _not_writable(error)
        return False
    return True


def resident_peak_resettable() -> bool:
    """True where :func:`reset_resident_peak` works (checked once, at the first call of either)."""
    global _reset_verified, _reset_unavailable
    if not _reset_verified:
        with _reset_lock:
            if _reset_unavailable is None and not _reset_verified:
                _reset_unavailable = _check_reset()
                _reset_verified = _reset_unavailable is None
    return _reset_verified


def resident_peak_reset_unavailable() -> str | None:
    """Why :func:`reset_resident_peak` cannot work here, or None (it works, or was not tried yet)."""
    return _reset_unavailable
