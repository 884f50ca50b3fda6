"""Which numpy arrays a block allocated: numpy's memory handler, renamed for the block.

numpy (1.22 and later) allocates an array's data through the *memory handler* of the current
context (a context variable) and keeps a reference to that handler in every array owning its
data; ``numpy.core.multiarray.get_handler_name(array)`` reads its name. While a host census runs,
its thread's context gets a handler made of numpy's own default allocator functions under a
name of its own (``vramguard census 3``): allocation costs exactly what it did, and an array
says at the block's end whether the block allocated it. Arrays are not tracked by the collector,
so the heap epoch (:mod:`._epoch`) cannot tell a new one from an old one; this can, in O(1).

The handler is set through numpy's C API (``PyDataMem_SetHandler``, slot 304 of the API table
since numpy 1.22), reached with ``ctypes``. A handler's C struct must outlive every array
allocated with it, so handlers are never freed: they are pooled, and one is reused only when no
array (and no context) refers to its capsule any more, which also makes its name mean "this
block" again. Where any of this is missing (numpy older than 1.22, no ``ctypes.pythonapi``), no
handler is set and no array is judged: the census never guesses an array's age.
"""

from __future__ import annotations

import ctypes
import sys
import threading
from collections.abc import Callable
from typing import Any

_SET_HANDLER_SLOT = 304  # numpy/__multiarray_api.h: PyDataMem_SetHandler
_GET_HANDLER_SLOT = 305  # PyDataMem_GetHandler
_CAPSULE_NAME = ctypes.create_string_buffer(b"mem_handler")  # the capsule keeps the pointer: never freed
PREFIX = "vramguard census "


class _Allocator(ctypes.Structure):
    _fields_ = [
        ("ctx", ctypes.c_void_p),
        ("malloc", ctypes.c_void_p),
        ("calloc", ctypes.c_void_p),
        ("realloc", ctypes.c_void_p),
        ("free", ctypes.c_void_p),
    ]


class _Handler(ctypes.Structure):
    """numpy's ``PyDataMem_Handler`` (numpy/ndarraytypes.h)."""

    _fields_ = [("name", ctypes.c_char * 127), ("version", ctypes.c_uint8), ("allocator", _Allocator)]


class _Api:
    """numpy's handler functions, reached once."""

    def __init__(self, numpy: Any) -> None:
        core = getattr(numpy, "_core", None) or numpy.core
        self.handler_name: Callable[[object], str | None] = core.multiarray.get_handler_name
        pointer = ctypes.pythonapi.PyCapsule_GetPointer
        pointer.restype, pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
        self._pointer = pointer
        new = ctypes.pythonapi.PyCapsule_New
        new.restype, new.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        self._new = new
        table = ctypes.cast(pointer(core._multiarray_umath._ARRAY_API, None), ctypes.POINTER(ctypes.c_void_p))
        # PyDataMem_SetHandler returns the replaced handler as a new reference (NULL on error).
        # A py_object result takes it over: ctypes' GetResult drops the reference its O_get
        # getter adds (Modules/_ctypes/callproc.c, "we have to call Py_DECREF because O_get has
        # already called Py_INCREF"), and a NULL result raises. tests/census/test_census_numpy.py
        # checks the reference counts across many sets.
        self._set = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.py_object)(table[_SET_HANDLER_SLOT])
        get = ctypes.PYFUNCTYPE(ctypes.py_object)(table[_GET_HANDLER_SLOT])
        self.default = _Handler.from_address(pointer(get(), _CAPSULE_NAME))

    def set(self, capsule: object) -> object:
        """Make ``capsule`` this context's handler; returns the one it replaces."""
        try:
            return self._set(capsule)
        except ValueError as error:  # "PyObject is NULL": the set failed
            raise RuntimeError("PyDataMem_SetHandler failed") from error

    def capsule(self, handler: _Handler) -> object:
        return self._new(ctypes.addressof(handler), _CAPSULE_NAME, None)


_lock = threading.Lock()
_api: _Api | None = None
_failed = False
_pool: list[tuple[_Handler, object, str]] = []  # never shrinks: arrays point into the structs
_free_refs = sys.maxsize  # a pooled capsule's reference count when nothing but the pool holds it


def _numpy_api() -> _Api | None:
    """numpy's handler API, or None where numpy is not loaded or too old to have one (lock held)."""
    global _api, _failed
    if _api is None and not _failed:
        numpy = sys.modules.get("numpy")
        if numpy is None:
            return None
        try:
            _api = _Api(numpy)
        except Exception:  # numpy < 1.22, an interpreter without ctypes.pythonapi
            _failed = True
    return _api


class BlockAllocations:
    """Gives one census's thread a handler of its own for the block (:meth:`start`,
    :meth:`stop`); :meth:`made_here` then tells the arrays the block allocated."""

    def __init__(self) -> None:
        self._api: _Api | None = None
        self._previous: object = None
        self._capsule: object = None
        self._thread = threading.get_ident()
        self.names: set[str] = set()
        """Handlers set while this block ran (a nested census sets its own)."""

    def start(self) -> bool:
        """Set a fresh handler in this context. False where none can be set (nothing is judged)."""
        with _lock:
            api = _numpy_api()
            if api is None:
                return False
            left = _unrestored.pop(threading.get_ident(), None)
            try:
                if left is not None:
                    left[0].set(left[1])
                capsule, name = _free_handler(api)
                self._previous = api.set(capsule)
            except (RuntimeError, ctypes.ArgumentError):
                # ctypes turns a RecursionError in its argument conversion into an ArgumentError
                # (a session entered with no stack left): no handler, nothing judged, and the
                # interpreter raises the RecursionError itself at the block's next call.
                return False
            self._api, self._capsule, self._thread = api, capsule, threading.get_ident()
            for other in _running:
                if other._thread == self._thread:
                    other.names.add(name)
            self.names.add(name)
            _running.append(self)
        return True

    def stop(self) -> None:
        """Put back the handler found at :meth:`start` (safe to call more than once)."""
        with _lock:
            if self in _running:
                _running.remove(self)
            if self._api is not None and self._previous is not None:
                try:
                    self._api.set(self._previous)
                except (RuntimeError, ctypes.ArgumentError):
                    # No stack left to convert the argument (a RecursionError inside ctypes):
                    # put back at this thread's next start, before anything else is set.
                    _unrestored[self._thread] = (self._api, self._previous)
            self._previous = self._capsule = None

    def made_here(self, array: object) -> bool:
        """True when the block allocated ``array``'s data (``array`` owns it)."""
        api = self._api
        if api is None:
            return False
        try:
            name = api.handler_name(array)
        except Exception:
            return False
        return name in self.names


_running: list[BlockAllocations] = []
_unrestored: dict[int, tuple[_Api, object]] = {}
"""A thread's handler that a stop could not put back (no stack left), put back at its next start."""


def _free_handler(api: _Api) -> tuple[object, str]:
    """A pooled handler whose capsule only the pool holds (no array carries its name), or a
    new one (lock held)."""
    global _free_refs
    for entry in _pool:
        # The same expression as the baseline below: how an interpreter counts the argument's
        # and the loop's references does not matter, only that nothing else holds the capsule.
        if sys.getrefcount(entry[1]) <= _free_refs:
            return entry[1], entry[2]
    handler = _Handler()
    name = f"{PREFIX}{len(_pool) + 1}"
    handler.name = name.encode()
    handler.version = api.default.version
    handler.allocator = api.default.allocator
    _pool.append((handler, api.capsule(handler), name))
    entry = _pool[-1]
    _free_refs = min(_free_refs, sys.getrefcount(entry[1]))
    return entry[1], entry[2]
