"""The ASR pipeline's ``mode="isolated"``: each call runs staged in a spawned child process (one
child here: it imports transformers and pyannote, tens of seconds on a loaded machine)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings(r"ignore:\s*torchcodec is not installed correctly:UserWarning"),
]
GENERATE = {"max_new_tokens": 40, "num_beams": 1}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    pytest.importorskip("transformers")
    pytest.importorskip("pyannote.audio")
    from vramguard.asr.testing import build_tiny_diarizer, build_tiny_whisper, sample_audio_path

    whisper = build_tiny_whisper(tmp_path_factory.mktemp("tiny-whisper"))
    diarizer = build_tiny_diarizer(tmp_path_factory.mktemp("tiny-diarizer"), force_speech=True)
    return whisper, diarizer, sample_audio_path()


def test_isolated_mode_runs_the_staged_pipeline_in_a_child(models: tuple[Path, Path, Path]) -> None:
    from vramguard.asr import MODES, ASRDiarizationPipeline

    whisper, diarizer, audio = models
    assert "isolated" in MODES
    pipe = ASRDiarizationPipeline.from_pretrained(
        whisper, diarizer, device="cpu", mode="isolated", generate_kwargs=GENERATE
    )
    assert pipe.asr_pipeline is None and pipe.diarization_pipeline is None  # nothing loaded here
    segments = pipe(audio)
    assert segments and all(set(segment) == {"speaker", "text", "timestamp"} for segment in segments)
    names = [report.name for report in pipe.last_reports]
    assert names == ["asr stage", "diarizer stage", "_map_staged"]  # the stages, then the child's session
    assert pipe._transcribe_batched.batch_sizes() == {}  # type: ignore[attr-defined]  # learned in the child only
