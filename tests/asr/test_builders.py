"""The tiny-model builders of vramguard.asr.testing: the diarizer's window is chosen, checked, and
what pyannote loads back."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

import vramguard

pytest.importorskip("pyannote.audio")


@pytest.mark.parametrize("window_s", [0.0, 0.4, 10.5, float("nan"), True, "2"])
def test_a_window_out_of_range_is_refused_before_anything_is_written(tmp_path: Path, window_s: object) -> None:
    from vramguard.asr.testing import build_tiny_diarizer

    target = tmp_path / "diarizer"
    with pytest.raises(vramguard.InvalidArgument, match="window_s") as caught:
        build_tiny_diarizer(target, window_s=window_s)  # type: ignore[arg-type]
    assert "from 0.5 to 10" in str(caught.value)
    assert not target.exists()


def test_a_short_window_is_what_pyannote_loads_and_diarizes_with(tmp_path: Path) -> None:
    from pyannote.audio import Pipeline

    from vramguard.asr.testing import build_tiny_diarizer, sample_audio_path

    folder = build_tiny_diarizer(tmp_path / "diarizer", window_s=2.0, force_speech=True)
    pipeline = Pipeline.from_pretrained(folder / "config.yaml")
    assert pipeline._segmentation.model.specifications.duration == 2.0
    assert pipeline._embedding.model_.specifications.duration == 2.0
    clip = tmp_path / "clip.wav"  # the first 2 s: one window
    with wave.open(str(sample_audio_path()), "rb") as source, wave.open(str(clip), "wb") as out:
        out.setparams(source.getparams())
        out.writeframes(source.readframes(2 * source.getframerate()))
    output = pipeline(str(clip))
    annotation = getattr(output, "speaker_diarization", output)
    assert set(annotation.labels()) == {"SPEAKER_00"}  # force_speech: one speaker over the whole file
