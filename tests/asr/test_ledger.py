"""benchmarks/asr_ledger.py, whose three ledgers docs/asr.md shows: after ``release_resources()``
no ledger line is held through the pipeline, and the Whisper model leaked into a global is named
by that global with its exact bytes."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow  # 10 to 30 s: the models are built, the pipeline loaded and run twice

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
HELD = ("tensors", "mapped file")
"""The ledger's categories whose lines name a holder."""


def _held(ledger: Any) -> list[Any]:
    return [line for line in ledger.lines if line.category in HELD and line.holder != "other mapped files"]


def _through_pipe(line: Any) -> bool:
    """A line held through the script's local ``pipe``."""
    return "'pipe'" in line.holder


def test_release_returns_the_pipelines_tensors_and_the_leak_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("pyannote.audio")
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    script = importlib.import_module("asr_ledger")
    result = script.take_ledgers(tmp_path)
    whisper_file = str(tmp_path / "whisper")

    for _, ledger in result.stages():
        assert sum(line.nbytes for line in ledger.lines) == ledger.total_bytes

    loaded = [line for line in _held(result.loaded) if _through_pipe(line)]
    whisper = [line for line in loaded if line.category == "mapped file"]
    assert [line.holder.split(" in ")[0] for line in whisper] == ["local 'pipe'.asr_pipeline.model"]
    assert whisper[0].detail is not None and whisper[0].detail.startswith(whisper_file)
    assert whisper[0].storage_bytes == result.leaked_storage_bytes  # the same model, built once
    assert any(".diarization_pipeline." in line.holder for line in loaded)

    # Gone after the release: nothing held through the pipeline, nothing mapped from its files,
    # and what is still held was held before by something else (the collection may free more).
    released = _held(result.released)
    assert not [line.holder for line in released if _through_pipe(line)]
    assert not [line for line in released if line.detail and line.detail.startswith(whisper_file)]
    before = {(line.holder, line.nbytes) for line in _held(result.loaded) if not _through_pipe(line)}
    assert {(line.holder, line.nbytes) for line in released} <= before

    assert result.leaked_holder == "global asr_ledger.LEAKED['whisper']"
    leaked = result.leaked.held_by(result.leaked_holder)
    assert [(line.category, line.storage_bytes) for line in leaked] == [("mapped file", result.leaked_storage_bytes)]
    assert leaked[0].returned_by.endswith(f"del the {result.leaked_holder} (or set it to None)")
    assert not [line.holder for line in _held(result.leaked) if ".diarization_pipeline." in line.holder]
    assert script.LEAKED == {}  # the script drops its leak before returning
