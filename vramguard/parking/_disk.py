"""The disk store: storages written to one safetensors file, mapped back on wake.

Each storage is one flat uint8 entry (``s0``, ``s1``, …), padded to 8 bytes so every entry
starts aligned for any dtype; the file's header (a little-endian u64 length,
then JSON with each entry's ``data_offsets``) gives where each lies. Waking onto the host maps
the file copy-on-write: pages come back as they are touched and stay file-backed, so the
kernel can drop them again under pressure; nothing is read up front.

The file is written here, in the safetensors format (any safetensors reader loads it), rather
than by ``safetensors.torch.save_file``, which takes every tensor at once: from CUDA that meant a
host copy of the whole model before the first byte was written. Here the header is known from
the sizes alone, a host storage is written straight from its memory, and a device storage
through one reused host buffer of at most :data:`CHUNK_BYTES`.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import torch

from vramguard.parking._layout import as_bytes, copy_bytes

_ALIGN = 8
CHUNK_BYTES = 64 * 2**20
"""The most host memory a write from a device holds at once (one staging buffer, reused)."""


def default_path() -> Path:
    """A fresh file in the temporary directory, removed once the park is woken."""
    handle, name = tempfile.mkstemp(prefix="vramguard-park-", suffix=".safetensors")
    os.close(handle)
    return Path(name)


def header(sizes_bytes: list[int]) -> bytes:
    """The safetensors header for entries of these sizes, each padded to 8 bytes, with its
    length prefix; itself padded with spaces to 8 bytes, as safetensors' own writer does, so
    the data (and every entry) starts aligned."""
    entries: dict[str, object] = {"__metadata__": {"format": "vramguard-park", "storages": str(len(sizes_bytes))}}
    start = 0
    for index, size in enumerate(sizes_bytes):
        end = start + size + (-size % _ALIGN)
        entries[f"s{index}"] = {"dtype": "U8", "shape": [end - start], "data_offsets": [start, end]}
        start = end
    text = json.dumps(entries, separators=(",", ":")).encode()
    text += b" " * (-len(text) % _ALIGN)
    return struct.pack("<Q", len(text)) + text


def _on_host(flat: torch.Tensor) -> bool:
    """Whether ``flat`` can be written straight from its memory."""
    return flat.device.type == "cpu"


def _staging(nbytes: int) -> torch.Tensor:
    return torch.empty(nbytes, dtype=torch.uint8)


def _pieces(flat: torch.Tensor, staging: torch.Tensor) -> Iterator[torch.Tensor]:
    """``flat``'s bytes in order, each piece a copy in ``staging`` (overwritten by the next)."""
    size, chunk = flat.numel(), staging.numel()
    for start in range(0, size, chunk):
        piece = staging[: min(chunk, size - start)]
        copy_bytes(piece, flat[start : start + piece.numel()])
        yield piece


def _write_entries(file: BinaryIO, storages: list[torch.UntypedStorage], chunk_bytes: int) -> None:
    staging: torch.Tensor | None = None
    for storage in storages:
        flat = as_bytes(storage)
        if _on_host(flat):
            file.write(flat.numpy().data)
        else:
            if staging is None:
                largest = max(s.nbytes() for s in storages if not _on_host(as_bytes(s)))
                staging = _staging(min(chunk_bytes, largest))
            for piece in _pieces(flat, staging):
                file.write(piece.numpy().data)
        file.write(bytes(-flat.numel() % _ALIGN))


def write(path: Path, storages: list[torch.UntypedStorage], *, chunk_bytes: int = CHUNK_BYTES) -> None:
    """Write the storages to ``path`` atomically: a temporary file beside it, then a rename, so a
    failed write leaves no half file and an existing mapping of an older file stays valid."""
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        with partial.open("wb") as file:
            file.write(header([s.nbytes() for s in storages]))
            _write_entries(file, storages, chunk_bytes)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def offsets(path: Path, count: int) -> list[int]:
    """The byte offset in the file of each entry ``s0`` … ``s{count-1}``."""
    with path.open("rb") as file:
        (length,) = struct.unpack("<Q", file.read(8))
        entries = json.loads(file.read(length))
    start = 8 + length
    return [start + int(entries[f"s{index}"]["data_offsets"][0]) for index in range(count)]


def map_file(path: Path) -> mmap.mmap:
    """The whole file mapped copy-on-write (``ACCESS_COPY``): writes to the woken tensors never
    reach the file. One mapping; each entry is its own storage over it (:func:`entry`)."""
    with path.open("rb") as file:
        return mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_COPY)


def entry(mapped: mmap.mmap, offset: int, nbytes: int) -> torch.Tensor:
    """One entry as a flat uint8 tensor with a storage of its own over the mapping, so the
    storages stay separate (as before the park); the tensor keeps the mapping alive."""
    if nbytes == 0:
        return torch.empty(0, dtype=torch.uint8)
    return torch.frombuffer(mapped, dtype=torch.uint8, count=nbytes, offset=offset)
