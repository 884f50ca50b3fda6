"""The process's mappings, from ``/proc/self/smaps``: what is resident, and where.

``smaps`` lists every mapping with its resident bytes (``Rss``) and the part of them that is
anonymous (``Anonymous``: private pages written since they were mapped). One read of a torch
process's file takes ~5 ms here (400 mappings) and parsing it ~5 ms. The sum of ``Rss`` over
the mappings is the resident set the ledger explains: ``VmRSS`` comes from per-CPU counters the
kernel folds in batches, ``smaps`` from the page tables, so the two may differ by a few pages.

A few mappings are told apart by their shape (glibc's, not documented as an interface, so a
miss only moves bytes to the residual):
- a malloc arena of a thread (``new_heap`` in glibc's arena.c): an anonymous ``rw-p`` mapping
  aligned to ``HEAP_MAX_SIZE`` (64 MiB on 64-bit), followed by its ``---p`` reserve, the two
  together 64 MiB long; the main arena is ``[heap]``;
- a thread's stack (``allocate_stack`` in nptl): an anonymous ``rw-p`` mapping right after a
  ``---p`` guard page.
"""

from __future__ import annotations

import bisect
import os
import sys
from dataclasses import dataclass

_HEAP_MAX_BYTES = 64 * 1024 * 1024
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
SMAPS = "/proc/self/smaps"


@dataclass(frozen=True)
class Mapping:
    """One mapping: its address range, permissions, path ("" when anonymous), resident bytes."""

    start: int
    end: int
    perms: str
    path: str
    rss_bytes: int
    anonymous_bytes: int

    @property
    def file_backed(self) -> bool:
        return self.path.startswith("/")


def parse_smaps(text: bytes) -> list[Mapping]:
    """The mappings of an smaps file's content, in address order."""
    found: list[Mapping] = []
    start = end = rss = anon = 0
    perms = path = ""
    header = False
    for line in text.split(b"\n"):
        if not line:
            continue
        first = line.split(b" ", 1)[0]
        if b"-" in first and not first.endswith(b":"):
            if header:
                found.append(Mapping(start, end, perms, path, rss, anon))
            parts = line.split(None, 5)
            low, high = first.split(b"-")
            start, end = int(low, 16), int(high, 16)
            perms = parts[1].decode()
            path = parts[5].decode(errors="replace").strip() if len(parts) > 5 else ""
            rss = anon = 0
            header = True
        elif first == b"Rss:":
            rss = int(line.split()[1]) * 1024
        elif first == b"Anonymous:":
            anon = int(line.split()[1]) * 1024
    if header:
        found.append(Mapping(start, end, perms, path, rss, anon))
    return found


def read_mappings(path: str = SMAPS) -> list[Mapping] | None:
    """This process's mappings; None where ``/proc/self/smaps`` cannot be read (not Linux)."""
    try:
        with open(path, "rb") as file:
            return parse_smaps(file.read())
    except OSError:
        return None


def is_thread_arena(mappings: list[Mapping], i: int) -> bool:
    """glibc's ``new_heap`` shape: see the module's docstring."""
    m = mappings[i]
    if m.path or m.perms[:3] != "rw-" or m.start % _HEAP_MAX_BYTES:
        return False
    size = m.end - m.start
    if size == _HEAP_MAX_BYTES:
        return True
    after = mappings[i + 1] if i + 1 < len(mappings) else None
    return (
        after is not None
        and after.start == m.end
        and not after.path
        and after.perms[:3] == "---"
        and size + (after.end - after.start) == _HEAP_MAX_BYTES
    )


def is_thread_stack(mappings: list[Mapping], i: int) -> bool:
    """nptl's ``allocate_stack`` shape: a guard page, then the stack."""
    m = mappings[i]
    if m.path or m.perms[:3] != "rw-" or i == 0:
        return False
    guard = mappings[i - 1]
    return guard.end == m.start and not guard.path and guard.perms[:3] == "---" and guard.end - guard.start == _PAGE


def is_library(path: str) -> bool:
    """Code: a shared library or the interpreter's executable."""
    name = os.path.basename(path)
    return ".so" in name or os.path.realpath(path) == os.path.realpath(sys.executable)


class FileIndex:
    """Which file-backed mapping an address falls in (bisect over the sorted starts)."""

    def __init__(self, mappings: list[Mapping]) -> None:
        self._files = [m for m in mappings if m.file_backed]
        self._starts = [m.start for m in self._files]

    def path_of(self, address: int) -> str | None:
        i = bisect.bisect_right(self._starts, address) - 1
        if i >= 0 and address < self._files[i].end:
            return self._files[i].path
        return None
