"""Tensors the autograd graph holds: saved for backward, and the leaves it accumulates into.

``gc.get_referrers`` finds nothing for them (only C++ holds them), so the graph of each live
output is walked instead: every node's ``_saved_*`` attributes (custom Functions:
``saved_tensors`` and tensors set on the context), ``AccumulateGrad.variable``, and
``next_functions``. Reading a saved attribute wraps the C++ tensor in a Python object;
callers compare storages, never object identity.
"""

from __future__ import annotations

from typing import Any

import torch

from vramguard.census._scan import is_a
from vramguard.core._options import MAX_GRAPH_NODES

LEAF = "the leaf accumulated by AccumulateGrad"
"""What holds a tensor that a graph accumulates into (a parameter), in :func:`graph_tensors`."""

_saved_names: dict[type, tuple[str, ...]] = {}


def _saved_attributes(node_type: type) -> tuple[str, ...]:
    names = _saved_names.get(node_type)
    if names is None:
        names = tuple(n for n in dir(node_type) if n.startswith("_saved_"))
        _saved_names[node_type] = names
    return names


def _tensors(value: Any) -> list[torch.Tensor]:
    tensor = torch.Tensor
    if issubclass(type(value), tensor):
        return [value]
    if is_a(value, (tuple, list)):
        return [v for v in value if issubclass(type(v), tensor)]
    return []


class GraphBudget:
    """How many graph nodes the census may still visit; ``exhausted`` once a walk stopped with
    nodes left to visit (the graphs not walked may save tensors no one else names)."""

    def __init__(self, nodes: int = MAX_GRAPH_NODES) -> None:
        self.nodes = nodes
        self.exhausted = False


def graph_tensors(
    output: torch.Tensor, budget: GraphBudget, seen: dict[int, Any] | None = None
) -> list[tuple[str, torch.Tensor]]:
    """(what holds it, tensor) for every tensor held by ``output``'s graph: ``saved for
    backward by MulBackward0`` or ``the leaf accumulated by AccumulateGrad``. ``seen``, shared
    between calls, visits each node once over several outputs (an activation that survives has
    its own graph, part of the loss's): the budget then goes as far as the nodes there are."""
    try:
        root = output.grad_fn
    except Exception:
        return []
    if root is None:
        return []
    if seen is None:
        seen = {}
    elif id(root) in seen:
        return []
    if budget.nodes <= 0:
        budget.exhausted = True
        return []
    found: list[tuple[str, torch.Tensor]] = []
    stack: list[Any] = [root]
    seen[id(root)] = root  # the values keep ids from being reused mid-walk
    while stack and budget.nodes > 0:
        node = stack.pop()
        budget.nodes -= 1
        name = type(node).__name__
        for attribute in _saved_attributes(type(node)):
            try:
                value = getattr(node, attribute)
            except Exception:  # freed by backward(), or not a tensor-valued attribute
                continue
            found += [(f"saved for backward by {name}", t) for t in _tensors(value)]
        if hasattr(node, "saved_tensors"):  # a custom autograd.Function's context
            try:
                found += [(f"saved for backward by {name}", t) for t in _tensors(node.saved_tensors)]
            except Exception:
                pass
            for value in getattr(node, "__dict__", {}).values():
                found += [(f"stored on the context of {name}", t) for t in _tensors(value)]
        variable = getattr(node, "variable", None) if name == "AccumulateGrad" else None
        if variable is not None and issubclass(type(variable), torch.Tensor):
            found.append((LEAF, variable))
        for entry in getattr(node, "next_functions", ()):
            following = entry[0]
            if following is not None and id(following) not in seen:
                seen[id(following)] = following
                stack.append(following)
    if stack:
        budget.exhausted = True
    return found
