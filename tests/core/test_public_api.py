"""The public API is what __all__ says, and every name in it exists (after httpx's test)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import vramguard


def test_all_names_exist_and_are_public() -> None:
    for name in vramguard.__all__:
        assert hasattr(vramguard, name), name
    public = {
        n
        for n in dir(vramguard)
        if not n.startswith("_") and n != "annotations" and not isinstance(getattr(vramguard, n), type(vramguard))
    }
    assert public <= set(vramguard.__all__), public - set(vramguard.__all__)


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
