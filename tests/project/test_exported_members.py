"""Each public name is written once, in its package's ``_LAZY`` map (see vramguard._lazy).

Type checkers and IDEs cannot read the map, so each ``__init__`` shows them the same names in an
``if TYPE_CHECKING:`` block (the imports and ``__all__``). That block is generated from the map:
this test fails when a name is in one and not the other, and prints the block to paste.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

import vramguard

PACKAGE = Path(vramguard.__file__).parent
LAZY_PACKAGES = sorted(
    ".".join(("vramguard", *path.parent.relative_to(PACKAGE).parts))
    for path in PACKAGE.rglob("__init__.py")
    if "_LAZY = " in path.read_text(encoding="utf-8")
)


def _kind(name: str) -> int:
    """ruff's order of imported names: CONSTANTS, then Classes, then the rest."""
    if name.isupper() or (name.upper() == name and "_" in name):
        return 0
    return 1 if name[:1].isupper() else 2


def type_checking_block(names: Mapping[str, str], own: Sequence[str] = ()) -> str:
    """The ``if typing.TYPE_CHECKING:`` block for a package whose ``_LAZY`` is ``names``."""
    by_module: dict[str, list[str]] = {}
    for name, module in names.items():
        by_module.setdefault(module, []).append(name)
    lines = ["if typing.TYPE_CHECKING:  # generated from _LAZY: tests/project/test_exported_members.py"]
    for module in sorted(by_module, key=str.lower):
        imported = sorted(by_module[module], key=lambda n: (_kind(n), n.lower()))
        line = f"    from {module} import {', '.join(imported)}"
        if len(line) <= 120:
            lines.append(line)
        else:
            lines += [f"    from {module} import (", *(f"        {n}," for n in imported), "    )"]
    exported = sorted([*names, *own], key=lambda n: (_kind(n.strip("_")), n))
    lines += ["", "    __all__ = [", *(f'        "{n}",' for n in exported), "    ]"]
    return "\n".join(lines) + "\n"


def _source(package: str) -> ast.Module:
    return ast.parse((PACKAGE.parent / package.replace(".", "/") / "__init__.py").read_text(encoding="utf-8"))


def _is_type_checking(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")


def _written(package: str) -> tuple[dict[str, str], set[tuple[str, str]], set[str]]:
    """The package's ``_LAZY`` map, its ``TYPE_CHECKING`` imports (name, module) and ``__all__``."""
    tree = _source(package)
    lazy: dict[str, str] = {}
    imports: set[tuple[str, str]] = set()
    listed: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "_LAZY":
            lazy = ast.literal_eval(node.value)
        if _is_type_checking(node):
            assert isinstance(node, ast.If)
            for statement in node.body:
                if isinstance(statement, ast.ImportFrom) and statement.module:
                    imports |= {(alias.asname or alias.name, statement.module) for alias in statement.names}
                if isinstance(statement, ast.Assign) and ast.unparse(statement.targets[0]) == "__all__":
                    listed = set(ast.literal_eval(statement.value))
    return lazy, imports, listed


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_the_type_checking_block_is_the_map(package: str) -> None:
    lazy, imports, listed = _written(package)
    module = importlib.import_module(package)
    own = sorted(set(module.__all__) - set(lazy))
    block = type_checking_block(lazy, own)
    hint = f"{package.replace('.', '/')}/__init__.py: the TYPE_CHECKING block should read\n{block}"
    assert lazy, f"{package}: no _LAZY map"
    assert imports == set(lazy.items()), hint
    assert listed == set(module.__all__), hint
    assert all(name.startswith("__") for name in own), own  # only dunders such as __version__ beside the map


def test_the_packages_with_public_names_all_use_the_map() -> None:
    exported = sorted(
        ".".join(("vramguard", *path.parent.relative_to(PACKAGE).parts))
        for path in PACKAGE.rglob("__init__.py")
        if "__all__" in path.read_text(encoding="utf-8")
    )
    assert exported == LAZY_PACKAGES


def test_the_printed_block_is_what_the_check_reads() -> None:
    """The block the failure message prints passes the check: pasting it fixes the failure."""
    lazy = {"parse_size": "vramguard.core._sizes", "ParkError": "vramguard.core._errors", "RULES": "vramguard.lint"}
    block = ast.parse(type_checking_block(lazy, ["__version__"])).body[0]
    assert _is_type_checking(block)
    assert isinstance(block, ast.If)
    imports = {(a.name, s.module) for s in block.body if isinstance(s, ast.ImportFrom) for a in s.names}
    listed = next(ast.literal_eval(s.value) for s in block.body if isinstance(s, ast.Assign))
    assert imports == set(lazy.items())
    assert listed == ["RULES", "ParkError", "__version__", "parse_size"]
