"""The layers of ../shared/architecture.md, checked on the source: what must never import what.

Lazy imports inside functions count too. The documented exceptions: the session imports the
census lazily (the census is optional for the core), ``GpuSession.park``
/ ``wake`` import ``vramguard.parking`` lazily (a session step delegating to the layer above), and a
distributed session's exit imports ``vramguard.distributed`` lazily (core/_distributed_exit.py);
the session imports ``vramguard.resilience`` lazily for ``hard=`` and ``isolate=``. A record never
imports its renderer: ``SessionReport.plot`` draws through the plotter ``vramguard.report.plot``
registers in ``core/_hooks.py``. Packages talk through their public ``__init__``: each import of
another package's private module is listed in ``PRIVATE_IMPORTS``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from import_walk import MODULES, imports

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
        "_session.py": ("vramguard.parking", "vramguard.resilience"),
        "_distributed_exit.py": ("vramguard.distributed",),
    }) == []


def test_distributed_sits_above_core_below_report_faces_and_consumer() -> None:
    # ClusterReport.plot draws through the plotter the report layer registers (core/_hooks.py).
    forbidden = ("vramguard.report", "vramguard.census", *UPPER)
    assert _violations(_modules("distributed"), forbidden) == []
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


# -- private modules across packages --------------------------------------------------------------
# A module named ``_x`` is private to the package holding it (and that package's subpackages):
# packages talk through their public ``__init__``. Each import that reaches into another package's
# private module is an exception, listed here once as "importer -> private module" (without the
# leading "vramguard."). Listed when this check was written (issue 27); a new one must be justified
# in a comment beside it, or the name published by its package's ``__init__`` and imported from there.
# A package ``__init__``'s ``if TYPE_CHECKING:`` block is its published names, not an exception.
PRIVATE_IMPORTS = (
    "vramguard -> ledger._signal",
    "_api -> core._multi",
    "_api -> core._options",
    "_api -> core._session",
    "_api -> core._sizes",
    "_api -> resilience._sessions",
    "census._allocator -> core._sizes",
    "census._allocator -> core._tensors",
    "census._autograd -> core._options",
    "census._census -> core._records",
    "census._census -> core._tensors",
    "census._cycles -> core._hooks",
    "census._cycles -> core._sizes",
    "census._epoch -> core._hooks",
    "census._holders -> core._options",
    "census._judge -> core._tensors",
    "census._order -> core._hooks",
    "census._order -> core._records",
    "census._scan -> core._tensors",
    "cli -> core._errors",
    "cli._durations -> core._errors",
    "cli._durations -> core._sizes",
    "cli._paths -> core._errors",
    "cli.check -> lint._config",
    "cli.check -> lint._files",
    "cli.check -> lint._fix",
    "cli.check -> lint._run",
    "cli.demo -> core._errors",
    "cli.demo -> core._records",
    "cli.demo -> core._release",
    "cli.demo -> core._sizes",
    "cli.demo -> report._words",
    "cli.devices -> core._errors",
    "cli.devices -> core._run",
    "cli.explain -> core._errors",
    "cli.explain -> core._sizes",
    "cli.explain -> ledger._explain",
    "cli.explain -> ledger._mark",
    "cli.explain -> ledger._records",
    "cli.explain -> ledger._remote",
    "cli.report -> core._errors",
    "cli.run -> core._errors",
    "cli.run -> core._records",
    "cli.run -> core._session",
    "cli.run -> core._sizes",
    "core._distributed_exit -> distributed._gather",
    "core._release -> probes._host",
    "distributed._cluster -> core._errors",
    "distributed._cluster -> core._hooks",
    "distributed._cluster -> core._multi_report",
    "distributed._cluster -> core._records",
    "distributed._cluster -> core._sizes",
    "distributed._gather -> core._errors",
    "distributed._gather -> core._records",
    "integrations._loop -> core._errors",
    "integrations._loop -> core._records",
    "integrations._loop -> core._session",
    "integrations._loop -> core._sizes",
    "integrations.asgi -> core._errors",
    "integrations.asgi -> core._records",
    "integrations.asgi -> core._session",
    "integrations.asgi -> core._sizes",
    "integrations.lightning -> core._errors",
    "integrations.lightning -> core._records",
    "integrations.lightning -> core._sizes",
    "integrations.notebook -> census._frames",
    "integrations.notebook -> core._errors",
    "integrations.notebook -> core._records",
    "integrations.notebook -> core._release",
    "integrations.notebook -> core._session",
    "integrations.notebook -> core._sizes",
    "integrations.notebook -> core._tensors",
    "integrations.trainer -> core._errors",
    "integrations.trainer -> core._records",
    "integrations.trainer -> core._sizes",
    "ledger._attribute -> census._autograd",
    "ledger._attribute -> census._census",
    "ledger._attribute -> census._epoch",
    "ledger._attribute -> census._holders",
    "ledger._attribute -> census._walk",
    "ledger._attribute -> census._scan",
    "ledger._attribute -> core._tensors",
    "ledger._cuda -> probes._blocks",
    "ledger._cuda -> probes._workspaces",
    "ledger._explain -> census._holders",
    "ledger._explain -> probes._device",
    "ledger._explain -> probes._host",
    "ledger._explain -> probes._nvml",
    "ledger._explain -> probes._torch",
    "ledger._explain -> probes._workspaces",
    "ledger._host -> probes._host",
    "ledger._mark -> core._errors",
    "ledger._records -> core._errors",
    "ledger._remote -> core._errors",
    "ledger._roots -> census._frames",
    "ledger._roots -> census._holders",
    "ledger._signal -> core._errors",
    "lint._config -> core._errors",
    "metrics -> core._errors",
    "metrics -> core._hooks",
    "metrics -> core._records",
    "metrics -> ledger._explain",
    "parking._holders -> census._census",
    "parking._holders -> census._epoch",
    "parking._holders -> census._holders",
    "parking._holders -> census._walk",
    "parking._holders -> census._scan",
    "parking._layout -> core._errors",
    "parking._park -> core._errors",
    "parking._park -> core._release",
    "parking._pinned -> core._errors",
    "parking._records -> core._sizes",
    "probes._device -> core._errors",
    "probes._snapshot -> core._decode",
    "probes._snapshot -> core._errors",
    "pytest_plugin -> core._errors",
    "pytest_plugin -> core._records",
    "pytest_plugin -> core._session",
    "pytest_plugin -> core._sizes",
    "report._words -> core._words",  # the device words, shared with the records' own str()
    "report._panels -> core._multi_report",
    "report._panels -> core._records",
    "report._rich -> core._errors",
    "report.compare -> core._multi_report",
    "report.compare -> core._records",
    "report.compare -> core._sizes",
    "report.json -> core._errors",
    "report.json -> core._multi_report",
    "report.json -> core._records",
    "report.ledger_plot -> core._errors",
    "report.ledger_plot -> core._sizes",
    "report.ledger_plot -> ledger._records",
    "report.ledger_text -> core._sizes",
    "report.merge -> core._errors",
    "report.merge -> core._multi_report",
    "report.merge -> core._records",
    "report.plot -> core._errors",
    "report.plot -> core._hooks",
    "report.plot -> core._multi_report",
    "report.plot -> core._records",
    "report.plot -> core._sizes",
    "report.text -> census._sites",
    "report.text -> core._multi_report",
    "report.text -> core._records",
    "report.text -> core._sizes",
    "report.text_many -> core._multi_report",
    "report.text_many -> core._records",
    "report.text_many -> core._sizes",
    "resilience._adaptive -> core._errors",
    "resilience._adaptive -> core._policy",
    "resilience._adaptive -> core._release",
    "resilience._adaptive -> core._sizes",
    "resilience._budget -> census._scan",
    "resilience._budget -> core._errors",
    "resilience._budget -> core._release",
    "resilience._budget -> core._sizes",
    "resilience._budget -> core._tensors",
    "resilience._isolate -> core._errors",
    "resilience._isolate -> core._options",
    "resilience._isolate -> core._policy",
    "resilience._isolate -> core._session",
    "resilience._isolate -> core._records",
    "resilience._sessions -> core._decorate",
    "resilience._sessions -> core._errors",
    "resilience._sessions -> core._options",
    "resilience._sessions -> core._session",
    "resilience._watch -> census._scan",
    "resilience._watch -> core._errors",
    "resilience._watch -> core._records",
    "resilience._watch -> core._sizes",
    "resilience._watch -> core._tensors",
)


def _short(module: str) -> str:
    return module.removeprefix("vramguard.")


def _private_owner(module: str) -> str | None:
    """The package a private module belongs to (``vramguard.core`` for ``vramguard.core._records``)."""
    parts = module.split(".")
    private = [i for i, part in enumerate(parts) if part.startswith("_") and not part.startswith("__")]
    return ".".join(parts[: private[0]]) if private else None


def _private_imports_across_packages() -> set[str]:
    running = imports(type_checking=False, lazy=False)
    found = set()
    for importer, imported in imports(type_checking=True, lazy=False):
        owner = _private_owner(imported)
        if owner is None or importer == owner or importer.startswith(owner + "."):
            continue
        if MODULES[importer].name == "__init__.py" and (importer, imported) not in running:
            continue  # a facade's TYPE_CHECKING mirror of the names it publishes
        found.add(f"{_short(importer)} -> {_short(imported)}")
    return found


def test_a_private_import_across_packages_is_a_listed_exception() -> None:
    found = _private_imports_across_packages()
    unlisted = sorted(found - set(PRIVATE_IMPORTS))
    listing = "\n".join(f'    "{pair}",' for pair in unlisted)
    assert unlisted == [], f"import from the package's __init__, or list and justify in PRIVATE_IMPORTS:\n{listing}"


def test_each_listed_private_import_exists_and_is_listed_once() -> None:
    # the list only shrinks: an exception that went away leaves it at once
    assert sorted(set(PRIVATE_IMPORTS) - _private_imports_across_packages()) == []
    assert len(PRIVATE_IMPORTS) == len(set(PRIVATE_IMPORTS))


def test_the_private_import_check_sees_what_it_must() -> None:
    # checks the check: a known exception, a public import, a facade's mirror and a same-package one
    found = _private_imports_across_packages()
    assert "report.text -> core._records" in found
    assert "report.text -> distributed" not in found and "report.text -> distributed._cluster" not in found
    assert "vramguard -> core._records" not in found
    assert not any(pair.startswith("report.text -> report.") for pair in found)
