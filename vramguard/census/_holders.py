"""Who holds a leaked tensor: the indexes and scans of referrers that the walk (:func:`._walk.walk`,
breadth first up to a root, bounded by counts) climbs; numpy arrays sharing a tensor's memory
come from :mod:`._arrays`.

Roots: a module's globals, a class, a local of a live frame, the session's kept objects.
Parents of an object come from indexes (live frames' locals; the ``nn.Module`` tree, whose
parameters, buffers, submodules and hooks are named without scanning; the autograd edges and
gradients the census found) or from ``gc.get_referrers``, which scans the whole heap per call
(~2.5 ms per 100k objects here for one object, plus ~0.08 ms per 100k for each extra one:
CPython compares each visited reference with every argument). So all the leaks are walked
together, level by level, one batched scan per level, and each object's referrers are fetched
once. The ``nn.Module`` index costs one ``gc.get_objects()`` pass with a set lookup per
object (~6 ms per 100k) and is built only when the walk meets a module or a parameter.

Bounds are counts, never the clock, so a busy machine and an idle one give the same answer
(:class:`SearchBounds`, set through ``gpu_session(holder_levels=, holder_width=,
holder_leaks=)``). When one is reached, the leak's holder line says which, on which object
types, and how to raise it. Every object the walk holds lives in one list, which the scans
ignore; :meth:`HolderSearch.close` drops it.
"""

from __future__ import annotations

import gc
import sys
import threading
import types
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from vramguard.census._arrays import arrays_sharing
from vramguard.census._frames import frame_locals, is_census_frame, is_optimized, other_task_frames
from vramguard.census._render import HOOK_DICTS, MEMBER_DICTS, Positions
from vramguard.census._scan import heap_modules, heap_tensors, is_a
from vramguard.core._options import SearchBounds as SearchBounds  # the census's bounds, a settings value of the core

SCAN_BATCH = 128
PASS_NODES = 4 * SCAN_BATCH
"""Above this many nodes, one pass over the heap finds their referrers (measured here: a
batched ``gc.get_referrers`` of 128 nodes cost ~78 ms on a 200k-object heap, the pass ~0.3 s)."""
_WEAK = (weakref.ref, weakref.ProxyType, weakref.CallableProxyType)


@dataclass(frozen=True)
class Holders:
    """What the walk found for one leak: readable paths, or why there are none."""

    paths: tuple[str, ...]
    kept: bool = False
    group: str | None = None
    """The holder path of the module (the outermost on the first path) or container holding it."""
    owner_kind: str | None = None
    """What the group's owner is ("KV cache, 2 layers", :data:`GRAPH`); None for a module, a
    plain container or an object's attributes."""
    rooted: bool = False
    """A path reached a global, a class or a live frame: no collection can free it."""
    foreign: bool = False
    """Every holder found is a frame of another thread or of another asyncio task of this loop
    (vramguard's own frames there included): the tensor is theirs, made while this block ran,
    not this block's leak."""


def _member_label(key: object) -> str:
    text = str(key)
    return f"[{text}]" if text.isdigit() else f".{text}"


class HolderSearch:
    """One walk for all the leaks of a census; create, :meth:`add_group`, :meth:`run`, :meth:`close`."""

    def __init__(
        self, kept: object, bounds: SearchBounds | None = None, thaw: Callable[[], None] | None = None
    ) -> None:
        self.bounds = bounds or SearchBounds()
        # Given while the heap epoch is frozen: scans see the young objects only (cheap) until
        # one finds a node that an older object must hold; then the heap is thawed for good.
        self._thaw = thaw
        self.young_scans = 0
        self.objs: list[object] = []
        self._index: dict[int, int] = {}
        self._own: set[int] = {id(self.objs), id(self._index)}
        self.kept_id = id(kept)
        self.groups: list[list[int]] = []
        self._known: dict[int, list[tuple[int, str, str]]] = {}
        self.saving: set[int] = set()  # outputs whose graph saved a tensor the walk holds
        self.positions: Positions = {}  # the walk holds the lists, so their ids stay theirs
        self._referrers: dict[int, list[tuple[int, str, str]]] = {}
        self.module_names: dict[int, str] = {}
        self._owner_dicts: dict[int, tuple[int, str]] = {}
        self._members: dict[int, list[tuple[int, str, str]]] = {}
        self._live_frames: set[int] = set()
        self.foreign: set[int] = set()  # walk indexes of other threads' and tasks' frames
        self._locals: dict[int, list[tuple[int, str]]] = {}
        self.want_modules = False
        self._modules_indexed = False
        self._grads_indexed = False
        self._arrays_indexed = False
        self.local_arrays: list[int] = []
        self.scans = 0
        self.graph_cut = False
        """Set by the census when the graph bound stopped its walk of kept outputs' graphs: a
        tensor with no Python referrer may be saved by a graph it did not walk."""

    # -- building ---------------------------------------------------------------------------
    def add(self, obj: object) -> int:
        """The walk's index of ``obj``, holding it until :meth:`close`."""
        index = self._index.get(id(obj))
        if index is None:
            index = self._index[id(obj)] = len(self.objs)
            self.objs.append(obj)
        return index

    def add_group(self, members: Sequence[int]) -> int:
        """A leak: the walk indexes of the tensors sharing its storage. Returns its number."""
        self.groups.append(list(members))
        return len(self.groups) - 1

    def add_edge(self, child: int, parent: int, kind: str, label: str) -> None:
        """A parent known without scanning (the autograd graph, a parameter's gradient)."""
        self._known.setdefault(child, []).append((parent, kind, label))
        if kind == "saved":
            self.saving.add(parent)

    def index_heap(self) -> None:
        """Module globals and live frames' locals (cheap); the ``nn.Module`` tree waits until
        the walk meets a module or a parameter (it costs a heap pass)."""
        for name, module in list(sys.modules.items()):
            namespace = getattr(module, "__dict__", None)
            if is_a(namespace, dict):
                self.module_names.setdefault(id(namespace), name)
        self._index_frames()
        if not self._modules_indexed:
            kinds = (torch.nn.Parameter, torch.nn.Module)
            self.want_modules = any(issubclass(type(o), kinds) for o in self.objs)

    def use_modules(self, modules: list[torch.nn.Module]) -> None:
        """Index the ``nn.Module`` tree from the census's own heap pass (no pass of its own)."""
        self.want_modules, self._modules_indexed = False, True
        for module in modules:
            self._index_module(module)

    def found_without_scan(self, child: int, parents: Sequence[int]) -> None:
        """Referrers of ``child`` found without a scan (the ledger walks down from the program's
        own globals first): the walk takes them as a scan's answer and never scans ``child``.
        Empty ``parents``: a live frame's local holds it (the frame index names it)."""
        found = self._referrers.setdefault(child, [])
        for parent in parents:
            if (parent, "scan", "") not in found:
                found.append((parent, "scan", ""))

    def held_by_local(self, obj: object) -> bool:
        """Whether a live frame of this thread (or a foreign one) holds ``obj`` in a local."""
        return id(obj) in self._locals

    def whole_heap(self) -> None:
        """Thaw the heap epoch (when the search was given it frozen): every object in sight."""
        if self._thaw is not None:
            thaw, self._thaw = self._thaw, None
            thaw()

    def index_modules(self) -> None:
        self.whole_heap()
        modules = heap_modules()
        self.use_modules(modules)
        del modules

    def _index_grads(self) -> None:
        """Link each gradient the walk holds to its leaf: ``.grad`` lives in the leaf's C++
        autograd metadata, so no scan finds it (the gradient of a parameter older than the
        census, which an optimizer's step read). One heap pass, when a tensor has no referrer."""
        self._grads_indexed = True
        self.whole_heap()
        parameter = torch.nn.Parameter
        for tensor in heap_tensors():
            try:
                grad = tensor.grad if tensor.requires_grad and tensor.is_leaf else None
            except Exception:  # exotic subclasses; a warning raised as an error
                continue
            if grad is not None and grad is not tensor and id(grad) in self._index:
                entry = (self.add(tensor), "module", ".grad")
                held = self._members.setdefault(id(grad), [])
                if entry not in held:
                    held.append(entry)
                if issubclass(type(tensor), parameter) and not self._modules_indexed:
                    self.want_modules = True  # name the parameter from its module next level
            del grad

    def _index_arrays(self) -> None:
        """Link each tensor the walk holds to the numpy arrays sharing its memory (see
        :mod:`._arrays`): one heap pass, only when numpy is loaded and a tensor has no referrer."""
        self._arrays_indexed = True
        tensors = {id(o): i for i, o in enumerate(self.objs) if is_a(o, torch.Tensor)}
        if not tensors:
            return

        def link(array: object, tensor: int, holder: object | None) -> None:
            index = self.add(array)
            if index not in self._referrers:
                self._referrers[index] = []
                self.add_edge(tensor, index, "numpy", "")
            if holder is not None:
                self._classify(holder, {id(array): index})

        local = [self.objs[i] for i in self.local_arrays]
        self.whole_heap()
        self.scans += 1
        arrays_sharing(tensors, local, self._own, link)

    def _index_frames(self) -> None:
        """The live frames' locals. This thread's frames are the block's side (vramguard's own
        skipped: they hold what they inspect); every other thread's frames, and the suspended
        frames of this loop's other asyncio tasks, are foreign: what they hold is theirs."""
        me = threading.get_ident()
        for thread, top in list(sys._current_frames().items()):
            frame: types.FrameType | None = top
            while frame is not None and id(frame) not in self._live_frames:
                self._live_frames.add(id(frame))
                if thread != me:
                    self._index_locals(frame, foreign=True)
                elif is_optimized(frame) and not is_census_frame(frame):
                    self._index_locals(frame, foreign=False)
                frame = frame.f_back
            del frame
        del top
        for suspended in other_task_frames():
            if is_a(suspended, types.FrameType):
                if id(suspended) not in self._live_frames:
                    self._live_frames.add(id(suspended))
                    self._index_locals(suspended, foreign=True)
            else:
                self.foreign.add(self.add(suspended))  # a coroutine: a root of its task's
            del suspended

    def _index_locals(self, frame: types.FrameType, *, foreign: bool) -> None:
        index = self.add(frame)
        if foreign:
            self.foreign.add(index)
        for name, value in frame_locals(frame):
            if gc.is_tracked(value):
                self._locals.setdefault(id(value), []).append((index, name))
            elif type(value).__name__ == "ndarray":  # untracked, but it may share a tensor's memory
                self._locals.setdefault(id(value), []).append((index, name))
                self.local_arrays.append(self.add(value))

    def _index_module(self, module: object) -> None:
        namespace = getattr(module, "__dict__", None)
        if not is_a(namespace, dict):
            return
        index = self.add(module)
        for attribute in MEMBER_DICTS:
            members = namespace.get(attribute)
            if is_a(members, dict):
                self._owner_dicts[id(members)] = (index, "module")
                for key, member in list(members.items()):
                    if member is not None:
                        self._members.setdefault(id(member), []).append((index, "module", _member_label(key)))
        for attribute, label in HOOK_DICTS.items():
            hooks = namespace.get(attribute)
            if is_a(hooks, dict) and hooks:
                self._owner_dicts[id(hooks)] = (index, label)

    def parameter_name(self, obj: object) -> str | None:
        """``encoder.layers.0.fc1.weight`` for a parameter or buffer, from the module index
        (relative to the outermost module that holds it); None when it is no module's member.
        Indexes the modules first if the walk did not (an optimizer's state keyed by parameters
        of a model older than the census)."""
        if not self._modules_indexed:
            self.index_modules()
        parts: list[str] = []
        current: object = obj
        for _ in range(64):
            members = self._members.get(id(current))
            if not members:
                break
            module, _, label = min(members, key=lambda m: self._generated(m[0]))
            parts.append(label.lstrip("."))
            current = self.objs[module]
        return ".".join(reversed(parts)).replace("[", "").replace("]", "") if parts else None

    def _generated(self, index: int) -> bool:
        """A module torch.compile made (an fx ``GraphModule`` naming the user's parameters
        ``self___param_groups_0__params___0``): the user's own module names them first."""
        return any(c.__module__.startswith("torch.fx") for c in type(self.objs[index]).__mro__[:-1])

    # -- walking ----------------------------------------------------------------------------
    def is_root(self, index: int) -> bool:
        obj = self.objs[index]
        if id(obj) in self.module_names or is_a(obj, type) or id(obj) == self.kept_id:
            return True
        if type(obj) is dict and "__builtins__" in obj and is_a(obj.get("__name__"), str):
            # The globals of code not in sys.modules (a script run with runpy, exec'd code).
            self.module_names[id(obj)] = obj["__name__"]
            return True
        return False

    def parents(self, index: int) -> list[tuple[int, str, str]]:
        obj = self.objs[index]
        found = list(self._known.get(index, ()))
        found += [(frame, "local", name) for frame, name in self._locals.get(id(obj), ())]
        members = self._members.get(id(obj))
        if members is not None:
            # A parameter, buffer or submodule: its module is the holder, no scan needed (a
            # gradient: its leaf, which the census may also have linked).
            return found + [m for m in members if m not in found]
        parents = found + self._referrers.get(index, [])
        if not parents and not self._grads_indexed and is_a(obj, torch.Tensor):
            self._index_grads()
            parents = self._members.get(id(obj), [])
        if not parents and not self._arrays_indexed and is_a(obj, torch.Tensor):
            self._index_arrays()
            parents = list(self._known.get(index, ()))
        return parents

    def needs_scan(self, index: int) -> bool:
        return index not in self._referrers and id(self.objs[index]) not in self._members

    def scan(self, nodes: list[int]) -> None:
        """Fetch the referrers of ``nodes``, one heap scan per batch (one pass over the heap for
        many nodes: ``gc.get_referrers`` costs per node and per object, the pass per object)."""
        if len(nodes) > PASS_NODES:
            self._scan_in_one_pass(nodes)
            return
        for start in range(0, len(nodes), SCAN_BATCH):
            chunk = nodes[start : start + SCAN_BATCH]
            batch = tuple(self.objs[i] for i in chunk)
            by_id = {id(o): i for o, i in zip(batch, chunk, strict=True)}
            for i in chunk:
                self._referrers[i] = []
            self._own.add(id(batch))
            found = None if self._thaw is None else self._young_referrers(batch, chunk, by_id)
            if found is None:
                self.whole_heap()
                found = gc.get_referrers(*batch)
                self.scans += 1
            self._own.discard(id(batch))
            del batch
            for referrer in found:
                self._classify(referrer, by_id)
            del found

    def _scan_in_one_pass(self, nodes: list[int]) -> None:
        self.whole_heap()
        by_id = {id(self.objs[i]): i for i in nodes}
        for i in nodes:
            self._referrers[i] = []
        everything = gc.get_objects()
        self._own.add(id(everything))
        self.scans += 1
        referents = gc.get_referents
        try:
            for referrer in everything:
                if not by_id.keys().isdisjoint(map(id, referents(referrer))):
                    self._classify(referrer, by_id)
        finally:
            self._own.discard(id(everything))
            everything.clear()

    def _young_referrers(
        self, batch: tuple[object, ...], chunk: list[int], by_id: dict[int, int]
    ) -> list[object] | None:
        """The referrers of ``batch`` among the young objects (the heap is frozen), when they
        hold every reference to each node: its reference count, less the call's argument and
        the live frames' locals (which no scan sees), equals the references they make. A
        reference from C++ or from an older object leaves a node unexplained: None, and the
        caller scans the whole heap."""
        # Less getrefcount's argument and ``batch`` (which the scan never reports: it is the
        # very argument tuple of ``gc.get_referrers(*batch)``).
        expected = {i: sys.getrefcount(self.objs[i]) - 2 - len(self._locals.get(id(self.objs[i]), ())) for i in chunk}
        counts = dict.fromkeys(chunk, 0)
        found = gc.get_referrers(*batch)
        self.young_scans += 1
        for referrer in found:
            if referrer is batch:
                continue
            for x in gc.get_referents(referrer):
                index = by_id.get(id(x))
                if index is not None:
                    counts[index] += 1
        if all(counts[i] >= expected[i] for i in chunk):
            return found
        del found
        return None

    def _classify(self, referrer: object, by_id: dict[int, int]) -> None:
        if id(referrer) in self._own or is_a(referrer, _WEAK):
            return  # the walk's own lists; a weak reference never holds anything
        if is_a(referrer, types.FrameType) and (id(referrer) in self._live_frames or is_census_frame(referrer)):
            return  # live locals come from the frame index; vramguard's own frames hold nothing
        children = [by_id[id(x)] for x in gc.get_referents(referrer) if id(x) in by_id]
        if not self._modules_indexed and issubclass(type(referrer), torch.nn.Module):
            self.want_modules = True
        owner = self._owner_dicts.get(id(referrer))
        for child in children:
            obj = self.objs[child]
            if is_a(referrer, types.FrameType) and is_a(obj, types.FrameType):
                continue  # f_back: the caller's frame does not hold its callee
            if owner is None:
                self._referrers[child].append((self.add(referrer), "scan", ""))
                continue
            module, kind = owner
            if kind == "module":
                key = next((k for k, v in list(referrer.items()) if v is obj), "?")  # type: ignore[attr-defined]
                self._referrers[child].append((module, "module", _member_label(key)))
            else:
                self._referrers[child].append((module, "hook", kind))

    def close(self) -> None:
        """Drop every object the walk held."""
        self.objs.clear()
        self._index.clear()
        self._known.clear()
        self._referrers.clear()
        self._locals.clear()
        self.foreign.clear()
        self._owner_dicts.clear()
        self._members.clear()
        self.groups.clear()
        self.positions.clear()
        self.local_arrays.clear()
