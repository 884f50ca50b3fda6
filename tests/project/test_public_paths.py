"""Every public class and function is named by the path users import it from: ``__module__`` is
the package (``vramguard.gpu_session``, not ``vramguard.core._session.gpu_session``), so reprs,
tracebacks, ``help()``, pickles and the API docs show it."""

from __future__ import annotations

import importlib
import pickle
import subprocess
import sys
import types

import pytest

import vramguard

PACKAGES = ["vramguard", "vramguard.census", "vramguard.distributed", "vramguard.ledger", "vramguard.lint",
            "vramguard.parking", "vramguard.probes", "vramguard.report", "vramguard.resilience"]  # fmt: skip


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_class_and_function_names_a_public_module(package: str) -> None:
    module = importlib.import_module(package)
    for name in module.__all__:
        value = getattr(module, name)
        if not isinstance(value, (type, types.FunctionType)) or not value.__module__.startswith("vramguard"):
            continue
        # a name exported at two levels (vramguard.probes.MemorySnapshot, vramguard.MemorySnapshot)
        # carries the shorter; one re-exported from a sibling (census's Finding) keeps the sibling's
        assert "._" not in value.__module__, f"{package}.{name}: {value.__module__}"
        assert getattr(importlib.import_module(value.__module__), value.__qualname__) is value


def test_the_top_level_names_are_vramguards() -> None:
    assert vramguard.gpu_session.__module__ == "vramguard"
    assert vramguard.SessionReport.__module__ == "vramguard"
    assert vramguard.isolated.__module__ == "vramguard"
    assert repr(vramguard.SessionReport) == "<class 'vramguard.SessionReport'>"


def test_a_published_error_pickles_by_its_public_path() -> None:
    error = vramguard.SessionError("entered twice")
    data = pickle.dumps(error)
    assert b"vramguard.core" not in data
    assert type(pickle.loads(data)) is vramguard.SessionError


def test_a_traceback_names_the_public_error() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import vramguard; vramguard.parse_size('twelve parsecs')"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("vramguard.InvalidArgument: "), last


def test_publishing_loads_no_optional_dependency() -> None:
    code = ("import sys, vramguard; vramguard.gpu_session; vramguard.SessionReport; "
            "print(sorted(m for m in ('rich', 'matplotlib', 'transformers', 'prometheus_client') "
            "if m in sys.modules))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"
