"""Shared set-up for the ASR tests: tiny random-weight models built once per session, the
``asr`` marker on every test here, and the third-party warnings these libraries emit filtered
one by one (the suite runs with ``filterwarnings = error``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

# Warnings the libraries raise where these tests run, matched by message: anything else still
# fails the test. pyannote.audio warns at import when torchcodec (its file decoder) cannot load,
# e.g. a CPU build beside a CUDA torch; the pipeline never needs it (it hands pyannote in-memory
# waveforms).
THIRD_PARTY_WARNINGS = (r"ignore:\s*torchcodec is not installed correctly:UserWarning",)

GENERATE = {"max_new_tokens": 40, "num_beams": 1}
"""Whisper's generation capped, and greedy: random weights would otherwise run to 448 tokens
with transformers' default of 5 beams (seconds per call instead of a fraction)."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.asr)
            for spec in THIRD_PARTY_WARNINGS:
                item.add_marker(pytest.mark.filterwarnings(spec))


@pytest.fixture(scope="session")
def tiny_whisper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    from vramguard.asr.testing import build_tiny_whisper

    return build_tiny_whisper(tmp_path_factory.mktemp("tiny-whisper"))


@pytest.fixture(scope="session")
def tiny_diarizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Forced to find speech: one speaker over the whole file, deterministically."""
    pytest.importorskip("pyannote.audio")
    from vramguard.asr.testing import build_tiny_diarizer

    return build_tiny_diarizer(tmp_path_factory.mktemp("tiny-diarizer"), force_speech=True)


@pytest.fixture(scope="session")
def sample_audio() -> Path:
    from vramguard.asr.testing import sample_audio_path

    return sample_audio_path()


@pytest.fixture(scope="module")
def resident_pipe(tiny_whisper: Path, tiny_diarizer: Path) -> Any:
    """A resident pipeline on the host, shared by a module's tests and released at its end."""
    from vramguard.asr import ASRDiarizationPipeline

    with ASRDiarizationPipeline.from_pretrained(
        tiny_whisper, tiny_diarizer, device="cpu", generate_kwargs=GENERATE
    ) as pipe:
        yield pipe
