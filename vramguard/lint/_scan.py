"""Syntactic facts about a scope's statements that the flow walk and the rules look up."""

from __future__ import annotations

import ast
import re

from vramguard.lint._facts import callee, is_drop_value, moves_to_cpu, source_name
from vramguard.lint._rules import CACHE_CALLS

_HARMLESS_CALLS = frozenset(
    {"collect", "synchronize", "print", "debug", "info", "warning", "warn", "log", "reset_peak_memory_stats"}
)
_DEVICE_NAMES = frozenset({"device", "type", "device_type"})
_AVAILABLE = re.compile(r"^(is_\w*available|device_count)$")
_NESTED = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


def source_text(node: ast.AST) -> str:
    return ast.unparse(node)


def calls_in(nodes: list[ast.expr | None]) -> list[ast.Call]:
    """The calls in expressions, in evaluation order (roughly: source order), not inside lambdas."""
    found: list[ast.Call] = []
    stack: list[ast.AST] = [n for n in nodes if n is not None]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Lambda):
            continue
        if isinstance(node, ast.Call):
            found.append(node)
        stack.extend(ast.iter_child_nodes(node))
    # Arguments are evaluated before the call they are passed to: inner calls first.
    found.sort(key=lambda c: (c.end_lineno or 0, c.end_col_offset or 0))
    return found


def is_release_step(stmt: ast.stmt) -> bool:
    if isinstance(stmt, (ast.Delete, ast.Pass)):
        return True
    if isinstance(stmt, ast.Assign):
        return is_drop_value(stmt.value)
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        name = callee(stmt.value)
        return name in CACHE_CALLS or name in _HARMLESS_CALLS
    return False


def is_device_guard(test: ast.expr) -> bool:
    """``torch.cuda.is_available()``, ``x.device.type == "cuda"``: a test that is false where no device cache exists."""
    for node in ast.walk(test):
        if isinstance(node, ast.Call) and _AVAILABLE.search(callee(node) or "") is not None:
            return True
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(source_name(o) in _DEVICE_NAMES for o in operands):
                return True
    return False


def is_none(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def offloaded_receiver(stmt: ast.stmt) -> ast.expr | None:
    """``m`` in a statement ``m.to("cpu")``, ``m.cpu()`` or ``m.offload()`` (a module or hook moved in place)."""
    if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)):
        return None
    call = stmt.value
    if isinstance(call.func, ast.Attribute) and (moves_to_cpu(call) or call.func.attr == "offload"):
        return call.func.value
    return None


def is_reference(arg: ast.expr) -> bool:
    if isinstance(arg, ast.Starred):
        arg = arg.value
    return isinstance(arg, (ast.Name, ast.Attribute, ast.Subscript))


def last_positions(body: list[ast.stmt]) -> dict[str, tuple[int, int]]:
    """Each name's last occurrence in a function; names a nested scope uses count as used forever."""
    last: dict[str, tuple[int, int]] = {}
    forever = (1 << 30, 0)
    stack: list[tuple[ast.AST, bool]] = [(s, False) for s in body]
    while stack:
        node, nested = stack.pop()
        if isinstance(node, ast.Name):
            position = forever if nested else (node.lineno, node.col_offset)
            if position > last.get(node.id, (0, 0)):
                last[node.id] = position
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in {"locals", "vars"}:
            last["\0locals"] = forever
        stack.extend((child, nested or isinstance(node, _NESTED)) for child in ast.iter_child_nodes(node))
    if "\0locals" in last:
        return dict.fromkeys(last, forever)
    return last


_STORING_METHODS = frozenset({"append", "extend", "insert", "add", "put", "update", "setdefault", "appendleft"})


def escaped_names(body: list[ast.stmt]) -> frozenset[str]:
    """Locals that something else also holds: assigned to an attribute or item, or put in a container."""
    found: set[str] = set()
    for stmt in body:
        for node in ast.walk(stmt):
            values: list[ast.expr] = []
            if isinstance(node, ast.Assign) and any(
                isinstance(t, (ast.Attribute, ast.Subscript)) for t in node.targets
            ):
                values = [node.value]
            elif isinstance(node, ast.Call) and callee(node) in _STORING_METHODS:
                values = list(node.args)
            for value in values:
                found.update(_held_names(value))
    return frozenset(found)


def _held_names(value: ast.expr) -> set[str]:
    """The names whose objects a stored value keeps: itself, a view or item of it, in a literal container.

    Not the arguments of a call: ``self.frames = decode(latents)`` stores what decode returned.
    """
    if isinstance(value, ast.Name):
        return {value.id}
    if isinstance(value, (ast.Attribute, ast.Subscript, ast.Starred)):
        return _held_names(value.value)
    if isinstance(value, (ast.Tuple, ast.List, ast.Set)):
        return set().union(*(_held_names(e) for e in value.elts))
    if isinstance(value, ast.Dict):
        return set().union(*(_held_names(v) for v in value.values))
    return set()
