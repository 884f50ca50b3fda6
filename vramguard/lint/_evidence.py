"""What the code shows about values no known call made: a loader's other results, a container's items.

A loader returns its model first; what it returns beside it (whisperX's ``load_align_model``
returns ``(model, metadata)``, a dict of strings) is not memory unless the code treats it as a
model or tensor. A container holds device memory only where the code puts a tensor or model in it;
deleting an item of a list of text segments frees nothing on the device.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable

from vramguard.lint._facts import callee, holds_device_memory, host_name

# Methods and attributes only a module or tensor has (a dict or a list has none of them).
_MODULE_OR_TENSOR = frozenset(
    {
        "to", "cuda", "cpu", "half", "float", "bfloat16", "eval", "train", "parameters", "named_parameters",
        "buffers", "state_dict", "load_state_dict", "forward", "generate", "requires_grad_", "detach",
        "contiguous", "view", "reshape", "permute", "unsqueeze", "squeeze", "shape", "dtype", "device",
        "is_cuda", "data_ptr", "numel",
    }
)  # fmt: skip
_TORCH_ROOTS = frozenset({"torch", "F", "nn"})
# Only an nn.Module has these: a local used so is a module, and a module's .to() returns the module itself.
_MODULE_ONLY = frozenset(
    {"eval", "train", "parameters", "named_parameters", "modules", "named_modules", "state_dict", "requires_grad_"}
)
_MOVES = frozenset({"to", "cuda", "half", "float", "bfloat16", "eval", "train", "requires_grad_"})
_STORING = frozenset({"append", "insert", "add", "setdefault", "appendleft", "extend"})


def _root(node: ast.expr) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def used_as_memory(nodes: Iterable[ast.AST]) -> frozenset[str]:
    """Names the code calls, moves, uses as a module or tensor, or passes to torch.

    A name for something without weights (``tokenizer``, :func:`~vramguard.lint._facts.host_name`)
    is callable too: for it, only the other uses count.
    """
    found: set[str] = set()
    for top in nodes:
        for node in ast.walk(top):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                if node.attr in _MODULE_OR_TENSOR:
                    found.add(node.value.id)
            elif isinstance(node, ast.Call):
                if isinstance(node.func, ast.Name) and not host_name(node.func.id):
                    found.add(node.func.id)  # called: a model (a plain function is never a loader's second result)
                elif _root(node.func) in _TORCH_ROOTS:  # torch.cat((a, b)), F.relu(x): not generator=g
                    found.update(_names(node.args))
    return frozenset(found)


def _names(args: Iterable[ast.expr]) -> set[str]:
    found: set[str] = set()
    for arg in args:
        if isinstance(arg, ast.Starred):
            arg = arg.value
        if isinstance(arg, ast.Name):
            found.add(arg.id)
        elif isinstance(arg, (ast.Tuple, ast.List)):
            found |= _names(arg.elts)
    return found


def container_key(node: ast.expr) -> str | None:
    """``results`` for a local, ``.models`` for ``self.models`` (any object's attribute of that name)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f".{node.attr}"
    return None


def device_containers(nodes: Iterable[ast.AST]) -> frozenset[str]:
    """Containers (by :func:`container_key`) the code puts a tensor or model in.

    ``c[k] = model.to(device)``, ``c.append(torch.zeros(..., device="cuda"))``, ``c = [x.cuda()]``:
    the evidence is a value :func:`~vramguard.lint._facts.holds_device_memory` recognises by itself.
    """
    found: set[str] = set()
    for top in nodes:
        for node in ast.walk(top):
            pairs: list[tuple[ast.expr, ast.expr]] = []
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Subscript):
                        pairs.append((target.value, node.value))
                    elif isinstance(node.value, (ast.List, ast.Tuple, ast.Set, ast.Dict)):
                        pairs.append((target, node.value))
            elif isinstance(node, ast.Call) and callee(node) in _STORING and isinstance(node.func, ast.Attribute):
                pairs += [(node.func.value, arg) for arg in node.args]
            for container, value in pairs:
                key = container_key(container)
                if key is not None and _device_value(value):
                    found.add(key)
    return frozenset(found)


def _device_value(value: ast.expr) -> bool:
    if isinstance(value, ast.Dict):
        return any(v is not None and holds_device_memory(v, frozenset()) for v in value.values)
    return holds_device_memory(value, frozenset())


def aliases(body: list[ast.stmt]) -> frozenset[str]:
    """Locals bound to what another object holds: deleting them frees nothing while that object lives.

    ``transformer_module = pipeline.transformer`` (a plain attribute read), and
    ``transformer = pipeline.transformer.to(device)`` where the local is used as a module
    (``transformer.eval()``): ``Module.to()`` moves the module in place and returns it, where a
    tensor's ``.to()`` returns a copy.
    """
    attribute: set[str] = set()
    moved: set[str] = set()
    used: set[str] = set()
    other: set[str] = set()  # a name also bound to something else is no longer only an alias
    for top in body:
        for node in ast.walk(top):
            for name, bound in _bindings(node):
                value = bound
                while isinstance(value, ast.Call) and callee(value) in _MOVES and isinstance(value.func, ast.Attribute):
                    value = value.func.value
                if isinstance(value, ast.Attribute):
                    (attribute if value is bound else moved).add(name)
                else:
                    other.add(name)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.attr in _MODULE_ONLY:
                used.add(node.value.id)
    return frozenset((attribute - other) | (moved & used))


def _bindings(node: ast.AST) -> list[tuple[str, ast.expr]]:
    """The names a one-target assignment binds and the value each gets: ``a, b = x.a, x.b`` pairs them."""
    if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
        return []
    target, value = node.targets[0], node.value
    if isinstance(target, ast.Name):
        return [(target.id, value)]
    if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple) and len(target.elts) == len(value.elts):
        return [(t.id, v) for t, v in zip(target.elts, value.elts, strict=True) if isinstance(t, ast.Name)]
    return []


def parts(body: list[ast.stmt]) -> dict[str, frozenset[str]]:
    """For each local, the locals bound to its attributes: ``unet, vae = pipe.unet, pipe.vae``.

    While a part is still used, what the whole holds on the device is in use: the pipeline is not
    memory its function "no longer uses" (VG004) just because its own name is not read again.
    """
    found: dict[str, set[str]] = {}
    for top in body:
        for node in ast.walk(top):
            for name, part in _bindings(node):
                if isinstance(part, ast.Attribute) and isinstance(part.value, ast.Name):
                    found.setdefault(part.value.id, set()).add(name)
    return {whole: frozenset(names) for whole, names in found.items()}
