"""``vramguard asr`` on the tiny models: transcripts out, memory on stderr, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("pyannote.audio")

from vramguard.cli import main

from .test_export import parse_srt

FAST = ["--max-new-tokens", "20", "--num-beams", "1", "--device", "cpu", "--no-progress"]


def test_files_in_every_format(
    tiny_whisper: Path, tiny_diarizer: Path, sample_audio: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = ["--asr-model", str(tiny_whisper), "--diarizer-model", str(tiny_diarizer)]
    out = tmp_path / "out"
    assert (
        main(["asr", str(sample_audio), *models, *FAST, "--format", "srt", "--out", str(out), "--mode", "staged"]) == 0
    )
    assert parse_srt((out / "two_speakers.srt").read_text())
    err = capsys.readouterr().err
    assert "asr stage" in err and "diarizer stage" in err and "peak +" in err and "two_speakers.srt" in err
    # stdout: the transcript only (two files, so each gets a header); the same name twice
    # goes to two files under --out.
    assert main(["asr", str(sample_audio), str(sample_audio), *models, *FAST, "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("==> ") == 2
    body = captured.out.split("<==\n")[1].split("==> ")[0]
    assert json.loads(body)[0]["speaker"] == "SPEAKER_00"
    assert (
        main(["asr", str(sample_audio), str(sample_audio), *models, *FAST, "--format", "rttm", "--out", str(out)]) == 0
    )
    assert sorted(p.name for p in out.iterdir()) == ["two_speakers-2.rttm", "two_speakers.rttm", "two_speakers.srt"]


def test_plot(
    tiny_whisper: Path, tiny_diarizer: Path, sample_audio: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    plot = tmp_path / "mem.png"
    models = ["--asr-model", str(tiny_whisper), "--diarizer-model", str(tiny_diarizer)]
    assert main(["asr", str(sample_audio), *models, *FAST, "--format", "txt", "--plot", str(plot)]) == 0
    assert "SPEAKER_00:" in capsys.readouterr().out
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_bad_input_exits_2_before_loading(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "absent.wav"
    assert main(["asr", str(missing), "--asr-model", str(tmp_path / "nowhere"), "--device", "cpu"]) == 2
    assert "absent.wav" in capsys.readouterr().err
    assert main(["asr", str(missing), "--device", "cpu", "--max-new-tokens", "0"]) == 2


def test_a_model_that_cannot_load_exits_2(
    sample_audio: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["asr", str(sample_audio), "--asr-model", str(tmp_path / "nowhere"), "--device", "cpu"]) == 2
    assert "asr_model" in capsys.readouterr().err


def test_an_undecodable_file_exits_2_after_the_others(
    tiny_whisper: Path, tiny_diarizer: Path, sample_audio: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio" * 20)
    models = ["--asr-model", str(tiny_whisper), "--diarizer-model", str(tiny_diarizer)]
    assert main(["asr", str(sample_audio), str(broken), *models, *FAST]) == 2
    captured = capsys.readouterr()
    assert "SPEAKER_00:" in captured.out
    assert "broken.wav" in captured.err
