"""vramguard.asr is written against vramguard's public API only, as any user's code would be."""

from __future__ import annotations

import ast
from pathlib import Path

import vramguard
import vramguard.asr

PACKAGE = Path(vramguard.asr.__file__).parent


def _sources() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text(), str(path))) for path in sorted(PACKAGE.glob("*.py"))]


def test_only_public_names_of_vramguard_are_used() -> None:
    public = {*vramguard.__all__, "_lazy"}  # _lazy: the export plumbing every package __init__ shares
    for path, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vramguard"):
                assert node.module.startswith("vramguard.asr") or (
                    node.module == "vramguard" and {a.name for a in node.names} <= public
                ), f"{path.name}:{node.lineno} imports from {node.module}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert alias.name == "vramguard" or not alias.name.startswith("vramguard"), path.name
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "vramguard":
                assert node.attr in public, f"{path.name}:{node.lineno} uses vramguard.{node.attr}"


def test_the_pipeline_never_imports_the_cli() -> None:
    for path, tree in _sources():
        names = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        names += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert not any(name and name.startswith("vramguard.cli") for name in names), path.name


def test_everything_exported_exists() -> None:
    assert all(hasattr(vramguard.asr, name) for name in vramguard.asr.__all__)
    assert len(set(vramguard.asr.__all__)) == len(vramguard.asr.__all__)
