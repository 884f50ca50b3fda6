"""The disk store: storages written to one safetensors file, mapped back on wake.

Each storage is one flat uint8 entry (``s0``, ``s1``, …), padded to 8 bytes so every entry
starts aligned for any dtype; the file's header (a little-endian u64 length,
then JSON with each entry's ``data_offsets``) gives where each lies. Waking onto the host maps
the file copy-on-write: pages come back as they are touched and stay file-backed, so the
kernel can drop them again under pressure; nothing is read up front.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import tempfile
from pathlib import Path

import torch

from vramguard.core._errors import MissingDependency
from vramguard.parking._layout import as_bytes

_ALIGN = 8


def _save_file() -> object:
    try:
        from safetensors.torch import save_file
    except ImportError as error:
        raise MissingDependency("safetensors", "park", 'park(..., to="disk")') from error
    return save_file


def default_path() -> Path:
    """A fresh file in the temporary directory, removed once the park is woken."""
    handle, name = tempfile.mkstemp(prefix="vramguard-park-", suffix=".safetensors")
    os.close(handle)
    return Path(name)


def write(path: Path, storages: list[torch.UntypedStorage]) -> None:
    """Write the storages to ``path`` atomically: a temporary file beside it, then a rename, so a
    failed write leaves no half file and an existing mapping of an older file stays valid."""
    save_file = _save_file()
    entries: dict[str, torch.Tensor] = {}
    for index, storage in enumerate(storages):
        flat = as_bytes(storage)
        if flat.device.type != "cpu":
            flat = flat.cpu()
        pad = -flat.numel() % _ALIGN
        if pad:
            flat = torch.cat([flat, torch.zeros(pad, dtype=torch.uint8)])
        entries[f"s{index}"] = flat
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        save_file(entries, str(partial), metadata={"format": "vramguard-park", "storages": str(len(storages))})  # type: ignore[operator]
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def offsets(path: Path, count: int) -> list[int]:
    """The byte offset in the file of each entry ``s0`` … ``s{count-1}``."""
    with path.open("rb") as file:
        (length,) = struct.unpack("<Q", file.read(8))
        header = json.loads(file.read(length))
    start = 8 + length
    return [start + int(header[f"s{index}"]["data_offsets"][0]) for index in range(count)]


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
