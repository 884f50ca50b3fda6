"""The heap epoch: which Python objects were created since a census started, in O(new objects).

A census must tell the tensors a block created from the ones that were there before. Taking
an inventory of the whole heap at entry costs ~2.4 ms per 100k live objects (24 ms with a
million, 70 ms with three million): a session per inference step would then cost more than the
step. Instead, the first census to start moves every object the collector tracks into the
permanent generation (``gc.freeze()``, O(1): the generations' lists are spliced). From then
on ``gc.get_objects()``, ``gc.get_referrers()`` and ``gc.collect()`` see only the objects
created since — the block's — so the census's look at the block's end, and the release's
collection, cost O(objects the block created), whatever the size of the application's heap.

The epoch is process-wide and shared: nested and concurrent censuses count on it (a census
that starts while the epoch is open takes an inventory of the objects created since the epoch
began, which is small), and the last one to finish ends it (``gc.unfreeze()``, O(1)).

A full collection while the epoch is open (the user's ``gc.collect()``, an automatic
generation-2 collection) must still free old cycles: a ``gc.callbacks`` hook *thaws* the epoch
first — it remembers, by weak reference, the tensors created since the epoch began, then
unfreezes — and freezes again when the collection ends. The census's own look at the block is
then "the tensors remembered and still alive, plus the objects tracked now".

Where the program froze objects itself (``gc.get_freeze_count() > 0`` with no epoch of ours),
the epoch is never used: unfreezing would undo the program's own freeze. The census then falls
back to a full inventory at entry and exit (the cost above).
"""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from vramguard.census._scan import heap_tensors, young_tensors
from vramguard.core._hooks import defer_interrupt


class HeapEpoch:
    """The process-wide epoch; use the module's :data:`EPOCH`."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._depth = 0
        self._frozen = False  # the objects older than the epoch are in the permanent generation
        self._remembered: dict[int, weakref.ref[torch.Tensor]] = {}
        self._own_collection = False
        self._thawed_by_callback = False
        self._installed = False

    # -- the censuses' API ------------------------------------------------------------------
    def enter(self) -> bool:
        """Join the epoch (opening it if none is open). False where it cannot be used: the
        program froze objects itself; the caller then takes full inventories."""
        return self.join() is not None

    def join(self) -> bool | None:
        """:meth:`enter`, saying how: True when this call opened the epoch (nothing was created
        since, so the caller needs no inventory), False when it joined an open one, None where
        the epoch cannot be used."""
        with self._lock:
            opened = self._depth == 0
            if opened:
                if gc.get_freeze_count() > 0:
                    return None
                gc.freeze()
                self._frozen = True
                self._remembered = {}
                if not self._installed:
                    gc.callbacks.append(self._on_gc)
                    self._installed = True
            self._depth += 1
            return opened

    def leave(self) -> None:
        """Leave the epoch; the last census to leave ends it."""
        with self._lock:
            if self._depth == 0:
                return
            self._depth -= 1
            if self._depth == 0:
                self._end()
            elif not self._frozen:
                self._freeze_again()

    @property
    def open(self) -> bool:
        return self._depth > 0

    def new_tensors(self) -> list[torch.Tensor]:
        """Every live tensor object created since the epoch began (more when it is thawed:
        then every tensor on the heap, and the caller's entry inventory tells them apart)."""
        with self._lock:
            found = young_tensors() if self._frozen else None
            if found is None:
                found = heap_tensors()
            if self._remembered:
                ids = {id(t) for t in found}
                for ref in list(self._remembered.values()):
                    tensor = ref()
                    if tensor is not None and id(tensor) not in ids:
                        found.append(tensor)
                    del tensor
            return found

    def collect_new(self) -> int:
        """``gc.collect()`` over the objects created since the epoch began (all of them when
        the epoch is thawed): frees the block's reference cycles at the cost of the block's
        objects. The hook does not thaw for this one."""
        with self._lock:
            self._own_collection = True
            # The hook ignores this collection: out of gc.callbacks meanwhile, the collector
            # calls no Python (nor builds its info dicts) when no other callback is installed.
            hooked = self._installed and self._on_gc in gc.callbacks
            if hooked:
                gc.callbacks.remove(self._on_gc)
            try:
                return gc.collect()
            finally:
                if hooked:
                    gc.callbacks.append(self._on_gc)
                self._own_collection = False

    @contextmanager
    def thawed(self) -> Iterator[None]:
        """The whole heap visible (a holder search, a full collection), then frozen again if
        a census still needs the epoch. Remembers the epoch's tensors first."""
        with self.lazily_thawed() as thaw:
            thaw()
            yield

    @property
    def frozen(self) -> bool:
        """True while the objects older than the epoch are out of the collector's sight."""
        return self._frozen

    @contextmanager
    def lazily_thawed(self) -> Iterator[Callable[[], None]]:
        """Like :meth:`thawed`, but the heap stays frozen until the caller calls the function it
        is given: a holder search scans the block's young objects cheaply first, and pays for
        the whole heap only when an older object must hold what it walks."""
        with self._lock:
            thawed = False

            def thaw() -> None:
                nonlocal thawed
                if self._frozen:
                    self._thaw()
                    thawed = True

            try:
                yield thaw
            finally:
                if thawed and self._depth > 0 and not self._frozen:
                    self._freeze_again()

    # -- internals --------------------------------------------------------------------------
    def _thaw(self) -> None:
        if not self._frozen:
            return
        for tensor in heap_tensors():
            try:
                self._remembered.setdefault(id(tensor), weakref.ref(tensor))
            except TypeError:
                pass
        self._frozen = False
        gc.unfreeze()

    def _freeze_again(self) -> None:
        # Everything alive now joins the permanent generation: what the epoch's censuses need
        # of it is remembered (see _thaw), the rest is older than every open census.
        self._remembered = {k: r for k, r in self._remembered.items() if r() is not None}
        gc.freeze()
        self._frozen = True

    def _end(self) -> None:
        if self._frozen:
            gc.unfreeze()
        self._frozen = False
        self._remembered = {}
        if self._installed and self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        self._installed = False

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        # An exception leaving a gc callback is only reported as unraisable: a Ctrl-C that lands
        # here (a signal handler runs at any bytecode) is kept for the session's exit to raise.
        # Only full collections matter: the younger ones never reach old objects.
        try:
            if self._own_collection or info.get("generation") != 2:
                return
            if phase == "start" and self._frozen and self._depth > 0:
                self._thaw()
                self._thawed_by_callback = True
            elif phase == "stop" and self._thawed_by_callback:
                self._thawed_by_callback = False
                if self._depth > 0 and not self._frozen:
                    self._freeze_again()
        except (KeyboardInterrupt, SystemExit) as error:
            defer_interrupt(error)


EPOCH = HeapEpoch()
"""The one epoch of the process."""
