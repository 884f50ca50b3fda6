"""Importing vramguard's modules from several threads at first use never deadlocks.

Python locks a submodule before it imports the parent package, so a package ``__init__`` that
imports its own children deadlocks against a thread importing one of them directly. Every
vramguard package ``__init__`` is lazy (PEP 562); each trial is a fresh interpreter.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

_SCRIPT = textwrap.dedent(
    """
    import importlib, threading
    names = [
        "vramguard.report.json", "vramguard.core._session", "vramguard.census", "vramguard.report.plot",
        "vramguard.core._records", "vramguard.probes", "vramguard.report.text", "vramguard.core._lifecycle",
        "vramguard.core._errors", "vramguard.lint", "vramguard.resilience", "vramguard.distributed",
    ]
    barrier = threading.Barrier(len(names))
    errors = []
    def load(name):
        barrier.wait()
        try:
            importlib.import_module(name)
        except BaseException as error:
            errors.append(f"{name}: {type(error).__name__}: {error}")
    threads = [threading.Thread(target=load, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("\\n".join(errors) or "ok")
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(5))
def test_first_imports_from_many_threads_do_not_deadlock(trial: int) -> None:
    done = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok", done.stdout


@pytest.mark.parametrize(
    "package", ["vramguard", "vramguard.probes", "vramguard.report", "vramguard.census", "vramguard.lint"]
)
def test_package_inits_import_no_submodule(package: str) -> None:
    code = f"import sys, {package}; print(sorted(m for m in sys.modules if m.startswith('vramguard.')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    loaded = eval(done.stdout)  # a printed list of str
    parents = {package.rsplit(".", i)[0] for i in range(package.count(".") + 1)} - {"vramguard"}
    # vramguard._lazy is the one module the inits share; it imports nothing of vramguard's.
    assert set(loaded) <= parents | {"vramguard._lazy"}, loaded
