"""The layers of ../shared/architecture.md, checked on the source: what must never import what.

Lazy imports inside functions count too. The documented exceptions: the session imports the
census lazily (the census is optional for the core), ``SessionReport.plot`` imports
``vramguard.report.plot`` lazily (a record that draws itself on request), ``GpuSession.park``
/ ``wake`` import ``vramguard.parking`` lazily (a session step delegating to the layer above), and a
distributed session's exit imports ``vramguard.distributed`` lazily (core/_distributed_exit.py);
the session imports ``vramguard.resilience`` lazily for ``hard=`` and ``isolate=``.
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
    forbidden = (*UPPER, "vramguard.report", "vramguard.census", "vramguard.parking", "vramguard.distributed")
    forbidden = (*forbidden, "vramguard.resilience")
    assert _violations(CORE, forbidden, {
        "_lifecycle.py": ("vramguard.census",),
        "_records.py": ("vramguard.report.plot",),
        "_multi_report.py": ("vramguard.report.plot",),
        "_session.py": ("vramguard.parking", "vramguard.resilience"),
        "_distributed_exit.py": ("vramguard.distributed",),
    }) == []


def test_distributed_sits_above_core_below_report_faces_and_consumer() -> None:
    # ClusterReport.plot imports vramguard.report.plot lazily, as SessionReport.plot does.
    forbidden = ("vramguard.report", "vramguard.census", *UPPER)
    assert _violations(_modules("distributed"), forbidden, {"_cluster.py": ("vramguard.report.plot",)}) == []
    # The consumer uses the public API only; the layers below never reach up into it.
    lower = [*_modules("probes"), *_modules("census"), *_modules("asr")]
    assert _violations(lower, ("vramguard.distributed",)) == []


def test_park_sits_above_core_and_census_below_report_faces_and_consumer() -> None:
    assert _violations(_modules("parking"), ("vramguard.report", *UPPER)) == []
    # The consumer parks through the public API (import vramguard), as any user's code would.
    assert _violations(_modules("asr"), ("vramguard.parking",)) == []
    lower = [*_modules("probes"), *_modules("census")]
    assert _violations(lower, ("vramguard.parking",)) == []


def test_resilience_sits_beside_the_session_below_report_faces_and_consumer() -> None:
    # The session imports it lazily (hard=, isolate=); it uses the core, probes and census only.
    assert _violations(_modules("resilience"), ("vramguard.report", "vramguard.parking", *UPPER)) == []
    lower = [*_modules("probes"), *_modules("census"), *_modules("asr")]
    assert _violations(lower, ("vramguard.resilience",)) == []


def test_the_census_returns_records_and_never_prints() -> None:
    paths = _modules("census")
    assert _violations(paths, ("vramguard.report", *UPPER)) == []
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "print"]
        assert calls == [], f"{path.name} prints"


def test_lint_sits_beside_the_census_returns_records_and_never_prints() -> None:
    # vramguard check's analysis: the census re-exports it (check_source); the CLI and report render it.
    paths = _modules("lint")
    assert _violations(paths, ("vramguard.census", "vramguard.report", "vramguard.parking", *UPPER)) == []
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "print"]
        assert calls == [], f"{path.name} prints"
    assert _violations(_modules("probes"), ("vramguard.lint",)) == []


def test_report_stays_below_the_faces() -> None:
    assert _violations(_modules("report"), UPPER) == []


@pytest.mark.parametrize("face", ["cli", "pytest_plugin.py"])
def test_faces_do_not_import_the_consumer_except_its_own_subcommand(face: str) -> None:
    paths = [p for p in _modules(face) if p.name != "asr.py"]
    assert _violations(paths, ("vramguard.asr",)) == []


def test_integrations_and_metrics_are_faces_over_the_public_layers() -> None:
    # Like the CLI and the plugin: they use the core, probes and report; nothing below them, the
    # other faces or the consumer imports them (vramguard/__init__.py's load_ipython_extension is
    # the facade delegating lazily), and they import neither the CLI, the plugin nor asr.
    faces = [*_modules("integrations"), *_modules("metrics.py")]
    assert _violations(faces, UPPER) == []
    lower = [*_modules("probes"), *_modules("core"), *_modules("census"), *_modules("report"), *_modules("asr")]
    lower += [*_modules("cli"), *_modules("pytest_plugin.py")]
    assert _violations(lower, ("vramguard.integrations", "vramguard.metrics")) == []
