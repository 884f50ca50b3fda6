"""A disk park's file used again: a model woken on the host from its file and parked again with
no write since needs no new file, the weights are still there.

A host wake from disk maps the file copy-on-write, so the woken storages *are* the file's pages
until something writes to them; the kernel then gives the writing page a private copy. The next
park to disk checks, by count and not by time, that nothing can have changed: the same storages
at the same addresses, the file unchanged on disk (inode, size, modification time), and no page
of the mapping a private copy (``/proc/self/pagemap``: every present page is still a file page,
none swapped). Only then is the write skipped (an ASR swap loop parked 290 MB of whisper-base at
about 0.9 s a write on two cores); anywhere the pages cannot be read, the park writes as before.
"""

from __future__ import annotations

import mmap
import os
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

_PAGEMAP = "/proc/self/pagemap"
_registry: weakref.WeakKeyDictionary[torch.nn.Module, MappedFile] = weakref.WeakKeyDictionary()
"""Each module woken from a file -> that file's record, while its storages may still map it."""


@dataclass(eq=False)
class MappedFile:
    """A park file a host wake mapped: where the woken storages lie in it, and who removes it."""

    path: Path
    stat: tuple[int, int, int]
    """(inode, size in bytes, modification time in ns) when it was mapped."""
    base_address: int
    length_bytes: int
    pointers: tuple[int, ...]
    """The data address of each woken storage, in the layout's order."""
    cleanup: weakref.finalize[Any, Any] | None
    """Removes a temporary file when the mapping closes; None for a file the user named."""


def file_stat(path: Path) -> tuple[int, int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_ino, info.st_size, info.st_mtime_ns


def remember(
    modules: list[torch.nn.Module],
    path: Path,
    mapped: mmap.mmap,
    base_address: int,
    pointers: list[int],
    temporary: bool,
) -> bool:
    """Record that ``modules`` were woken onto ``mapped`` (the whole file at ``path``, mapped at
    ``base_address``); a temporary file is then removed when the mapping closes, not at the wake.
    False (nothing recorded) when the file cannot be read."""
    stat = file_stat(path)
    if stat is None:
        return False
    cleanup = weakref.finalize(mapped, _unlink, path) if temporary else None
    record = MappedFile(path, stat, base_address, len(mapped), tuple(pointers), cleanup)
    for module in modules:
        _registry[module] = record
    return True


def reusable(modules: list[torch.nn.Module], pointers: list[int], path: Path | None) -> MappedFile | None:
    """The record of the file these modules' storages still are, unwritten, or None (write anew).
    ``path``: the file the caller asked for (None: any)."""
    records = [_registry.get(m) for m in modules]
    record = records[0] if records else None
    if record is None or any(other is not record for other in records):
        return None
    if path is not None and path.resolve() != record.path.resolve():
        return None
    if tuple(pointers) != record.pointers or file_stat(record.path) != record.stat:
        return None
    if written_pages(record.base_address, record.length_bytes) != 0:
        return None
    return record


def forget(modules: list[torch.nn.Module]) -> None:
    for module in modules:
        _registry.pop(module, None)


def written_pages(address: int, length: int) -> int | None:
    """How many pages of ``[address, address + length)`` are not the file's own (a private copy
    made by a write, or swapped out), from ``/proc/self/pagemap``; None where it cannot be read."""
    if length <= 0:
        return 0
    page = mmap.PAGESIZE
    first, last = address // page, (address + length - 1) // page
    count = last - first + 1
    try:
        with open(_PAGEMAP, "rb", buffering=0) as file:
            file.seek(first * 8)
            data = file.read(count * 8)
    except OSError:
        return None
    if len(data) != count * 8:
        return None
    entries = torch.frombuffer(bytearray(data), dtype=torch.int64)
    present = entries < 0  # bit 63
    file_page = ((entries >> 61) & 1).bool()
    swapped = ((entries >> 62) & 1).bool()
    return int(((present & ~file_page) | swapped).sum())


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
