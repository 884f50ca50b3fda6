"""What an isolated child sends back: pickled with every CUDA storage moved to the CPU first.

A CUDA tensor pickles through its storage, and the storage through ``torch.save``; it unpickles
through ``torch.load`` onto the same CUDA device (torch/storage.py:245, ``_load_from_bytes`` at
:534). The parent would then create a CUDA context (300–500 MiB) to hold the result, which is
what isolation exists to avoid. The bytes cross through the host either way, so the child copies
each CUDA storage to the CPU and pickles that: the parent rebuilds CPU tensors and never calls
into CUDA. Putting the result back on a GPU is the caller's decision (``.to("cuda")``).

Storages are where the move happens because every tensor reduces to one: plain tensors, views,
``nn.Parameter`` (through its ``.data``) and tensors inside modules, dataclasses, dicts and
``ModelOutput``-like mappings. Each keeps its type, shape, strides, dtype and ``requires_grad``;
only the device changes.
"""

from __future__ import annotations

import copyreg
import io
import pickle
from collections.abc import Callable
from typing import Any

import torch

MoveStorage = Callable[[Any], Any]


def _storage_types() -> list[type[Any]]:
    """The storage classes and their subclasses (the legacy ``torch.cuda.FloatStorage`` kind):
    a pickler's ``dispatch_table`` is looked up by exact type."""
    found: list[type[Any]] = []
    pending: list[type[Any]] = [torch.UntypedStorage, torch.TypedStorage]
    while pending:
        kind = pending.pop()
        if kind not in found:
            found.append(kind)
            pending.extend(kind.__subclasses__())
    return found


def _untyped(storage: Any) -> torch.UntypedStorage:
    # A TypedStorage's public members warn that the class is deprecated; its wrapped
    # UntypedStorage is what torch's own pickling reads too.
    return storage._untyped_storage if isinstance(storage, torch.TypedStorage) else storage


def _to_cpu(storage: Any) -> Any:
    moved = _untyped(storage).cpu()  # type: ignore[no-untyped-call]
    if isinstance(storage, torch.TypedStorage):
        return torch.TypedStorage(wrap_storage=moved, dtype=storage.dtype, _internal=True)  # type: ignore[no-untyped-call]
    return moved


class ResultPickler(pickle.Pickler):
    """Pickles an object with each storage on ``device_type`` replaced by ``move(storage)``
    (its CPU copy by default). Only storages go through Python here: a table entry per
    storage type, nothing per other object."""

    def __init__(self, file: io.BytesIO, *, device_type: str = "cuda", move: MoveStorage = _to_cpu) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.device_type = device_type
        self.move = move
        table: dict[type[Any], Callable[[Any], Any]] = dict(copyreg.dispatch_table)
        for kind in _storage_types():
            table[kind] = self._reduce_storage
        self.dispatch_table = table

    def _reduce_storage(self, storage: Any) -> Any:
        if _untyped(storage).device.type == self.device_type:
            storage = self.move(storage)
        return storage.__reduce_ex__(pickle.HIGHEST_PROTOCOL)


def dumps_result(obj: object, *, device_type: str = "cuda", move: MoveStorage = _to_cpu) -> bytes:
    """``obj`` pickled with its ``device_type`` storages moved (to the CPU by default)."""
    buffer = io.BytesIO()
    ResultPickler(buffer, device_type=device_type, move=move).dump(obj)
    return buffer.getvalue()
