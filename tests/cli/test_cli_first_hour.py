"""Issue 30, a newcomer's first hour with the command: output paths refused before any work
(the plot's format, folders root cannot write), Ctrl-C and SIGTERM that end with what was
finished kept and the shell's exit code, and the CLI's edges (``--every`` alone, one duration
syntax). Each through the real program: ``python -m vramguard`` in a fresh interpreter, real
files, real signals."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vramguard.cli._durations import duration

ROOT_ONLY = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="os.access says yes to root alone: the case needs root (as in a Docker GPU container)",
)
# Not writable even by root: sysfs creates no files (where /sys is sysfs, as on Linux).
UNWRITABLE = "/sys"


def vramguard(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vramguard", *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def one_error_line(done: subprocess.CompletedProcess[str], command: str) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"vramguard {command}: error: "), lines
    return lines[0]


@pytest.fixture
def marker_script(tmp_path: Path) -> tuple[Path, Path]:
    """A script that leaves a file behind when it runs: refused means it never did."""
    marker = tmp_path / "ran.txt"
    script = tmp_path / "clean.py"
    script.write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    return script, marker


@pytest.fixture
def popen(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    """Processes started by a test, killed if the test leaves them running."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def start(started: list[subprocess.Popen[str]], *args: str, cwd: Path, **env: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "vramguard", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    started.append(process)
    return process


def read_until(stream: object, marker: str) -> str:
    """What the process wrote to ``stream`` up to and including the line holding ``marker``
    (blocking reads: the marker is the process's own word that it got there)."""
    seen = []
    for line in iter(stream.readline, ""):  # type: ignore[attr-defined]
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"the process ended before writing {marker!r}:\n{''.join(seen)}")


# -- every output path checked before any work starts ---------------------------------------
@pytest.mark.parametrize("name", ["mem.html", "mem.txt", "mem"])
def test_run_refuses_a_plot_format_matplotlib_cannot_write_before_running(
    name: str, tmp_path: Path, marker_script: tuple[Path, Path]
) -> None:
    pytest.importorskip("matplotlib")
    script, marker = marker_script
    done = vramguard("run", "--device", "cpu", "--plot", name, str(script), cwd=tmp_path)
    line = one_error_line(done, "run")
    assert f"invalid --plot='{name}'" in line and ".png" in line and ".svg" in line
    assert not marker.exists(), "the script never ran"
    assert not (tmp_path / name).exists(), "the probe file is removed"


@ROOT_ONLY
@pytest.mark.parametrize(("option", "name"), [("--plot", "x.png"), ("--json", "x.json")])
def test_run_as_root_refuses_a_folder_root_cannot_write_before_running(
    option: str, name: str, tmp_path: Path, marker_script: tuple[Path, Path]
) -> None:
    pytest.importorskip("matplotlib")
    assert os.access(UNWRITABLE, os.W_OK), "os.access says yes to root: the old check let this through"
    script, marker = marker_script
    done = vramguard("run", "--device", "cpu", option, f"{UNWRITABLE}/{name}", str(script), cwd=tmp_path)
    assert "cannot create a file there" in one_error_line(done, "run")
    assert not marker.exists()


@ROOT_ONLY
@pytest.mark.parametrize("option", ["--json", "--plot"])
def test_explain_as_root_refuses_a_folder_root_cannot_write_before_running(
    option: str, tmp_path: Path, marker_script: tuple[Path, Path]
) -> None:
    pytest.importorskip("matplotlib")
    script, marker = marker_script
    done = vramguard("explain", "--device", "cpu", option, f"{UNWRITABLE}/x.png", str(script), cwd=tmp_path)
    assert f"invalid {option}=" in one_error_line(done, "explain")
    assert not marker.exists()


@ROOT_ONLY
def test_asr_as_root_refuses_an_out_folder_root_cannot_write(tmp_path: Path) -> None:
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"RIFF")  # never read: the folder is refused first
    done = vramguard("asr", str(audio), "--out", f"{UNWRITABLE}/out", cwd=tmp_path)
    line = one_error_line(done, "asr")
    assert "invalid --out=" in line and "cannot create a file in /sys" in line
    assert not os.path.exists(f"{UNWRITABLE}/out")


def test_an_existing_output_is_left_as_it_was_by_the_check(tmp_path: Path) -> None:
    from vramguard.cli._paths import check_output_file, check_output_folder

    kept = tmp_path / "r.json"
    kept.write_text("{}")
    before = kept.stat()
    check_output_file("--json", kept)
    check_output_folder("--out", tmp_path / "new" / "deeper")
    assert kept.read_text() == "{}" and kept.stat().st_mtime_ns == before.st_mtime_ns
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"], "no probe file, no folder made"


# -- Ctrl-C and SIGTERM: what was finished kept, the shell's exit code ----------------------
HANG = """\
import time, torch
kept = torch.ones(1024)
print("ready", flush=True)
while True:
    time.sleep(1)
"""


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code", "said"), [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "Ctrl-C")])
def test_run_stopped_by_a_signal_prints_the_report_and_writes_its_files(
    signum: signal.Signals, code: int, said: str, tmp_path: Path, popen: list[subprocess.Popen[str]]
) -> None:
    script = tmp_path / "hang.py"
    script.write_text(HANG)
    process = start(popen, "run", "--device", "cpu", "--json", "out.json", str(script), cwd=tmp_path)
    read_until(process.stdout, "ready")
    process.send_signal(signum)  # as timeout sends SIGTERM: to the process, once
    _, err = process.communicate(timeout=120)
    assert process.returncode == code, err
    # Where the program was: the loop, or the print it just made (the signal may come first).
    assert re.search(rf"^{said}: {re.escape(str(script))} stopped at {re.escape(str(script))}:[345]$", err, re.M), err
    assert "Traceback" not in err
    assert "vramguard session 'hang.py' on cpu" in err, "the report is printed"
    saved = json.loads((tmp_path / "out.json").read_text())
    assert saved["name"] == "hang.py", "the JSON is written"


@pytest.mark.slow
def test_demo_stopped_by_ctrl_c_shows_the_runs_it_finished(tmp_path: Path, popen: list[subprocess.Popen[str]]) -> None:
    # FORCE_COLOR: rich takes stderr for a terminal, so the demo draws its progress there.
    process = start(
        popen,
        "demo", "--device", "cpu", "--layers", "1", "--steps", "1", "--repeat", "4", "--plot", "both.png",
        cwd=tmp_path, FORCE_COLOR="1", COLUMNS="100",
    )  # fmt: skip
    read_until(process.stderr, "2/8")  # the progress bar: one run of each way finished
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    stopped = [line for line in err.splitlines() if "vramguard demo: stopped by Ctrl-C" in line]
    assert len(stopped) == 1 and "finished repetition(s)" in stopped[0], err
    assert "after a bare del the process still held" in out, "the finished runs are shown"
    assert (tmp_path / "both.png").read_bytes().startswith(b"\x89PNG"), "and drawn"


@pytest.mark.slow
def test_demo_stopped_by_sigterm_before_a_run_finished_says_so(
    tmp_path: Path, popen: list[subprocess.Popen[str]]
) -> None:
    process = start(
        popen, "demo", "--device", "cpu", "--layers", "1", "--steps", "1", "--no-plot",
        cwd=tmp_path, FORCE_COLOR="1", COLUMNS="100",
    )  # fmt: skip
    read_until(process.stderr, "0/6")
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert "Traceback" not in err
    assert "vramguard demo: stopped by SIGTERM" in err
    assert "no repetition was finished" in err or "after a bare del" in out


# -- the CLI's edges ------------------------------------------------------------------------
def test_devices_every_alone_implies_watch(tmp_path: Path) -> None:
    done = vramguard("devices", "--every", "50ms", "--frames", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "every 0.05 s" in done.stdout and "Ctrl-C to stop" in done.stdout, "the live view, not one listing"
    refused = vramguard("devices", "--every", "1s", "--json", cwd=tmp_path)
    assert "no --json with --watch or --every" in one_error_line(refused, "devices")


@pytest.mark.parametrize("every", ["0.01", "10ms", "0.01s"])
def test_run_sample_every_takes_both_duration_forms(every: str, tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text("import torch\nx = torch.ones(4)\ndel x\n")
    done = vramguard("run", "--device", "cpu", "--json", "r.json", "--sample-every", every, str(script), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "r.json").read_text())["timeline"]["interval_s"] == 0.01


def test_a_bad_duration_is_one_usage_error(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text("pass\n")
    done = vramguard("run", "--sample-every", "often", str(script), cwd=tmp_path)
    assert done.returncode == 2
    assert "'often' is not a sampling interval from 1ms to 60s (seconds, or with a unit: 500ms, 1s, 2m)" in done.stderr


@given(st.integers(min_value=50, max_value=3_600_000))
def test_seconds_milliseconds_and_minutes_read_the_same(milliseconds: int) -> None:
    parse = duration("an interval", 0.05, 3600)
    seconds = milliseconds / 1000
    assert parse(repr(seconds)) == parse(f"{seconds!r}s") == seconds
    assert parse(f"{milliseconds}ms") == pytest.approx(seconds, rel=1e-12)
    assert parse(f"{milliseconds / 60_000!r}m") == pytest.approx(seconds, rel=1e-12)
