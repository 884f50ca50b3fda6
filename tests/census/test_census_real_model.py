"""A real model's leak reads as one line: the Whisper architecture (tiny, built from a config,
saved and loaded back through transformers), leaked into a global pipeline-like object."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vramguard import gpu_session

transformers = pytest.importorskip("transformers", reason="needs the asr extra (transformers)")


class Pipe:
    model: Any = None


PIPE = Pipe()


@pytest.mark.asr
def test_a_leaked_whisper_model_is_one_line_held_by_the_pipeline(tmp_path: Path) -> None:
    from vramguard.asr.testing import build_tiny_whisper

    folder = build_tiny_whisper(tmp_path / "whisper")
    try:
        with gpu_session(device="cpu", leaks="ignore") as s:
            PIPE.model = transformers.WhisperForConditionalGeneration.from_pretrained(folder)
        report = s.report
        assert report is not None
        nbytes = sum(
            p.untyped_storage().nbytes()
            for p in {p.untyped_storage()._cdata: p for p in PIPE.model.parameters()}.values()
        )
        assert report.leaked_bytes is not None and report.leaked_bytes >= nbytes
        groups = report.leak_groups
        assert groups[0].holder == f"global {__name__}.PIPE.model", str(report)
        assert groups[0].count >= len(list(PIPE.model.parameters())) - 1  # tied embeddings share storage
        text = str(report)
        assert sum(line.lstrip().startswith("leak:") for line in text.splitlines()) == len(groups)
        assert len(groups) <= 2, text  # the model, and at most its buffers held elsewhere
        assert all("\n" not in h for leak in report.leaks for h in leak.holders)
        assert "Parameter" in str(report.leaks)  # the tensors are listed under their group
    finally:
        PIPE.model = None
