"""The public API is what __all__ says, and every name in it exists (after httpx's test)."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

import vramguard

PACKAGES = sorted(
    ".".join(("vramguard", *path.parent.relative_to(Path(vramguard.__file__).parent).parts))
    for path in Path(vramguard.__file__).parent.rglob("__init__.py")
    if "__all__" in path.read_text(encoding="utf-8")
)
NOT_EXPORTED = {"vramguard": {"load_ipython_extension"}}
"""Public-looking names left out of ``__all__`` on purpose: the hook ``%load_ext vramguard`` looks up."""


@pytest.mark.parametrize("package", PACKAGES)
def test_all_is_exactly_the_public_names(package: str) -> None:
    """Every name in ``__all__`` exists, and every public name the package holds (its own, and
    each lazy one once loaded) is in ``__all__``: no helper imported into an ``__init__`` leaks."""
    module = importlib.import_module(package)
    assert len(set(module.__all__)) == len(module.__all__)
    for name in module.__all__:
        assert hasattr(module, name), f"{package}.{name}"
    public = {
        name
        for name, value in vars(module).items()
        # not a submodule, nor ``from __future__ import annotations``'s feature flag
        if not (name.startswith("_") or isinstance(value, types.ModuleType) or type(value).__module__ == "__future__")
    }
    assert public - NOT_EXPORTED.get(package, set()) == {n for n in module.__all__ if not n.startswith("_")}
    assert dir(module) == sorted(module.__all__)


def test_the_public_packages_are_all_checked() -> None:
    assert {"vramguard", "vramguard.asr", "vramguard.parking", "vramguard.probes"} <= set(PACKAGES)


def test_leak_records_are_public() -> None:
    from vramguard.core import _records

    for name in ("Leak", "LeakGroup", "Leaks", "SessionReport"):
        assert name in vramguard.__all__
        assert getattr(vramguard, name) is getattr(_records, name)
    assert issubclass(vramguard.Leaks, tuple)
    assert list(vramguard.LeakGroup.__dataclass_fields__) == ["holder", "nbytes", "count", "leaks", "owner_kind"]
    assert list(vramguard.Leak.__dataclass_fields__)[-2:] == ["group", "owner_kind"]


def test_the_ledger_is_public() -> None:
    from vramguard.ledger import _explain, _mark, _records, _signal

    for name, module in (
        ("explain", _explain),
        ("mark", _mark),
        ("MemoryLedger", _records),
        ("LedgerLine", _records),
        ("install_explain_signal", _signal),
    ):
        assert name in vramguard.__all__
        assert getattr(vramguard, name) is getattr(module, name)
    assert list(vramguard.MemoryLedger.__dataclass_fields__)[:4] == ["device", "total_bytes", "total_source", "lines"]


def test_exception_tree() -> None:
    for error in (
        vramguard.InvalidArgument,
        vramguard.ProbeUnavailable,
        vramguard.LeakError,
        vramguard.PeakExceeded,
        vramguard.MissingDependency,
        vramguard.SessionError,
        vramguard.ReleaseOrderError,
        vramguard.ReportFormatError,
        vramguard.ClusterError,
    ):
        assert issubclass(error, vramguard.VramGuardError)
    assert issubclass(vramguard.InvalidArgument, ValueError)
    assert issubclass(vramguard.ReportFormatError, ValueError)
    assert issubclass(vramguard.LeakWarning, Warning)
    assert issubclass(vramguard.ReleaseOrderWarning, Warning)


def test_import_needs_only_torch_and_psutil() -> None:
    """With every optional dependency made unimportable, vramguard imports and measures."""
    code = textwrap.dedent(
        """
        import sys
        blocked = ("pynvml", "rich", "matplotlib", "transformers", "pyannote", "soundfile", "accelerate")
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in blocked:
                    raise ImportError(f"blocked {name}")
                return None
        sys.meta_path.insert(0, Block())
        import vramguard
        snap = vramguard.snapshot("cpu")
        assert snap.allocated_bytes is not None
        with vramguard.gpu_session("x", device="cpu") as s:
            pass
        assert s.report is not None
        assert not any(m.split(".")[0] in blocked for m in sys.modules)
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_publishing_a_function_keeps_its_overloads() -> None:
    """``typing.get_overloads`` finds a function's variants by its module: they move with it."""
    from typing import get_overloads

    from vramguard._lazy import publish

    namespace: dict[str, object] = {"__name__": "somepackage._impl"}
    exec(  # a function defined in a private module, as the package's own are
        "from typing import overload\n"
        "@overload\ndef f(x: int) -> int: ...\n@overload\ndef f(x: str) -> str: ...\ndef f(x): return x\n",
        namespace,
    )
    function = namespace["f"]
    assert len(get_overloads(function)) == 2  # type: ignore[arg-type]
    publish("somepackage", function)
    assert function.__module__ == "somepackage"
    assert len(get_overloads(function)) == 2  # type: ignore[arg-type]
    assert all(variant.__module__ == "somepackage" for variant in get_overloads(function))  # type: ignore[arg-type]
