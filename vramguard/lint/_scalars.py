"""Which attributes of a module never hold device memory: those it only ever gives scalars.

"Scalar" here means a number, string, bool (or a literal container of them): ``self.peak =
torch.cuda.max_memory_allocated()``, ``self.stage = self.derive_stage()`` where that method returns
strings, ``self.strategy = strategy`` where the parameter is annotated with a class of the module
that itself holds only scalars. A greatest fixed point over attributes, functions and classes:
start from all of them, remove what is given (or returns) something not scalar, until stable.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass, field

from vramguard.lint._facts import is_drop_value, is_scalar

_Function = ast.FunctionDef | ast.AsyncFunctionDef
_BUILTIN_SCALARS = frozenset({"int", "float", "str", "bool", "bytes", "None", "complex"})
_WRAPPERS = frozenset({"Optional", "Union", "Literal", "Final", "ClassVar"})
# Modules whose types hold no tensor: an attribute annotated with one of them is host memory.
_HOST_MODULES = frozenset(
    {"threading", "asyncio", "queue", "multiprocessing", "subprocess", "logging", "pathlib", "socket", "datetime", "re"}
)
_ORDERING = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn)


@dataclass
class _Facts:
    attrs: dict[str, list[tuple[ast.expr | None, _Function | None]]] = field(default_factory=dict)
    returns: dict[str, list[tuple[ast.expr | None, _Function]]] = field(default_factory=dict)
    classes: dict[str, list[tuple[ast.expr | None, _Function]]] = field(default_factory=dict)
    locals: dict[int, dict[str, list[ast.expr | None]]] = field(default_factory=dict)
    params: dict[int, set[str]] = field(default_factory=dict)
    annotations: dict[str, list[ast.expr]] = field(default_factory=dict)
    attr_annotations: dict[str, list[ast.expr]] = field(default_factory=dict)


def _note(facts: _Facts, target: ast.expr, value: ast.expr | None, fn: _Function | None, cls: str | None) -> None:
    if isinstance(target, (ast.Tuple, ast.List)):
        elts = value.elts if isinstance(value, (ast.Tuple, ast.List)) else None
        for i, sub in enumerate(target.elts):
            _note(facts, sub, elts[i] if elts is not None and len(elts) == len(target.elts) else None, fn, cls)
    elif isinstance(target, ast.Attribute):
        facts.attrs.setdefault(target.attr, []).append((value, fn))
        if cls is not None and fn is not None and isinstance(target.value, ast.Name) and target.value.id == "self":
            facts.classes.setdefault(cls, []).append((value, fn))
    elif isinstance(target, ast.Name) and fn is not None:
        facts.locals[id(fn)].setdefault(target.id, []).append(value)
    elif isinstance(target, ast.Starred):
        _note(facts, target.value, None, fn, cls)


def _gather(tree: ast.Module) -> _Facts:
    facts = _Facts()

    def visit(node: ast.AST, fn: _Function | None, cls: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                facts.classes.setdefault(child.name, [])
                if any(not (isinstance(b, ast.Name) and b.id == "object") for b in child.bases):
                    facts.classes[child.name].append((None, child))  # type: ignore[arg-type]  # inherits state
                for stmt in child.body:  # a class-level default is the attribute's first value
                    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                        facts.attr_annotations.setdefault(stmt.target.id, []).append(stmt.annotation)
                    if (
                        isinstance(stmt, ast.Assign)
                        and len(stmt.targets) == 1
                        and isinstance(stmt.targets[0], ast.Name)
                    ):
                        facts.attrs.setdefault(stmt.targets[0].id, []).append((stmt.value, None))
                visit(child, None, child.name)
                continue
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                facts.locals[id(child)] = {}
                args = child.args
                every = [*args.posonlyargs, *args.args, *args.kwonlyargs, *(a for a in (args.vararg, args.kwarg) if a)]
                facts.params[id(child)] = {a.arg for a in every}
                for a in every:
                    if a.annotation is not None:
                        facts.annotations.setdefault(a.arg, []).append(a.annotation)
                facts.returns.setdefault(child.name, [])
                visit(child, child, cls if fn is None else None)
                continue
            if fn is not None and isinstance(child, ast.Return):
                facts.returns[fn.name].append((child.value, fn))
            elif isinstance(child, ast.Assign):
                for target in child.targets:
                    _note(facts, target, child.value, fn, cls)
            if isinstance(child, ast.AnnAssign) and isinstance(child.target, ast.Attribute):
                facts.attr_annotations.setdefault(child.target.attr, []).append(child.annotation)
            if isinstance(child, (ast.AnnAssign, ast.AugAssign)) and child.value is not None:
                _note(facts, child.target, child.value, fn, cls)
            elif isinstance(child, (ast.For, ast.AsyncFor, ast.comprehension)):
                _note(facts, child.target, None, fn, cls)
            elif isinstance(child, (ast.With, ast.AsyncWith)):
                for item in child.items:
                    if item.optional_vars is not None:
                        _note(facts, item.optional_vars, None, fn, cls)
            visit(child, fn, cls)

    visit(tree, None, None)
    return facts


def _annotation_is_scalar(node: ast.expr, classes: set[str]) -> bool:
    if isinstance(node, ast.Constant):
        if node.value is None:
            return True
        if isinstance(node.value, str):
            try:
                return _annotation_is_scalar(ast.parse(node.value, mode="eval").body, classes)
            except SyntaxError:
                return False
        return False
    if isinstance(node, ast.Name):
        return node.id in _BUILTIN_SCALARS or node.id in classes
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _annotation_is_scalar(node.left, classes) and _annotation_is_scalar(node.right, classes)
    if isinstance(node, ast.Subscript) and isinstance(node.value, (ast.Name, ast.Attribute)):
        wrapper = node.value.id if isinstance(node.value, ast.Name) else node.value.attr
        inner = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        return wrapper in _WRAPPERS and all(_annotation_is_scalar(e, classes) for e in inner)
    return False


def _host_type(node: ast.expr, classes: set[str]) -> bool:
    """An annotation naming only scalars or standard-library types (``Optional[threading.Event]``)."""
    if _annotation_is_scalar(node, classes):
        return True
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:
            return _host_type(ast.parse(node.value, mode="eval").body, classes)
        except SyntaxError:
            return False
    if isinstance(node, ast.Attribute):
        root: ast.expr = node
        while isinstance(root, ast.Attribute):
            root = root.value
        return isinstance(root, ast.Name) and root.id in _HOST_MODULES
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _host_type(node.left, classes) and _host_type(node.right, classes)
    if isinstance(node, ast.Subscript) and isinstance(node.value, (ast.Name, ast.Attribute)):
        inner = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        return _host_type(node.value, classes) or (
            (node.value.id if isinstance(node.value, ast.Name) else node.value.attr) in _WRAPPERS
            and all(_host_type(e, classes) for e in inner)
        )
    return False


def _compared_to_literals(tree: ast.Module) -> set[str]:
    """Attributes compared with a string or number (``args.resume_from_checkpoint != "latest"``).

    An argparse namespace's options are assigned where the module cannot see it; comparing one with
    a literal shows what it holds.
    """
    found: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare) or not all(isinstance(op, _ORDERING) for op in node.ops):
            continue
        operands = [node.left, *node.comparators]
        if any(_literal(o) for o in operands):
            found.update(o.attr for o in operands if isinstance(o, ast.Attribute))
    return found


def _literal(node: ast.expr) -> bool:
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return bool(node.elts) and all(_literal(e) for e in node.elts)
    return isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float)) and node.value is not None


def scalar_attributes(tree: ast.Module) -> frozenset[str]:
    """Attribute names the module only ever assigns scalars (``None`` aside: it is how memory is dropped).

    Also those never assigned anything but ``None`` that the module compares with a string or number,
    and those annotated only with scalars or standard-library types (``Optional[threading.Event]``).
    """
    facts = _gather(tree)
    given = {a for a, vals in facts.attrs.items() if any(v is not None and not is_drop_value(v) for v, _ in vals)}
    attrs = set(given)
    funcs = {f for f, vals in facts.returns.items() if any(v is not None and not is_drop_value(v) for v, _ in vals)}
    classes = {c for c, vals in facts.classes.items() if all(v is not None for v, _ in vals)}

    def scalar(value: ast.expr | None, fn: _Function | None, seen: frozenset[tuple[int, str]]) -> bool:
        if value is None:
            return False
        typed = {p for p, anns in facts.annotations.items() if all(_annotation_is_scalar(a, classes) for a in anns)}
        name: Callable[[str], bool] = lambda n: _name(n, fn, seen, typed)  # noqa: E731
        return is_scalar(value, attrs, funcs | classes, name)

    def _name(n: str, fn: _Function | None, seen: frozenset[tuple[int, str]], typed: set[str]) -> bool:
        if fn is None or (id(fn), n) in seen:
            return False
        values = facts.locals[id(fn)].get(n, [])
        if n in facts.params[id(fn)] and n not in typed:
            return False
        if not values and n not in facts.params[id(fn)]:
            return False
        return all(v is not None and scalar(v, fn, seen | {(id(fn), n)}) for v in values)

    changed = True
    while changed:
        changed = False
        for pool, table in ((attrs, facts.attrs), (funcs, facts.returns), (classes, facts.classes)):
            for key in list(pool):
                if not all((v is None and pool is funcs) or scalar(v, fn, frozenset()) for v, fn in table[key]):
                    pool.discard(key)
                    changed = True
    annotated = {a for a, anns in facts.attr_annotations.items() if all(_host_type(t, classes) for t in anns)}
    return frozenset(attrs | (_compared_to_literals(tree) - given) | annotated)
