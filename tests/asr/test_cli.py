"""``vramguard asr`` on the tiny models: transcripts out, memory on stderr, exit codes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
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


def _vramguard(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vramguard", *args], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )


def test_a_missing_local_model_folder_says_so(sample_audio: Path, tmp_path: Path) -> None:
    """A path-looking model that is not there: "no such folder", not the hub's "Repo id must
    use alphanumeric chars" (issue 30)."""
    done = _vramguard("asr", str(sample_audio), "--asr-model", "./nope_dir", "--device", "cpu", cwd=tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "invalid asr_model='./nope_dir'" in lines[0]
    assert f"no such folder: {tmp_path / 'nope_dir'}" in lines[0]
    assert "Repo id" not in done.stderr


@pytest.mark.parametrize("option", ["--num-speakers", "--min-speakers", "--max-speakers"])
def test_a_bad_speaker_count_is_refused_before_any_model_loads(option: str, sample_audio: Path, tmp_path: Path) -> None:
    # A model that cannot load: had it been tried first, its error would be the one shown.
    unloadable = str(tmp_path / "no-such-model")
    done = _vramguard("asr", str(sample_audio), "--asr-model", unloadable, option, "-1", cwd=tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0] == f"vramguard asr: error: invalid {option}=-1; accepted: a positive int"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "code", "said", "mode", "stage"),
    [
        (signal.SIGINT, 130, "Ctrl-C", "resident", "resident run"),
        (signal.SIGTERM, 143, "SIGTERM", "resident", "resident run"),
        # Staged: the files finish one by one in the diarizer stage, after the ASR stage ended.
        (signal.SIGINT, 130, "Ctrl-C", "staged", "asr stage"),
    ],
)
def test_a_signal_keeps_the_files_already_done(
    signum: signal.Signals,
    code: int,
    said: str,
    mode: str,
    stage: str,
    tiny_whisper: Path,
    tiny_diarizer: Path,
    sample_audio: Path,
    tmp_path: Path,
) -> None:
    files = 8
    models = ["--asr-model", str(tiny_whisper), "--diarizer-model", str(tiny_diarizer)]
    command = [sys.executable, "-m", "vramguard", "asr", *[str(sample_audio)] * files, *models, *FAST, "--mode", mode]
    log = tmp_path / "stderr.txt"  # a file: nothing to drain while stdout is read to its end
    with (
        log.open("w") as stderr,
        subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=stderr, text=True) as process,
    ):
        try:
            assert process.stdout is not None
            first = process.stdout.readline()  # the first file's header: that file is done
            assert first.startswith("==> "), first
            process.send_signal(signum)
            out = process.stdout.read()  # the buffered rest too (communicate would read past it)
            process.wait(timeout=300)
        finally:
            if process.poll() is None:
                process.kill()
    err = log.read_text()
    assert process.returncode == code, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    done = (first + out).count("==> ")
    assert 1 <= done < files, "stopped part-way, the finished transcripts printed"
    assert (first + out).count("SPEAKER_00:") >= done, first + out
    assert f"vramguard asr: stopped by {said}; {done} of {files} file(s) done" in err.splitlines()
    assert f"memory on cpu ({mode} mode)" in err and stage in err, "the stages run so far"
