"""Every import statement of every vramguard module, read with ``ast`` (nothing is imported):
the walk that test_import_cycles.py and test_architecture.py judge."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import vramguard

PACKAGE = Path(vramguard.__file__).parent


def _name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
"""Every module of the package by its dotted name (a package by its own, not ``.__init__``)."""


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(node: ast.AST, *, type_checking: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import under ``node``, at any depth; ``if TYPE_CHECKING:`` blocks only with ``type_checking``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test) and not type_checking:
            for other in child.orelse:
                yield from _statements(ast.Module(body=[other], type_ignores=[]), type_checking=type_checking)
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        yield from _statements(child, type_checking=type_checking)


def _lazy_map(module: str) -> dict[str, str]:
    """A package's ``_LAZY = {"name": "module", ...}``: where its ``__getattr__`` loads each name."""
    path = MODULES.get(module)
    if path is None or path.name != "__init__.py":
        return {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_LAZY" for t in node.targets):
            value = ast.literal_eval(node.value)
            assert isinstance(value, dict)
            return {str(k): str(v) for k, v in value.items()}
    return {}


def _base(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _targets(module: str, node: ast.Import | ast.ImportFrom, *, lazy: bool) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = _base(module, node)
    names = _lazy_map(base) if lazy else {}
    for alias in node.names:
        yield next((m for m in (f"{base}.{alias.name}", names.get(alias.name)) if m in MODULES), base)


def imports(*, type_checking: bool, lazy: bool) -> dict[tuple[str, str], list[int]]:
    """Every (importer, imported) pair of vramguard's modules, with the importing lines.

    ``from package import name`` is the submodule ``name`` when there is one; else, with ``lazy``,
    the module the package's ``_LAZY`` map loads ``name`` from (what runs), or the package itself
    (what the code names). ``type_checking``: count the imports under ``if TYPE_CHECKING:`` too."""
    found: dict[tuple[str, str], list[int]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in _statements(tree, type_checking=type_checking):
            for target in _targets(module, node, lazy=lazy):
                if target in MODULES and target != module:
                    lines = found.setdefault((module, target), [])
                    if node.lineno not in lines:
                        lines.append(node.lineno)
    return found
