"""Findings in one Python source: the flow walk of every scope, turned into one finding per problem."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable

from vramguard.lint._evidence import aliases, parts
from vramguard.lint._flow import Walker
from vramguard.lint._rules import CACHE_CALLS, RULES, Finding
from vramguard.lint._scalars import scalar_attributes
from vramguard.lint._scan import escaped_names, last_positions
from vramguard.lint._state import Context, Drop, Scope, State

_NOQA = re.compile(r"#\s*noqa(?::\s*(?P<codes>[A-Z]+[0-9]+(?:\s*,\s*[A-Z]+[0-9]+)*))?", re.IGNORECASE)
_TRIGGERS = tuple(CACHE_CALLS)


def might_have_findings(source: str) -> bool:
    """Every rule needs a cache call; a source without one of those names is not parsed at all."""
    return any(word in source for word in _TRIGGERS)


def _scopes(tree: ast.Module) -> Iterable[tuple[ast.AST, list[ast.stmt]]]:
    yield tree, tree.body
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node, node.body


def _walk(
    node: ast.AST,
    body: list[ast.stmt],
    scalar_attrs: frozenset[str],
    lines: Callable[[int], int] | None,
    module: ast.Module,
) -> Scope:
    is_function = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    scope = Scope(is_function, scalar_attrs, lines=lines, body=body, module=module)
    state = State()
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        args = node.args
        every = [*args.posonlyargs, *args.args, *args.kwonlyargs, *(a for a in (args.vararg, args.kwarg) if a)]
        state.kinds = dict.fromkeys((a.arg for a in every), "other")
        scope.later_names = last_positions(body)
        scope.escaped = escaped_names(body) | aliases(body)
        scope.parts = parts(body)
        scope.vararg = args.vararg.arg if args.vararg else None
        docstring = body[:1] and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
        scope.single_statement = len(body) - (1 if docstring else 0) == 1
    walker = Walker(scope)
    end = walker.block(body, state, Context())
    if end is not None:
        walker.exit(end)
    return scope


def _at(path: str, scope: Scope, call: int, code: str, message: str) -> Finding:
    node, _ = scope.calls[call]
    col = node.col_offset
    if node.lineno <= len(scope.source_lines):  # ast counts UTF-8 bytes; editors and SARIF count characters
        col = len(scope.source_lines[node.lineno - 1].encode()[:col].decode(errors="ignore"))
    return Finding(path, scope.file_line(node.lineno), col + 1, code, message)


def _others(scope: Scope, calls: list[int]) -> str:
    if len(calls) < 2:
        return ""
    lines = ", ".join(str(scope.file_line(scope.calls[c][0].lineno)) for c in calls[1:])
    return f" (the same drop follows the calls on line {lines} too)"


def _vg001(path: str, scope: Scope) -> list[Finding]:
    by_drop: dict[tuple[int, int, str], tuple[Drop, set[int]]] = {}
    for drop in scope.drops:
        key = (drop.line, drop.col, drop.target)
        by_drop.setdefault(key, (drop, set()))[1].add(drop.call)
    by_calls: dict[tuple[int, ...], list[Drop]] = {}
    for drop, called in by_drop.values():
        by_calls.setdefault(tuple(sorted(called)), []).append(drop)
    findings = []
    for calls, drops in by_calls.items():
        drops.sort(key=lambda d: (d.line, d.col, d.target))  # `a = b = None`: one place, two drops
        name = scope.calls[calls[0]][1]
        listed = " and ".join(f"`{d.text}` (line {scope.file_line(d.line)})" for d in drops)
        verb = "drops a reference" if len(drops) == 1 else "drop references"
        message = (
            f"{name}() runs before {listed} {verb}: the memory freed afterwards stays cached; drop references "
            f"first, then gc.collect(), then {name}(){_others(scope, list(calls))}"
        )
        findings.append(_at(path, scope, calls[0], "VG001", message))
    return findings


def _vg002(path: str, scope: Scope, call: int) -> Finding:
    node, name = scope.calls[call]
    names = ", ".join(ast.unparse(a) for a in node.args)
    message = (
        f"{name}({names}) empties the cache while the caller's names still hold the objects; write "
        f"`del {names.lstrip('*')}`, then gc.collect(), then empty_cache()"
    )
    return _at(path, scope, call, "VG002", message)


def _vg003(path: str, scope: Scope, call: int) -> Finding:
    name = scope.calls[call][1]
    message = (
        f"{name}() runs inside an except block: the exception's traceback still holds the frames of the "
        "failed attempt and their tensors until the block ends; set a flag and call it after the block"
    )
    return _at(path, scope, call, "VG003", message)


def _vg004(path: str, scope: Scope, local: str, calls: list[int]) -> Finding:
    name = scope.calls[calls[0]][1]
    message = (
        f"{name}() runs while the local `{local}` still holds a tensor or model it no longer uses: that "
        f"memory is freed into the cache when the function returns; `del {local}` before {name}()"
        f"{_others(scope, calls)}"
    )
    return _at(path, scope, calls[0], "VG004", message)


def _vg005(path: str, scope: Scope, call: int) -> Finding:
    name = scope.calls[call][1]
    message = (
        f"{name}() runs on every iteration of the loop: it is slow (it synchronizes and returns every free "
        "block) and the allocator would reuse those blocks in the next iteration; call it after the loop"
    )
    return _at(path, scope, call, "VG005", message)


def _scope_findings(path: str, scope: Scope) -> list[Finding]:
    findings = _vg001(path, scope)
    findings += [_vg002(path, scope, c) for c in scope.releasing]
    findings += [_vg003(path, scope, c) for c in scope.in_except]
    findings += [_vg004(path, scope, local, calls) for local, calls in scope.alive_locals.items()]
    findings += [_vg005(path, scope, c) for c in scope.every_iteration]
    return findings


def suppressed(line: str, code: str) -> bool:
    """``# noqa`` (every rule) or ``# noqa: VG001, VG004`` on the finding's line."""
    match = _NOQA.search(line)
    if match is None:
        return False
    codes = match.group("codes")
    return codes is None or code.upper() in {c.strip().upper() for c in codes.split(",")}


def check_tree(
    tree: ast.Module, path: str, lines: Callable[[int], int] | None = None, source: str = ""
) -> list[Finding]:
    """Every rule's findings in a parsed module, unsorted and unfiltered; ``lines`` maps to the file's lines."""
    scalar_attrs = scalar_attributes(tree)
    source_lines = tuple(re.split(r"\r\n|\r|\n", source))  # ast's line breaks, not str.splitlines()
    findings: list[Finding] = []
    for node, body in _scopes(tree):
        scope = _walk(node, body, scalar_attrs, lines, tree)
        scope.source_lines = source_lines
        findings += _scope_findings(path, scope)
    return findings


def check_source(
    source: str,
    path: str = "<string>",
    select: Iterable[str] | None = None,
    *,
    noqa: bool = True,
    lines: Callable[[int], int] | None = None,
) -> tuple[Finding, ...]:
    """The findings in one file's source, in line order. Raises SyntaxError if it has a cache call and cannot parse.

    ``select`` keeps only those rule codes (all of ``RULES`` by default); ``# noqa`` comments on a
    finding's line suppress it unless ``noqa=False``. ``lines`` maps the source's lines to a file's
    (a Markdown block, a notebook's cells); the noqa comments are then looked up by the caller.
    """
    codes = set(RULES) if select is None else set(select)
    if not might_have_findings(source):
        return ()  # not even parsed: parsing is most of the time a check takes
    tree = ast.parse(source, filename=path)
    text = source.splitlines()
    findings = {
        f
        for f in check_tree(tree, path, lines, source)
        if f.code in codes
        and not (noqa and lines is None and f.line <= len(text) and suppressed(text[f.line - 1], f.code))
    }
    return tuple(sorted(findings, key=lambda f: (f.line, f.col, f.code, f.message)))
