"""numpy arrays that share a tensor's memory: ``tensor.numpy()`` (the array's ``base`` is the
tensor), and views of such arrays. Such an array holds the tensor, so it is the tensor's holder.

Arrays are not tracked by the collector, so no referrer scan finds them, and they find no
referrers of their own: one pass over the heap finds every object that refers to an array
sharing a walked tensor's memory. Only when numpy is loaded and a tensor has no referrer.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from typing import Any

from vramguard.census._scan import is_a

Link = Callable[[object, int, object], None]
"""``link(array, tensor, holder)``: ``array`` shares the memory of the walk's ``tensor`` (an
index); ``holder`` refers to the array (None for an array found in a frame's locals)."""


def arrays_sharing(tensors: dict[int, int], local_arrays: list[object], own: set[int], link: Link) -> None:
    """Call ``link`` for every array sharing the memory of one of ``tensors`` (``id`` -> the
    walk's index): the ``local_arrays`` of live frames, then every object of the heap that refers
    to one (``own``: ids the heap pass must skip; the pass's own list is added while it runs)."""
    ndarray = getattr(sys.modules.get("numpy"), "ndarray", None)
    if not is_a(ndarray, type):
        return

    def tensor_of(array: object) -> int | None:
        base: Any = getattr(array, "base", None)
        while issubclass(type(base), ndarray):
            base = base.base
        return tensors.get(id(base))

    for array in local_arrays:
        tensor = tensor_of(array)
        if tensor is not None:
            link(array, tensor, None)
    everything = gc.get_objects()
    own.add(id(everything))
    try:
        for holder in everything:
            if id(holder) in own:
                continue
            for array in gc.get_referents(holder):
                if issubclass(type(array), ndarray):
                    tensor = tensor_of(array)
                    if tensor is not None:
                        link(array, tensor, holder)
            del holder
    finally:
        own.discard(id(everything))
        everything.clear()
