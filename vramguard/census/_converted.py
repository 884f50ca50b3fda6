"""numpy arrays whose memory a tensor of the block wrapped: ``torch.from_numpy``,
``torch.as_tensor`` and ``torch.asarray`` share the array's memory instead of copying it.

When the tensor is dropped and the array kept, the memory stays, but no tensor is left for
the census to find. So while a host census runs, those three functions are wrapped (restored
when the last census stops, as :mod:`._order` does for ``empty_cache``): each call in the
census's thread that returns a tensor sharing an array's memory remembers, weakly, the array
owning that memory and the tensor's storage. At the block's end an owner still alive, which
the block allocated (:mod:`._numpy_alloc`) and whose every such storage is gone, is host memory
the block kept: a leak of ``owner.nbytes``, its holders searched like a tensor's. While one of
the storages lives, the tensor census counts the memory through it, never twice.

A call that ``torch.compile`` traces is not recorded (the wrapper steps aside for dynamo); code
that bound ``from torch import from_numpy`` before the census began calls the original.
"""

from __future__ import annotations

import functools
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any

import torch

from vramguard.census._numpy_alloc import BlockAllocations
from vramguard.census._scan import StorageWeakRef

WRAPPED = ("from_numpy", "as_tensor", "asarray")

_lock = threading.Lock()
_recorders: tuple[ConvertedArrays, ...] = ()  # replaced, never changed in place: read without the lock
_originals: dict[str, Callable[..., Any]] = {}
_PRUNE_AT = 64


class ConvertedArrays:
    """The arrays a host census's block turned into tensors sharing their memory."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()
        self.allocations = BlockAllocations()
        # id(owner) -> (the owner, the arrays converted from it, the storages made of it)
        self._seen: dict[int, tuple[weakref.ref[Any], list[weakref.ref[Any]], list[StorageWeakRef]]] = {}

    _recording = False

    def start(self) -> None:
        """Record from here on (nothing, where numpy's handler cannot be set: no array's age is known)."""
        if not self.allocations.start():
            return
        self._recording = True
        global _recorders
        with _lock:
            if not _recorders:
                _install()
            _recorders = (*_recorders, self)

    def stop(self) -> None:
        """Stop recording; what was recorded stays for :meth:`kept_arrays`. Safe more than once."""
        if not self._recording:
            return
        self._recording = False
        global _recorders
        with _lock:
            if self in _recorders:
                _recorders = tuple(r for r in _recorders if r is not self)
                if not _recorders:
                    _uninstall()
        self.allocations.stop()

    def note(self, array: Any, tensor: Any, shares: bool) -> None:
        """``tensor`` was made from ``array``; ``shares``: it uses the array's memory for sure
        (``from_numpy``), else the pointers tell."""
        owner = _owner(array)
        if owner is None or not issubclass(type(tensor), torch.Tensor) or tensor.device.type != "cpu":
            return
        try:
            if not shares:
                start = int(owner.__array_interface__["data"][0])
                if not start <= tensor.data_ptr() < start + max(int(owner.nbytes), 1):
                    return  # a copy (another dtype): the array's memory is not the tensor's
            entry = self._seen.get(id(owner))
            if entry is None or entry[0]() is not owner:
                entry = self._seen[id(owner)] = (weakref.ref(owner), [], [])
            storages = entry[2]
            if len(storages) >= _PRUNE_AT:  # an array converted every step: keep the live ones only
                storages[:] = [s for s in storages if not s.expired()]
            storages.append(StorageWeakRef(tensor.untyped_storage()))
            if array is not owner:
                entry[1].append(weakref.ref(array))
        except (TypeError, AttributeError, RuntimeError, NotImplementedError):  # no weak references; no storage
            return

    def kept_arrays(self) -> list[list[Any]]:
        """The owners alive now that the block allocated and whose tensors are all gone, each
        with the converted views of it still alive: ``[owner, view, ...]``."""
        found = []
        for ref, views, storages in self._seen.values():
            owner = ref()
            if owner is None or not all(s.expired() for s in storages) or not self.allocations.made_here(owner):
                continue
            found.append([owner, *(v for v in (view() for view in views) if v is not None)])
            del owner
        return found

    def clear(self) -> None:
        self._seen.clear()


def _owner(array: object) -> Any:
    """The ndarray that owns ``array``'s memory (itself, or the end of its ``base`` chain), or
    None when no ndarray owns it (``tensor.numpy()``: the tensor does; a buffer, a memmap)."""
    numpy = sys.modules.get("numpy")
    ndarray = getattr(numpy, "ndarray", None)
    if ndarray is None or not issubclass(type(array), ndarray):
        return None
    owner: Any = array
    while issubclass(type(owner.base), ndarray):
        owner = owner.base
    return owner if owner.base is None else None


def _notify(array: object, tensor: object, shares: bool) -> None:
    me = threading.get_ident()
    for recorder in _recorders:
        if recorder.thread == me:
            recorder.note(array, tensor, shares)


def _wrap(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def convert(*args: Any, **kwargs: Any) -> Any:
        if torch.compiler.is_compiling():  # dynamo inlines this function: leave it the plain call
            return original(*args, **kwargs)
        result = original(*args, **kwargs)
        source = args[0] if args else kwargs.get("obj", kwargs.get("data"))
        if source is not None:
            _notify(source, result, name == "from_numpy")
        return result

    convert.__vramguard_wrapper__ = True  # type: ignore[attr-defined]
    return convert


_made: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {}
"""name -> (the original, our wrapper of it): made once and put back at each install, since a
per-step session installs and removes them at every step (functools.wraps cost it 6 µs)."""


def _install() -> None:
    """Wrap the conversions (lock held)."""
    for name in WRAPPED:
        original = getattr(torch, name)
        _originals[name] = original
        made = _made.get(name)
        if made is None or made[0] is not original:
            made = _made[name] = (original, _wrap(name, original))
        setattr(torch, name, made[1])


def _uninstall() -> None:
    """Restore them (lock held). A wrapper someone placed over ours is left in place; ours then
    only forwards."""
    for name, original in _originals.items():
        if getattr(getattr(torch, name), "__vramguard_wrapper__", False):
            setattr(torch, name, original)
    _originals.clear()


def recording() -> bool:
    """True while some census records conversions (for tests and diagnostics)."""
    with _lock:
        return bool(_recorders)


def describe_array(array: Any) -> str:
    """``float32[512, 512] numpy array``."""
    try:
        return f"{array.dtype}[{', '.join(str(int(d)) for d in array.shape)}] numpy array"
    except Exception:
        return type(array).__name__
