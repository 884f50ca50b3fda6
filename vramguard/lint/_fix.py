"""``--fix``: move the drops that follow a cache call before it, in the simple cases only.

Simple means: the call is a statement, followed at once in the same block by drop statements
(``del x``, ``x = None``, ``self.x = []``) and ``gc.collect()`` calls only, so nothing between the
call and the drops reads what they drop; the statements sit one per line or all on one line with
no comment between them. The rewrite is kept only if the file still parses, has the same
statements (as a multiset), and the finding is gone without a new one; anything else is left alone.
"""

from __future__ import annotations

import ast
from collections import Counter
from dataclasses import dataclass

from vramguard.lint._check import check_source
from vramguard.lint._facts import callee, is_drop_value
from vramguard.lint._rules import CACHE_CALLS, RELEASING_CALLS

_BLOCKS = ("body", "orelse", "finalbody")


@dataclass(frozen=True)
class FixResult:
    """A source after ``--fix``, and how many cache calls were moved after their drops."""

    source: str
    fixed: int


def _call_name(stmt: ast.stmt) -> str | None:
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        return callee(stmt.value)
    return None


def _is_drop(stmt: ast.stmt) -> bool:
    if isinstance(stmt, ast.Delete):
        return all(isinstance(t, (ast.Name, ast.Attribute, ast.Subscript)) for t in stmt.targets)
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and is_drop_value(stmt.value):
        target = stmt.targets[0]
        none = isinstance(stmt.value, ast.Constant)
        return isinstance(target, (ast.Attribute, ast.Subscript)) or (isinstance(target, ast.Name) and none)
    return False


def _blocks(tree: ast.AST) -> list[list[ast.stmt]]:
    found = []
    for node in ast.walk(tree):
        for name in _BLOCKS:
            block = getattr(node, name, None)
            if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                found.append(block)
        if isinstance(node, ast.ExceptHandler):
            found.append(node.body)
    return found


def _sites(tree: ast.AST) -> list[tuple[list[ast.stmt], int, int, int]]:
    """(block, first, call, last): ``gc.collect()`` lines, the cache call, then drops and collects."""
    sites = []
    for block in _blocks(tree):
        for i, stmt in enumerate(block):
            name = _call_name(stmt)
            if name not in CACHE_CALLS or (name in RELEASING_CALLS and stmt.value.args):  # type: ignore[attr-defined]
                continue
            first = i
            while first > 0 and _call_name(block[first - 1]) == "collect":
                first -= 1
            last = i
            while last + 1 < len(block) and (_is_drop(block[last + 1]) or _call_name(block[last + 1]) == "collect"):
                last += 1
            if any(_is_drop(s) for s in block[i + 1 : last + 1]):
                sites.append((block, first, i, last))
    return sites


def _offset(lines: list[str], line: int, col: int) -> int:
    return sum(len(x) for x in lines[: line - 1]) + len(lines[line - 1].encode()[:col].decode())


def _rewrite(source: str, statements: list[ast.stmt], order: list[ast.stmt]) -> str | None:
    lines = source.splitlines(keepends=True)
    segments = {id(s): ast.get_source_segment(source, s) for s in statements}
    if any(seg is None or s.lineno != s.end_lineno for s, seg in zip(statements, segments.values(), strict=True)):
        return None
    start = _offset(lines, statements[0].lineno, statements[0].col_offset)
    end = _offset(lines, statements[-1].end_lineno or 0, statements[-1].end_col_offset or 0)
    between = source[start:end]
    for s in statements:
        between = between.replace(segments[id(s)] or "", "", 1)
    if between.strip(" \t\r\n;") or "#" in between:
        return None  # a comment or something else sits between the statements
    if len({s.lineno for s in statements}) == 1:
        joined = "; ".join(segments[id(s)] or "" for s in order)
    elif len({s.lineno for s in statements}) == len(statements):
        indent = lines[statements[0].lineno - 1][: statements[0].col_offset]
        joined = ("\n" + indent).join(segments[id(s)] or "" for s in order)
    else:
        return None
    return source[:start] + joined + source[end:]


def _statements(source: str) -> Counter[str]:
    """The simple statements of a source (a compound one's dump would include its body's order)."""
    return Counter(
        ast.dump(n) for n in ast.walk(ast.parse(source)) if isinstance(n, ast.stmt) and not hasattr(n, "body")
    )


def _safe(before: str, after: str) -> bool:
    try:
        same = _statements(before) == _statements(after)
    except SyntaxError:
        return False
    old = Counter(f.code for f in check_source(before, noqa=False))
    new = Counter(f.code for f in check_source(after, noqa=False))
    return same and new["VG001"] < old["VG001"] and all(new[c] <= old[c] for c in new)


def fix_source(source: str) -> FixResult:
    """The source with the simple VG001 cases reordered (drops, then ``gc.collect()``, then the call)."""
    fixed = 0
    tried: set[tuple[int, int]] = set()
    while True:
        tree = ast.parse(source)
        for block, first, call, last in _sites(tree):
            key = (block[call].lineno, block[call].col_offset)
            if key in tried:
                continue
            tried.add(key)
            run = block[first : last + 1]
            drops = [s for s in run if _is_drop(s)]
            collects = [s for s in run if _call_name(s) == "collect"]
            candidate = _rewrite(source, run, [*drops, *collects, block[call]])
            if candidate is not None and _safe(source, candidate):
                source, fixed = candidate, fixed + 1
                tried.clear()  # lines moved: positions are recomputed from the new source
                break
        else:
            return FixResult(source, fixed)
