"""``vramguard check``: empty_cache() before the references are dropped, found in code."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vramguard.census import RULES, check_source
from vramguard.cli import main

WHISPER_PLUS = textwrap.dedent(
    """\
    import torch


    class ASRDiarizationPipeline:
        def clear_memory(self):
            if self.device == "cuda":
                torch.cuda.empty_cache()
                self.asr_pipeline = None
                self.diarization_pipeline = None
    """
)
README_ORDER = textwrap.dedent(
    """\
    import gc
    import torch

    model = load_model()
    gc.collect(); torch.cuda.empty_cache(); del model
    """
)
ACCELERATE = textwrap.dedent(
    """\
    from accelerate.utils import release_memory

    def step(a, b):
        a, b = release_memory(a, b)
    """
)
CLEAN = textwrap.dedent(
    """\
    import gc
    import torch
    import vramguard


    class Pipeline:
        def release(self):
            self.asr_pipeline = None
            del self.diarization_pipeline
            gc.collect()
            torch.cuda.empty_cache()


    def stages(model):
        del model
        gc.collect()
        vramguard.empty_cache()
        best = None  # a new name bound after the call drops nothing
        for _ in range(3):
            best = 1
        return best


    def outer(x):
        torch.mps.empty_cache()

        def inner(y):  # its own scope: this del is not after outer's call
            del y

        return inner
    """
)


def test_whisper_plus_method_is_flagged_at_the_call() -> None:
    findings = check_source(WHISPER_PLUS, "whisper.py")
    assert [(f.line, f.col, f.code) for f in findings] == [(7, 13, "VG001")]
    text = str(findings[0])
    assert text.startswith("whisper.py:7:13 VG001 torch.cuda.empty_cache() runs before `self.asr_pipeline = None`")


def test_readme_order_on_one_line_is_flagged() -> None:
    findings = check_source(README_ORDER, "readme.py")
    assert [(f.line, f.code) for f in findings] == [(5, "VG001")]
    assert "`del model`" in findings[0].message


def test_release_memory_is_flagged() -> None:
    findings = check_source(ACCELERATE, "train.py")
    assert [(f.line, f.col, f.code) for f in findings] == [(4, 12, "VG002")]
    assert set(RULES) == {"VG001", "VG002", "VG003", "VG004", "VG005"}


def test_clean_code_has_no_findings() -> None:
    assert check_source(CLEAN, "clean.py") == ()


def test_check_command_on_files_and_directories(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "pkg" / "whisper.py"
    bad.parent.mkdir()
    bad.write_text(WHISPER_PLUS)
    (tmp_path / "pkg" / "clean.py").write_text(CLEAN)
    (tmp_path / "pkg" / "notes.txt").write_text("torch.cuda.empty_cache(); del x")
    assert main(["check", str(tmp_path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{bad}:7:13 VG001 " + check_source(WHISPER_PLUS)[0].message]
    assert "and `self.diarization_pipeline = None` (line 9) drop references" in out[0]  # one finding, both drops
    assert main(["check", str(tmp_path / "pkg" / "clean.py")]) == 0
    assert capsys.readouterr().out == "checked 1 file, no findings\n"
    assert main(["check", "-q", str(tmp_path / "pkg" / "clean.py")]) == 0
    assert capsys.readouterr().out == ""


def test_check_command_missing_path_and_syntax_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(tmp_path / "absent.py")]) == 2
    assert "absent.py" in capsys.readouterr().err
    broken = tmp_path / "broken.py"
    broken.write_text("import torch\ndef f(:\n    torch.cuda.empty_cache()\n")
    assert main(["check", str(broken)]) == 2
    assert "broken.py" in capsys.readouterr().err


@pytest.mark.slow  # two interpreters that import torch (every subcommand module is loaded to build the parser)
def test_python_dash_m_vramguard_check(tmp_path: Path) -> None:
    bad = tmp_path / "readme.py"
    bad.write_text(README_ORDER)
    (tmp_path / "clean.py").write_text(CLEAN)
    found = subprocess.run(
        [sys.executable, "-m", "vramguard", "check", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert found.returncode == 1, found.stderr
    assert found.stdout.startswith(f"{bad}:5:15 VG001 torch.cuda.empty_cache() runs before `del model`")
    clean = subprocess.run(
        [sys.executable, "-m", "vramguard", "check", str(tmp_path / "clean.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert clean.returncode == 0 and clean.stdout == "checked 1 file, no findings\n"


def test_a_later_empty_cache_after_the_drop_is_clean() -> None:
    source = textwrap.dedent(
        """\
        import torch

        def twice(x):
            torch.cuda.empty_cache()
            del x
            torch.cuda.empty_cache()
        """
    )
    assert check_source(source) == ()
