"""The three processes issue 26 names, each a child process of its own (tests/ledger/ledger_process.py):
a tiny HF text model serving, a tiny GPT-2 trained with AdamW, and the tiny Whisper + pyannote
pipeline loaded and run. The ledger names each known holder with its exact bytes, and its lines
explain the resident set to within 5 % (measured: under 0.5 %, either sign)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import vramguard

CHILD = Path(__file__).with_name("ledger_process.py")
RESIDUAL_FRACTION = 0.05


def _explain_child(case: str, scratch: Path) -> tuple[vramguard.MemoryLedger, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, str(CHILD), case, str(scratch)], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads(done.stdout)
    return vramguard.MemoryLedger.from_dict(document["ledger"]), document["expected"]


def _line(ledger: vramguard.MemoryLedger, holder: str) -> vramguard.LedgerLine:
    found = [line for line in ledger.lines if line.holder == holder]
    assert len(found) == 1, (holder, [line.holder for line in ledger.lines])
    return found[0]


def _explained(ledger: vramguard.MemoryLedger) -> None:
    assert sum(line.nbytes for line in ledger.lines) == ledger.total_bytes
    assert ledger.total_bytes > 0 and not ledger.notes, ledger.notes
    fraction = abs(ledger.residual_bytes) / ledger.total_bytes
    assert fraction <= RESIDUAL_FRACTION, [(line.category, line.nbytes) for line in ledger.lines]


def test_a_tiny_hf_text_model_serving(tmp_path: Path) -> None:
    pytest.importorskip("transformers", reason="needs the asr extra (transformers)")
    ledger, expected = _explain_child("text-model", tmp_path)
    _explained(ledger)
    model = _line(ledger, "global __main__.MODEL")
    assert dict(model.roles) == expected["global __main__.MODEL"]
    assert model.nbytes == model.storage_bytes == sum(expected["global __main__.MODEL"].values())


def test_a_tiny_gpt2_trained_with_adamw(tmp_path: Path) -> None:
    pytest.importorskip("transformers", reason="needs the asr extra (transformers)")
    ledger, expected = _explain_child("training", tmp_path)
    _explained(ledger)
    for holder, roles in expected.items():
        line = _line(ledger, holder)
        assert dict(line.roles) == roles, holder
        assert line.nbytes == line.storage_bytes == sum(roles.values())


@pytest.mark.slow  # ~60 s: both models are built and written, the pipeline loaded and run
def test_the_tiny_whisper_and_pyannote_pipeline_loaded_and_run(tmp_path: Path) -> None:
    pytest.importorskip("transformers", reason="needs the asr extra (transformers)")
    pytest.importorskip("pyannote.audio", reason="needs the asr extra (pyannote.audio)")
    ledger, expected = _explain_child("asr", tmp_path)
    _explained(ledger)
    whisper = _line(ledger, "global __main__.PIPE.asr_pipeline.model")
    assert whisper.category == "mapped file"  # its safetensors weights, mapped
    assert whisper.storage_bytes == expected["whisper"]
    assert whisper.detail is not None and whisper.detail.startswith(str(tmp_path / "whisper"))
    diarizer = [line for line in ledger.lines if ".diarization_pipeline." in line.holder]
    assert diarizer and all(line.category == "tensors" for line in diarizer)
