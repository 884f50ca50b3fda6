"""Which object owns a leaked tensor, so that one line names it: the group of a leak.

The holder path runs from a root (a global, a local) down to the tensor. Its group is the first
object on the way, from the root, that owns what lies under it:

- an ``nn.Module`` (the outermost one: a model, not its layer);
- a named special case, where a library's type holds its tensors in a shape of its own:
  transformers' ``Cache`` classes (``DynamicCache`` etc.: "KV cache, 24 layers") and
  ``ModelOutput``; a ``torch.optim.Optimizer`` (its state and param groups);
- a dataclass instance or a named tuple (their fields are names the user wrote);
- a container indexed by position or by non-string keys (a list, tuple, set, deque, a dict
  keyed by parameters or numbers) of tensors, owners or containers: its elements come and go,
  so the container is the holder, not ``EVAL_LOSSES[41]`` — a list that grows stays one group
  from one session to the next (a list of plain objects, a Trainer's callbacks, is walked into);
- the output whose autograd graph saved the tensor: the output and its graph are one group.

Plain objects and string-keyed dicts on the way are names, not owners (``PIPE.model``,
``CACHE['k']``). With no owner on the way, the tensor's direct holder (an object with
attributes, a dict) is the group. A group's text is the owner's holder path, plus what it is in
parentheses for the special cases — no index, no count that changes between sessions, so
"warn once per holder" holds.
"""

from __future__ import annotations

import collections
import dataclasses
import sys

import torch

from vramguard.census._scan import is_a

GRAPH = "output with its autograd graph"
"""The owner kind of an output and the tensors its autograd graph saved (the census adds how
many it saved: "output with its autograd graph, 2 saved tensors")."""

_INDEXED = (list, tuple, set, frozenset, collections.deque)
COMPILE_MARKERS = ("__compiled_fn", "_orig_mod", "__resume_at_", "torch._dynamo", "torch._inductor", "_torchdynamo")
"""Text that marks a holder path through ``torch.compile``'s generated objects."""
_LIBRARY_GLOBALS = ("global torch.", "global transformers.", "global accelerate.", "global functools.")


def _has_base(obj: object, name: str, module_prefix: str) -> bool:
    return any(c.__name__ == name and c.__module__.startswith(module_prefix) for c in type(obj).__mro__)


def _layers(cache: object) -> int | None:
    try:
        layers = getattr(cache, "layers", None)
        return len(layers) if layers is not None else len(cache)  # type: ignore[arg-type]
    except Exception:
        return None


def owner_label(obj: object) -> str | None:
    """What ``obj`` is, when it is a named owner: ``"KV cache, 2 layers"``, ``"model output
    CausalLMOutputWithPast"``, ``"Adam state"``, ``"dataclass Batch"``, ``"named tuple Pair"``."""
    kind = type(obj)
    if "transformers" in sys.modules:  # named special cases of transformers' types
        if _has_base(obj, "Cache", "transformers"):
            layers = _layers(obj)
            return "KV cache" if layers is None else f"KV cache, {layers} layer{'s' * (layers != 1)}"
        if _has_base(obj, "ModelOutput", "transformers"):
            return f"model output {kind.__name__}"
    if issubclass(kind, torch.optim.Optimizer):
        return f"{kind.__name__} state"
    if issubclass(kind, tuple) and is_a(getattr(kind, "_fields", None), tuple):
        return f"named tuple {kind.__name__}"
    if dataclasses.is_dataclass(obj) and not is_a(obj, type):
        return f"dataclass {kind.__name__}"
    return None


def is_module(obj: object) -> bool:
    return issubclass(type(obj), torch.nn.Module)


def is_indexed(obj: object, before: object) -> bool:
    """A container whose elements are positions or non-string keys (never an instance's
    ``__dict__``, whose keys are attribute names)."""
    if is_a(obj, _INDEXED):
        return True
    if type(obj) is not dict and not is_a(obj, (collections.OrderedDict, collections.defaultdict)):
        return False
    if before is not None and getattr(before, "__dict__", None) is obj:
        return False
    try:
        return any(not is_a(key, str) for key in list(obj))
    except Exception:
        return False


def is_element(obj: object) -> bool:
    """What makes a container the owner when it holds it: a tensor, a named owner, a module or
    another container (a list of losses, of model outputs, of ``(loss, logits)`` tuples). A
    plain object in a list (a Trainer's callbacks) is walked into: its attributes name the owner."""
    return (
        issubclass(type(obj), torch.Tensor)
        or is_a(obj, (dict, *_INDEXED))
        or is_module(obj)
        or owner_label(obj) is not None
    )


def holds_directly(obj: object, before: object) -> bool:
    """A direct holder that can be a group: a container, or an instance's ``__dict__``."""
    return is_a(obj, (dict, *_INDEXED))


def via_compile(path: str) -> bool:
    """True for a holder path through ``torch.compile``'s generated or private objects."""
    return any(marker in path for marker in COMPILE_MARKERS)


def path_rank(path: str, library_root: bool) -> tuple[int, int]:
    """Sort key of a holder path: the user's own names first (a path through generated objects
    or rooted in a library's globals or frames after), then globals, classes, locals, the rest."""
    foreign = via_compile(path) or library_root or path.startswith(_LIBRARY_GLOBALS)
    for rank, prefix in enumerate(("global ", "class ", "local ")):
        if path.startswith(prefix):
            return int(foreign), rank
    return int(foreign), 3
