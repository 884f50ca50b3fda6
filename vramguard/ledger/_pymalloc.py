"""Python's small-object allocator (pymalloc): the bytes of its arenas, from its own statistics.

pymalloc maps its arenas (1 MiB on 64-bit CPython 3.10+, 256 KiB before) with ``mmap`` directly,
so malloc's figures never see them. ``sys._debugmallocstats()`` walks the arenas' pool headers
(under a millisecond here) and prints its figures to the C-level stderr; they are read back
from a temporary file that stands in for file descriptor 2 for that moment (a line another
thread writes to stderr in that window lands in the file, and is written back after).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from dataclasses import dataclass

_lock = threading.Lock()
_FIGURE = re.compile(rb"^(# [a-z ]+?|Total)\s*=\s*([\d,]+)\s*$", re.MULTILINE)
_ARENAS = re.compile(rb"^(\d+) arenas \* (\d+) bytes/arena\s*=\s*([\d,]+)", re.MULTILINE)


@dataclass(frozen=True)
class ArenaReading:
    """pymalloc's arenas: how many, their bytes, one arena's size, and the bytes of the objects in them."""

    arenas: int
    arena_bytes: int
    arena_size_bytes: int
    allocated_block_bytes: int | None
    free_block_bytes: int | None


def parse_stats(text: bytes) -> ArenaReading | None:
    """The arena figures of ``sys._debugmallocstats()``'s output; None without pymalloc."""
    arenas = _ARENAS.search(text)
    if arenas is None:
        return None
    figures: dict[bytes, int] = {}
    for name, value in _FIGURE.findall(text):
        figures.setdefault(name.strip(), int(value.replace(b",", b"")))
    return ArenaReading(
        arenas=int(arenas.group(1)),
        arena_bytes=int(arenas.group(3).replace(b",", b"")),
        arena_size_bytes=int(arenas.group(2)),
        allocated_block_bytes=figures.get(b"# bytes in allocated blocks"),
        free_block_bytes=figures.get(b"# bytes in available blocks"),
    )


def read_arenas() -> ArenaReading | None:
    """pymalloc's arenas now; None where Python has no pymalloc (``PYTHONMALLOC=malloc``, not
    CPython) or stderr cannot be redirected."""
    stats = getattr(sys, "_debugmallocstats", None)
    if stats is None:
        return None
    with _lock, tempfile.TemporaryFile() as file:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):
            return None
        try:
            os.dup2(file.fileno(), 2)
            stats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        file.seek(0)
        text = file.read()
    reading = parse_stats(text)
    if reading is None and text.strip():
        os.write(2, text)  # not pymalloc's output: give it back to stderr
    return reading
