"""The layers of ../shared/architecture.md, checked on the source: what must never import what.

Lazy imports inside functions count too. The two documented exceptions: the session imports the
census lazily (the census is optional for the core), and ``SessionReport.plot`` imports
``vramguard.report.plot`` lazily (a record that draws itself on request).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import vramguard

PACKAGE = Path(vramguard.__file__).parent


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found += [(node.lineno, node.module)] + [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
    return found


def _modules(*parts: str) -> list[Path]:
    base = PACKAGE.joinpath(*parts)
    return sorted(base.rglob("*.py")) if base.is_dir() else [base]


# The package's __init__ is the public facade over every layer (it re-exports plot_reports), not core.
CORE = _modules("core")
UPPER = ("vramguard.cli", "vramguard.pytest_plugin", "vramguard.asr")


def _violations(
    paths: list[Path], forbidden: tuple[str, ...], allowed: dict[str, tuple[str, ...]] | None = None
) -> list[str]:
    allowed = allowed or {}
    bad = []
    for path in paths:
        for line, name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden) and not any(
                name.startswith(a) for a in allowed.get(path.name, ())
            ):
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}")
    return bad


def test_probes_know_nothing_of_sessions_or_anything_above() -> None:
    # Errors and sizes sit under everything; the rest of the core is above the probes.
    core = tuple(f"vramguard.core.{m}" for m in ("_session", "_release", "_records", "_sampler", "_history"))
    above = (*core, "vramguard.census", "vramguard.report")
    forbidden = (*above, *UPPER)
    assert _violations(_modules("probes"), forbidden) == []


def test_the_core_never_imports_the_faces_or_the_consumer() -> None:
    assert _violations(CORE, (*UPPER, "vramguard.report", "vramguard.census"), {
        "_lifecycle.py": ("vramguard.census",),
        "_records.py": ("vramguard.report.plot",),
    }) == []


def test_the_census_returns_records_and_never_prints() -> None:
    paths = _modules("census")
    assert _violations(paths, ("vramguard.report", *UPPER)) == []
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "print"]
        assert calls == [], f"{path.name} prints"


def test_report_stays_below_the_faces() -> None:
    assert _violations(_modules("report"), UPPER) == []


@pytest.mark.parametrize("face", ["cli", "pytest_plugin.py"])
def test_faces_do_not_import_the_consumer_except_its_own_subcommand(face: str) -> None:
    paths = [p for p in _modules(face) if p.name != "asr.py"]
    assert _violations(paths, ("vramguard.asr",)) == []
