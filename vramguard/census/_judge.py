"""Judging what survived a block: which storages are new memory, and who holds them.

A surviving storage that an older tensor also uses (a new view of an old weight) is no new
memory: one pass over every tensor of the heap finds those, skipped when the storages' use counts
already explain every user. Activations a surviving output's autograd graph saved are survivors
too, reached through the graph; gradients are linked to their parameters. Then one holder search
walks them all (:mod:`vramguard.census._holders`).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch

from vramguard.census._autograd import GraphBudget, graph_tensors
from vramguard.census._holders import Holders, HolderSearch, SearchBounds
from vramguard.census._scan import StorageWeakRef, describe, heap_index, heap_tensors, on_device
from vramguard.census._walk import walk
from vramguard.core._tensors import tensor_key

Survivor = tuple[int, int, "weakref.ref[torch.Tensor]", StorageWeakRef]
"""(storage key, bytes, the tensor, its storage) of a tensor the block created that was alive at its end."""


class Judge:
    """One look at the survivors of a block on ``device``; :meth:`run` once."""

    def __init__(
        self, device: torch.device, bounds: SearchBounds, entry: dict[int, StorageWeakRef], in_epoch: bool
    ) -> None:
        self.device = device
        self.bounds = bounds
        self._entry = entry
        self._in_epoch = in_epoch
        self.bytes: dict[int, int] = {}
        """Storage key -> its bytes (a sparse tensor's values and indices together)."""
        self.graph_only: dict[int, str] = {}
        """Storage key -> the description of a storage met only in an autograd graph (an
        output saved by its own node, ``exp``'s result: its Python object is gone, no survivor
        names it)."""
        self._old: set[int] = set()

    def run(self, survivors: list[Survivor], kept: list[object], thaw: Callable[[], None] | None) -> dict[int, Holders]:
        """The holders of every surviving storage that is new memory, by storage key."""
        search = HolderSearch(kept, self.bounds, thaw)
        try:
            groups = self._groups(search, survivors)
            if not groups:
                return {}
            order = sorted(groups, key=lambda k: -self.bytes.get(k, 0))
            numbers = {key: search.add_group(groups[key]) for key in order}
            search.index_heap()
            found = walk(search)
            return {key: found[numbers[key]] for key in order}
        finally:
            search.close()

    def _groups(self, search: HolderSearch, survivors: list[Survivor]) -> dict[int, list[int]]:
        """Storage key -> the walk indexes of the surviving tensors using it."""
        groups: dict[int, list[int]] = {}
        for key, nbytes, ref, _ in survivors:
            tensor = ref()
            if tensor is not None:
                groups.setdefault(key, []).append(search.add(tensor))
                self.bytes[key] = max(self.bytes.get(key, 0), nbytes)  # a sparse tensor's, not its values'

            del tensor
        if not groups:
            return groups
        if self._in_epoch:
            self._drop_shared(search, groups)
        budget = GraphBudget(self.bounds.graph_nodes)
        hard = set(self._entry)
        visited: dict[int, Any] = {}
        # The latest outputs first: a loss's graph names its activations through the loss, not
        # through an activation that also survived (each node is walked once).
        outputs = [i for members in list(groups.values()) for i in members]
        outputs.sort(key=lambda i: _latest_first(search.objs[i]))
        for out_index in outputs:
            for holder, saved in graph_tensors(search.objs[out_index], budget, visited):  # type: ignore[arg-type]
                self._add_saved(search, groups, hard, out_index, holder, saved)
        visited.clear()
        search.graph_cut = budget.exhausted
        for key, members in list(groups.items()):
            for index in list(members):
                member = search.objs[index]
                if issubclass(type(member), torch.nn.Parameter):
                    grad = grad_of(member)
                    grad_key = None if grad is None else tensor_key(grad)
                    if grad_key is not None and grad_key[0] in groups and grad_key[0] != key:
                        for g in groups[grad_key[0]]:
                            search.add_edge(g, index, "module", ".grad")
                    del grad
        return groups

    def _drop_shared(self, search: HolderSearch, groups: dict[int, list[int]]) -> None:
        """Survivors whose storage an older tensor also uses are no new memory (a new view of
        an old weight). The heap is thawed: every tensor is visible."""
        new = {id(search.objs[i]) for members in groups.values() for i in members}
        parameter = torch.nn.Parameter
        with_parameters = any(issubclass(type(search.objs[i]), parameter) for g in groups.values() for i in g)
        if not with_parameters and _explained(search, groups):
            return  # every user of every surviving storage is a new tensor: no older one to find
        search.whole_heap()  # the pass below needs every tensor, the older ones too
        if with_parameters:
            # The walk will need the module tree: one pass gives the tensors and the modules.
            tensors, modules = heap_index()
            search.use_modules(modules)
            del modules
        else:
            tensors = heap_tensors()
        for tensor in tensors:
            if id(tensor) in new or not on_device(tensor, self.device):
                continue
            key = tensor_key(tensor)
            if key is not None:
                self._old.add(key[0])
                groups.pop(key[0], None)
        # The list holds every tensor, the survivors too: gone before the walk scans for referrers.
        tensors.clear()
        del tensors

    def _add_saved(
        self,
        search: HolderSearch,
        groups: dict[int, list[int]],
        hard: set[int],
        out_index: int,
        holder: str,
        saved: torch.Tensor,
    ) -> None:
        if not on_device(saved, self.device):
            return
        key = tensor_key(saved)
        if key is None or key[0] in hard:
            return
        out_key = tensor_key(search.objs[out_index])  # type: ignore[arg-type]
        if out_key is not None and out_key[0] == key[0]:
            return  # the output saved itself (exp, sigmoid): no new holder
        members = groups.get(key[0])
        if members is None:
            if not self._new_storage(key[0]):
                return
            members = groups[key[0]] = []
            self.bytes[key[0]] = key[1]
            if not _wrapped_number(saved):
                self.graph_only[key[0]] = describe(saved)
        objs = search.objs
        same = next((i for i in members if objs[i] is saved), None)
        if same is None:
            same = search.add(saved)
            members.append(same)
        search.add_edge(same, out_index, "saved", holder)

    def _new_storage(self, key: int) -> bool:
        """A storage met only in an autograd graph: new unless it was alive at entry. In the
        epoch, graphs of new outputs save activations the block made, and the weights (leaves,
        reached as old tensors) were noted by :meth:`_drop_shared`'s pass before this one."""
        return key not in self._entry and key not in self._old


def _explained(search: HolderSearch, groups: dict[int, list[int]]) -> bool:
    """True when each surviving storage is used by exactly the new tensors found for it: its
    use count (one per tensor, plus the storage object read here) says no older tensor and no
    C++ holder shares it, and no survivor has an autograd graph (which may save older tensors),
    so the pass over every tensor of the heap can be skipped."""
    use_count = getattr(torch._C, "_storage_Use_Count", None)
    if use_count is None:
        return False
    for members in groups.values():
        if any(getattr(search.objs[i], "grad_fn", None) is not None for i in members):
            return False  # its graph may save older tensors (weights): the pass tells them apart
        tensor: Any = search.objs[members[0]]
        if tensor.layout != torch.strided:
            return False
        storage = tensor.untyped_storage()
        if int(use_count(storage._cdata)) != len(members) + 1:
            return False
        del storage, tensor
    return True


_SCALAR_DTYPES = (torch.int64, torch.float64, torch.complex128, torch.bool)


def _wrapped_number(tensor: torch.Tensor) -> bool:
    """A Python number an op wrapped as a 0-dim CPU tensor (``x * 2`` saves the 2:
    ``wrapped_scalar_tensor`` in aten/src/ATen/ScalarOps.h). Python cannot read the wrapped
    flag; a 0-dim CPU tensor of a Python number's dtype that only a graph holds is taken for one
    (a few bytes, never the block's memory problem)."""
    try:
        return tensor.dim() == 0 and tensor.device.type == "cpu" and tensor.dtype in _SCALAR_DTYPES
    except Exception:
        return False


def _latest_first(tensor: Any) -> int:
    """Sort key: the outputs of the latest ops first (a loss before the activations its graph
    saved), by their graph node's sequence number; tensors without a graph last."""
    try:
        node = tensor.grad_fn
        return -int(node._sequence_nr()) if node is not None else 1
    except Exception:
        return 1


def grad_of(parameter: Any) -> torch.Tensor | None:
    try:
        grad = parameter.grad
    except Exception:
        return None
    return grad if issubclass(type(grad), torch.Tensor) else None
