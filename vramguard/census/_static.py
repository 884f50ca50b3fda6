"""Release order in code: ``empty_cache()`` before the references are dropped, found with ``ast``.

Rules (``docs/rules.md`` has a wrong and a right example of each):

VG001
    An ``empty_cache()`` call (``torch.cuda``/``torch.mps``/``torch.xpu.empty_cache()``,
    ``vramguard.empty_cache()``, accelerate's ``clear_device_cache()``) followed later in the
    same function by ``del x``, ``del self.x``, ``self.x = None``, or ``x = None`` for a name
    bound before the call, with no other ``empty_cache()`` after the drop. The memory those
    drop is freed after the cache was emptied, so it goes straight back into the cache.
VG002
    accelerate's ``release_memory(a, b)``: it empties the cache while the caller's names still
    hold the objects; even ``a, b = release_memory(a, b)`` rebinds them only after it returned.

"Later" means later in the source, in the same function body (nested functions and classes
are their own scopes); branches are not told apart.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

RULES: dict[str, str] = {
    "VG001": "empty_cache() before the references are dropped",
    "VG002": "release_memory() empties the cache while the caller's names still hold the objects",
}
_EMPTY_CACHE = frozenset({"empty_cache", "clear_device_cache"})
_RELEASE_MEMORY = "release_memory"
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


@dataclass(frozen=True)
class Finding:
    """One rule violation at a place in a file; ``col`` counts from 1."""

    path: str
    line: int
    col: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col} {self.code} {self.message}"


def _callee(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return None


def _is_none(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def _walk_scope(body: list[ast.stmt]) -> list[ast.AST]:
    """Every node of a scope's body, in source order, not entering nested scopes."""
    found: list[ast.AST] = []
    stack: list[ast.AST] = list(reversed(body))
    while stack:
        node = stack.pop()
        found.append(node)
        if isinstance(node, _SCOPES):
            # A nested def's decorators and defaults run here; its body does not.
            outer: list[ast.AST] = list(getattr(node, "decorator_list", []))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                outer += [d for d in node.args.defaults + node.args.kw_defaults if d is not None]
            stack.extend(reversed(outer))
            continue
        stack.extend(reversed(list(ast.iter_child_nodes(node))))
    found.sort(key=lambda n: (getattr(n, "lineno", 0), getattr(n, "col_offset", 0)))
    return found


def _parameters(scope: ast.AST) -> list[str]:
    if not isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return []
    args = scope.args
    every = args.posonlyargs + args.args + args.kwonlyargs + [a for a in (args.vararg, args.kwarg) if a]
    return [a.arg for a in every]


def _drops(node: ast.AST, bound_before: frozenset[str]) -> list[str]:
    """The reference drops a statement makes, as source text."""
    if isinstance(node, ast.Delete):
        return [f"del {ast.unparse(t)}" for t in node.targets]
    value: ast.expr | None = None
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        value, targets = node.value, node.targets
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        value, targets = node.value, [node.target]
    if not _is_none(value):
        return []
    drops = []
    for target in targets:
        if isinstance(target, (ast.Attribute, ast.Subscript)) or (
            isinstance(target, ast.Name) and target.id in bound_before
        ):
            drops.append(f"{ast.unparse(target)} = None")
    return drops


def _vg001(path: str, call: ast.Call, callee: str, drop: str, line: int) -> Finding:
    return Finding(
        path,
        call.lineno,
        call.col_offset + 1,
        "VG001",
        f"{callee}() runs before `{drop}` (line {line}) drops a reference: the memory freed "
        f"afterwards stays cached; drop references first, then gc.collect(), then {callee}()",
    )


def _check_scope(scope: ast.AST, body: list[ast.stmt], path: str) -> list[Finding]:
    findings: list[Finding] = []
    pending: list[tuple[ast.Call, str, frozenset[str]]] = []  # empty_cache calls, nothing dropped yet
    dropped: list[Finding] = []  # calls followed by a drop, unless a later empty_cache() follows it
    bound = set(_parameters(scope))
    for node in _walk_scope(body):
        if isinstance(node, ast.stmt) and pending:
            still: list[tuple[ast.Call, str, frozenset[str]]] = []
            for call, callee, bound_then in pending:
                later = (node.lineno, node.col_offset) > (call.lineno, call.col_offset)
                drops = _drops(node, bound_then) if later else []
                if drops:
                    dropped.append(_vg001(path, call, callee, drops[0], node.lineno))
                else:
                    still.append((call, callee, bound_then))
            pending = still
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            bound.update(node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
        elif isinstance(node, ast.Call):
            name = _callee(node)
            if name in _EMPTY_CACHE:
                dropped.clear()  # this call returns what the earlier drops freed
                pending.append((node, ast.unparse(node.func), frozenset(bound)))
            elif name == _RELEASE_MEMORY and any(isinstance(a, (ast.Name, ast.Attribute)) for a in node.args):
                names = ", ".join(ast.unparse(a) for a in node.args)
                findings.append(
                    Finding(
                        path,
                        node.lineno,
                        node.col_offset + 1,
                        "VG002",
                        f"release_memory({names}) empties the cache while the caller's names still "
                        f"hold the objects; write `del {names}`, then gc.collect(), then empty_cache()",
                    )
                )
    return findings + dropped


def check_source(source: str, path: str = "<string>") -> tuple[Finding, ...]:
    """The findings in one file's source, in line order. Raises SyntaxError if it cannot parse."""
    tree = ast.parse(source, filename=path)
    findings: list[Finding] = []
    findings += _check_scope(tree, tree.body, path)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            findings += _check_scope(node, node.body, path)
    return tuple(sorted(findings, key=lambda f: (f.line, f.col, f.code)))
