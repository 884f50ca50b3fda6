"""Audio inputs: every accepted form decodes to 16 kHz mono float32; every bad one is refused
with an error that names the argument."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import vramguard
from vramguard.asr import SAMPLING_RATE, AudioError, load_audio

soundfile = pytest.importorskip("soundfile")
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg on PATH")


def tone(seconds: float = 1.0, rate: int = SAMPLING_RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def test_the_bundled_sample(sample_audio: Path) -> None:
    audio = load_audio(sample_audio)
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert 6.0 <= audio.duration_s <= 10.0
    assert audio.name == "two_speakers"
    assert sample_audio.stat().st_size < 1_000_000
    assert soundfile.info(str(sample_audio)).samplerate == 16_000
    assert soundfile.info(str(sample_audio)).channels == 1


@pytest.mark.parametrize(
    ("suffix", "fmt", "subtype"), [("wav", "WAV", "PCM_16"), ("flac", "FLAC", "PCM_16"), ("ogg", "OGG", "VORBIS")]
)
def test_soundfile_formats(tmp_path: Path, suffix: str, fmt: str, subtype: str) -> None:
    path = tmp_path / f"tone.{suffix}"
    soundfile.write(str(path), tone(), SAMPLING_RATE, format=fmt, subtype=subtype)
    audio = load_audio(path)
    assert audio.duration_s == pytest.approx(1.0, abs=0.01)
    assert audio.samples.dtype == np.float32


def test_stereo_at_another_rate_is_mixed_down_and_resampled(tmp_path: Path) -> None:
    left, right = tone(1.0, 44_100), np.zeros(44_100, dtype=np.float32)
    path = tmp_path / "stereo.wav"
    soundfile.write(str(path), np.stack([left, right], axis=1), 44_100)
    audio = load_audio(str(path))
    assert len(audio.samples) == pytest.approx(SAMPLING_RATE, abs=2)
    assert np.abs(audio.samples).max() == pytest.approx(0.25, abs=0.02)  # the mean of the channels


@needs_ffmpeg
@pytest.mark.parametrize("suffix", ["mp3", "m4a"])
def test_ffmpeg_formats(tmp_path: Path, suffix: str) -> None:
    wav, out = tmp_path / "tone.wav", tmp_path / f"tone.{suffix}"
    soundfile.write(str(wav), tone(2.0, 22_050), 22_050)
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(wav), str(out)], check=True)
    audio = load_audio(out)
    assert audio.duration_s == pytest.approx(2.0, abs=0.1)
    assert audio.name == "tone"


def test_without_ffmpeg_the_error_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "talk.mp3"
    path.write_bytes(b"\xff\xfb" + bytes(100))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(AudioError, match=r"needs ffmpeg.*install") as caught:
        load_audio(path)
    assert isinstance(caught.value, vramguard.VramGuardError)
    assert caught.value.argument == "audio"


@pytest.mark.parametrize(
    "array",
    [tone(), torch.from_numpy(tone()), (tone() * 32767).astype(np.int16), np.stack([tone(), tone()]), tone()[:, None]],
    ids=["float32", "tensor", "int16", "channels-first", "channels-last"],
)
def test_arrays_and_tensors(array: object) -> None:
    audio = load_audio(array, sampling_rate=SAMPLING_RATE)
    assert audio.samples.shape == (SAMPLING_RATE,)
    assert np.abs(audio.samples).max() == pytest.approx(0.5, abs=0.01)


def test_dicts_and_resampling() -> None:
    audio = load_audio({"raw": tone(1.0, 8_000), "sampling_rate": 8_000})
    assert len(audio.samples) == SAMPLING_RATE
    assert len(load_audio({"array": tone(), "sampling_rate": SAMPLING_RATE}).samples) == SAMPLING_RATE


def test_resampling_without_torchaudio_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """No vramguard extra lists torchaudio, so the advice is to install it, not an extra."""
    monkeypatch.setitem(sys.modules, "torchaudio", None)  # what an absent package looks like to import
    monkeypatch.setitem(sys.modules, "torchaudio.functional", None)
    with pytest.raises(vramguard.MissingDependency, match=r"8000 Hz audio.*: pip install torchaudio$") as caught:
        load_audio({"raw": tone(1.0, 8_000), "sampling_rate": 8_000})
    assert caught.value.module == "torchaudio" and caught.value.extra is None
    assert len(load_audio({"raw": tone(), "sampling_rate": SAMPLING_RATE}).samples) == SAMPLING_RATE


def test_missing_and_directory_paths(tmp_path: Path) -> None:
    with pytest.raises(vramguard.InvalidArgument, match=r"audio=.*no such file") as caught:
        load_audio(tmp_path / "absent.wav")
    assert caught.value.argument == "audio"
    with pytest.raises(vramguard.InvalidArgument, match="not a directory"):
        load_audio(tmp_path)


@pytest.mark.parametrize("suffix", ["wav", "flac"])
def test_unreadable_files(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"broken.{suffix}"
    path.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(AudioError, match=f"broken.{suffix}") as caught:
        load_audio(path)
    assert caught.value.argument == "audio"


@needs_ffmpeg
def test_a_file_ffmpeg_cannot_decode(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(AudioError, match="ffmpeg could not decode"):
        load_audio(path)


def test_empty_audio(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    soundfile.write(str(path), np.zeros(0, dtype=np.float32), SAMPLING_RATE)
    with pytest.raises(vramguard.InvalidArgument, match="non-empty"):
        load_audio(path)
    with pytest.raises(vramguard.InvalidArgument, match="non-empty"):
        load_audio(np.zeros(0, dtype=np.float32), sampling_rate=SAMPLING_RATE)


@pytest.mark.parametrize(
    ("audio", "options", "argument"),
    [
        (None, {}, "audio"),
        (42, {}, "audio"),
        ([0.0, 0.1], {"sampling_rate": 16_000}, "audio"),
        (tone(), {}, "sampling_rate"),
        (tone(), {"sampling_rate": True}, "sampling_rate"),
        (tone(), {"sampling_rate": -8000}, "sampling_rate"),
        (tone(), {"sampling_rate": 16_000.5}, "sampling_rate"),
        ({"raw": tone()}, {}, "audio"),
        ({"raw": tone(), "sampling_rate": 16_000}, {"sampling_rate": 8_000}, "sampling_rate"),
        ("x.wav", {"sampling_rate": 16_000}, "sampling_rate"),
        (np.zeros((2, 2, 100), dtype=np.float32), {"sampling_rate": 16_000}, "audio"),
        (np.array([0.0, np.nan], dtype=np.float32), {"sampling_rate": 16_000}, "audio"),
        (np.array(["a", "b"]), {"sampling_rate": 16_000}, "audio"),
    ],
    ids=[
        "none",
        "int",
        "list",
        "no-rate",
        "bool-rate",
        "negative-rate",
        "fractional-rate",
        "dict-without-rate",
        "conflicting-rates",
        "rate-with-path",
        "3-d",
        "nan",
        "strings",
    ],
)
def test_wrong_inputs_name_the_argument(audio: object, options: dict[str, object], argument: str) -> None:
    with pytest.raises(vramguard.InvalidArgument) as caught:
        load_audio(audio, **options)  # type: ignore[arg-type]
    assert caught.value.argument == argument
    assert "shape=" in str(caught.value) or not isinstance(audio, np.ndarray) or argument == "sampling_rate"
