"""The test tree mirrors the package, and the fast/slow split stays meaningful: every entry of
tests/slow.txt names a folder, module or test that exists, and ``pytest -m "not slow"`` leaves
out exactly what the list names."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.conftest import SLOW_LIST, is_listed, slow_entries

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]
# Folders of tests/ that are not a vramguard package: the repository's own checks, and the
# reduced forms of benchmarks/ (a folder beside the package).
NOT_PACKAGES = {"project": ROOT, "benchmarks": ROOT / "benchmarks"}


def test_every_test_folder_mirrors_a_package() -> None:
    package = ROOT / "vramguard"
    for folder in sorted(p for p in (ROOT / "tests").iterdir() if p.is_dir() and any(p.glob("test_*.py"))):
        home = NOT_PACKAGES.get(folder.name, package / folder.name)
        assert home.is_dir(), f"tests/{folder.name} mirrors no package: {home.relative_to(ROOT)} does not exist"


DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _defines(module: Path, names: list[str]) -> bool:
    """Whether ``Class::test`` or ``test`` (parameters dropped) is defined at the module's top level."""
    body: list[ast.stmt] = ast.parse(module.read_text(encoding="utf-8")).body
    for name in (n.split("[", 1)[0] for n in names):
        found = [s for s in body if isinstance(s, DEFINITIONS) and s.name == name]
        if not found:
            return False
        body = found[0].body
    return True


def test_every_slow_entry_names_a_folder_module_or_test_that_exists() -> None:
    entries = slow_entries()
    assert entries, f"{SLOW_LIST} lists nothing: pytest -m 'not slow' would run everything"
    assert len(entries) == len(set(entries)), "an entry is listed twice"
    for entry in entries:
        path, *names = entry.split("::")
        assert path.startswith("tests/") and (ROOT / path).exists(), f"slow.txt: {entry}: no such path"
        if names:
            assert _defines(ROOT / path, names), f"slow.txt: {entry}: no such test in {path}"


@pytest.mark.parametrize(
    ("nodeid", "listed"),
    [
        ("tests/benchmarks/test_x.py::test_a", True),  # under a listed folder
        ("tests/core/test_session.py::test_a[cpu]", True),  # a listed module's test, with parameters
        ("tests/core/test_session_reads.py::test_a", False),  # a sibling sharing the name's start
        ("tests/cli/test_cli_plugin.py::test_one[cuda]", True),  # a listed test's parameter
        ("tests/cli/test_cli_plugin.py::test_one_more", False),
        ("tests/benchmarks_other/test_x.py::test_a", False),
    ],
)
def test_an_entry_lists_what_lies_under_it_never_a_string_prefix(nodeid: str, listed: bool) -> None:
    entries = ["tests/benchmarks", "tests/core/test_session.py", "tests/cli/test_cli_plugin.py::test_one"]
    assert is_listed(nodeid, entries) is listed


def test_not_slow_deselects_exactly_the_listed_tests(pytester: pytest.Pytester) -> None:
    # The real conftest over a small tree: the mark must be in place before ``-m`` deselects.
    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text(encoding="utf-8"))
    (pytester.path / "slow.txt").write_text("# a comment\nslow/\ntest_mixed.py::test_slow  # 30 s\n")
    pytester.makepyfile(test_mixed="def test_slow():\n    pass\n\ndef test_fast():\n    pass\n")
    (pytester.path / "slow").mkdir()
    (pytester.path / "slow" / "test_all.py").write_text("def test_one():\n    pass\n")
    fast = pytester.runpytest("-m", "not slow", "-p", "no:cacheprovider")
    fast.assert_outcomes(passed=1, deselected=2)
    fast.stdout.fnmatch_lines(["*1 passed, 2 deselected*"])
    everything = pytester.runpytest("-p", "no:cacheprovider")
    everything.assert_outcomes(passed=3)


def test_ci_and_the_plain_command_run_the_slow_tests_too() -> None:
    # The split is for the inner loop only: nothing in the default options or CI's command deselects.
    found = re.search(r"^addopts\s*=\s*(.*)$", (ROOT / "pyproject.toml").read_text(encoding="utf-8"), re.MULTILINE)
    assert found, "pyproject.toml: no addopts"
    addopts = found.group(1)
    assert "-m" not in addopts.split() and "slow" not in addopts
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert ".venv/bin/python -m pytest" in ci and "not slow" not in ci
