"""``ASRDiarizationPipeline.map(paths, devices=...)``: files spread over one worker process per
device, here two workers on the host (``devices=["cpu", "cpu"]``) with the tiny models of
vramguard.asr.testing; results in input order, a failed file failing alone."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

import vramguard

pytestmark = [
    pytest.mark.slow,
    pytest.mark.asr,
    pytest.mark.filterwarnings(r"ignore:\s*torchcodec is not installed correctly:UserWarning"),
]
GENERATE = {"max_new_tokens": 40, "num_beams": 1}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    pytest.importorskip("transformers")
    pytest.importorskip("pyannote.audio")
    from vramguard.asr.testing import build_tiny_diarizer, build_tiny_whisper

    whisper = build_tiny_whisper(tmp_path_factory.mktemp("tiny-whisper"))
    diarizer = build_tiny_diarizer(tmp_path_factory.mktemp("tiny-diarizer"), force_speech=True)
    return whisper, diarizer


@pytest.fixture(scope="module")
def spread(models: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Any:
    from vramguard.asr import ASRDiarizationPipeline
    from vramguard.asr.testing import sample_audio_path

    folder = tmp_path_factory.mktemp("audio")
    paths = []
    for name in ("a.wav", "b.wav", "c.wav"):
        shutil.copy(sample_audio_path(), folder / name)
        paths.append(str(folder / name))
    broken = folder / "broken.wav"
    broken.write_bytes(b"RIFF not really a wave file")
    paths.insert(1, str(broken))  # the second file fails: on the second worker, beside c.wav
    whisper, diarizer = models
    with ASRDiarizationPipeline.from_pretrained(
        whisper, diarizer, device="cpu", mode="staged", generate_kwargs=GENERATE
    ) as pipe:
        results = pipe.map(paths, devices=["cpu", "cpu"], errors="collect", progress=False)
        yield paths, results, pipe.last_reports


def test_results_come_back_in_input_order_and_a_failed_file_fails_alone(spread: Any) -> None:
    paths, results, _ = spread
    assert [Path(r.source).name for r in results] == [Path(p).name for p in paths]
    assert [r.ok for r in results] == [True, False, True, True]
    assert results[1].segments is None and results[1].error is not None
    for result in (results[0], results[2], results[3]):
        assert result.segments is not None and len(result.segments) >= 1
        assert [r.name.split()[0] for r in result.reports] == ["transcribe", "diarize"]
        assert all(r.device == "cpu" for r in result.reports)


def test_each_worker_ran_its_own_sessions(spread: Any) -> None:
    _, _, reports = spread
    stages = [r.name for r in reports if r.name.endswith("stage")]
    # Two workers, each with its own staged run: two ASR stages and two diarizer stages.
    assert sorted(stages) == ["asr stage", "asr stage", "diarizer stage", "diarizer stage"]
    assert all(isinstance(r, vramguard.SessionReport) for r in reports)


def test_errors_raise_raises_the_first_failed_file_after_the_others(models: tuple[Path, Path], tmp_path: Path) -> None:
    from vramguard.asr import ASRDiarizationPipeline

    missing = tmp_path / "missing.wav"
    whisper, diarizer = models
    with (
        ASRDiarizationPipeline.from_pretrained(whisper, diarizer, device="cpu", mode="staged") as pipe,
        pytest.raises(vramguard.InvalidArgument, match=r"missing\.wav"),
    ):
        pipe.map([str(missing)], devices=["cpu"], progress=False)


@pytest.mark.parametrize("devices", [[], "every", ["tpu"]])
def test_bad_devices_name_the_argument(models: tuple[Path, Path], devices: Any) -> None:
    from vramguard.asr import ASRDiarizationPipeline

    whisper, diarizer = models
    with (
        ASRDiarizationPipeline.from_pretrained(whisper, diarizer, device="cpu", mode="staged") as pipe,
        pytest.raises(vramguard.InvalidArgument, match="devices"),
    ):
        pipe.map(["x.wav"], devices=devices, progress=False)
