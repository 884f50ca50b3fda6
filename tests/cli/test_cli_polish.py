"""Issue 13's CLI polish: --version, the live device view, run's judging before its globals go,
and output paths checked before any work starts."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import vramguard
from vramguard.cli import devices as devices_command
from vramguard.cli import main

GPU: dict[str, Any] = {
    "index": 0,
    "name": "NVIDIA H100 80GB HBM3",
    "total_bytes": 80 * 2**30,
    "used_bytes": 3 * 2**30,
    "processes": [{"pid": 4242, "used_bytes": 2 * 2**30}],
}


def write(path: Path, code: str) -> Path:
    path.write_text(textwrap.dedent(code))
    return path


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"vramguard {vramguard.__version__}"


# -- vramguard devices --watch ------------------------------------------------------------------
def test_watch_redraws_the_table_for_each_frame(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # NVML is the edge that cannot run here: the device list is the one fake.
    calls: list[int] = []

    def listing() -> list[dict[str, Any]]:
        calls.append(1)
        return [GPU]

    monkeypatch.setattr(devices_command, "list_devices", listing)
    monkeypatch.setenv("COLUMNS", "120")
    assert main(["devices", "--watch", "--every", "50ms", "--frames", "3"]) == 0
    assert len(calls) == 3, "one NVML reading per frame"
    out = capsys.readouterr().out
    assert "NVIDIA H100 80GB HBM3" in out
    assert "pid 4242: 2.00 GiB" in out
    assert re.search(r"every 0\.05 s .* Ctrl-C to stop", out)


def test_watch_shows_this_process_s_sessions_inside_their_blocks(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(devices_command, "list_devices", lambda: [GPU])
    monkeypatch.setenv("COLUMNS", "120")
    with vramguard.gpu_session("transcribe-batch", device="cpu", census=False):
        assert devices_command.watch(0.05, frames=1) == 0
        inside = capsys.readouterr().out
    assert devices_command.watch(0.05, frames=1) == 0
    after = capsys.readouterr().out
    assert "this process's sessions" in inside and "transcribe-batch" in inside and "cpu" in inside
    assert "transcribe-batch" not in after
    assert "no session inside its block" in after


@pytest.mark.parametrize(("text", "seconds"), [("1s", 1.0), ("500ms", 0.5), ("2", 2.0), ("0.25s", 0.25)])
def test_every_accepts_seconds_and_milliseconds(text: str, seconds: float) -> None:
    assert devices_command.interval(text) == seconds


@pytest.mark.parametrize("text", ["0", "10ms", "2h", "fast", "-1s", "3601"])
def test_every_refuses_what_is_not_an_interval(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["devices", "--watch", f"--every={text}"])
    assert exit_.value.code == 2
    assert "is not an interval from 50ms to 3600s" in capsys.readouterr().err


def test_watch_and_json_do_not_mix(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devices", "--watch", "--json"]) == 2
    assert "no --json with --watch" in capsys.readouterr().err


@pytest.mark.slow
def test_watch_exits_cleanly_on_ctrl_c() -> None:
    """A real Ctrl-C (SIGINT) to a live view in a subprocess: exit code 0, no traceback."""
    env = {**os.environ, "FORCE_COLOR": "1", "COLUMNS": "100"}  # a terminal: Live redraws each frame
    command = [sys.executable, "-m", "vramguard", "devices", "--watch", "--every", "50ms"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert process.stdout is not None
    seen = b""
    deadline = time.monotonic() + 120
    try:
        while seen.count(b"Ctrl-C to stop") < 2 and time.monotonic() < deadline:  # two frames drawn
            ready, _, _ = select.select([process.stdout], [], [], 1.0)
            if ready:
                chunk = os.read(process.stdout.fileno(), 65536)
                if not chunk:
                    break
                seen += chunk
        assert seen.count(b"Ctrl-C to stop") >= 2, seen
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert b"Traceback" not in err and b"KeyboardInterrupt" not in err
    assert b"stopped" in seen + out


# -- vramguard run: judge first, then drop ----------------------------------------------------
def test_run_names_a_cache_in_the_script_globals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The function and the globals form a cycle: dropped first, the cache was only "a cycle".
    script = write(
        tmp_path / "cached.py",
        """
        import torch
        CACHE = []
        def step(i):
            y = torch.ones(2**20) * i
            CACHE.append(y)
            return y.sum()
        for i in range(4):
            step(i)
        """,
    )
    assert main(["run", "--device", "cpu", "--leaks", "raise", str(script)]) == 1
    err = capsys.readouterr().err
    assert "global __main__.CACHE" in err, err
    assert re.search(r"cached\.py leaked 16\.0 MiB", err)
    assert "cycle:" not in err


def test_run_frees_the_script_globals_after_the_report(tmp_path: Path) -> None:
    import gc
    import weakref

    import torch

    refs: list[weakref.ref[torch.Tensor]] = []
    sys.modules[__name__].__dict__["_VG_REFS"] = refs  # the script records a weak reference here
    script = write(
        tmp_path / "weak.py",
        f"""
        import sys, torch
        BIG = torch.ones(2**20)
        sys.modules[{__name__!r}]._VG_REFS.append(__import__("weakref").ref(BIG))
        def f():
            return BIG
        """,
    )
    try:
        assert main(["run", "--device", "cpu", "--leaks", "ignore", str(script)]) == 0
        gc.collect()
        assert len(refs) == 1 and refs[0]() is None, "the globals were dropped once judged"
    finally:
        del sys.modules[__name__].__dict__["_VG_REFS"]


# -- output paths, checked before any work ----------------------------------------------------
@pytest.fixture
def marker_script(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "ran.txt"
    script = write(tmp_path / "job.py", f"open({str(marker)!r}, 'w').write('ran')\n")
    return script, marker


@pytest.mark.parametrize("option", ["--json", "--plot"])
def test_run_checks_output_paths_before_running(
    option: str, tmp_path: Path, marker_script: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    script, marker = marker_script
    missing = tmp_path / "no" / "such" / "out.file"
    assert main(["run", "--device", "cpu", option, str(missing), str(script)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"vramguard run: error: invalid {option}=")
    assert "does not exist" in err[0]
    assert main(["run", "--device", "cpu", option, str(tmp_path), str(script)]) == 2
    assert "it is a directory" in capsys.readouterr().err
    assert not marker.exists(), "nothing ran"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_run_refuses_an_unwritable_folder(tmp_path: Path, marker_script: tuple[Path, Path]) -> None:
    script, marker = marker_script
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert main(["run", "--device", "cpu", "--json", str(locked / "r.json"), str(script)]) == 2
    finally:
        locked.chmod(0o700)
    assert not marker.exists()


def test_unwritable_file_is_refused(tmp_path: Path) -> None:
    from vramguard.cli._paths import check_output_file

    target = tmp_path / "r.json"
    target.write_text("{}")
    target.chmod(0o400)
    try:
        if os.access(target, os.W_OK):
            pytest.skip("this user can write read-only files (root)")
        with pytest.raises(vramguard.InvalidArgument, match="the file is not writable"):
            check_output_file("--json", target)
    finally:
        target.chmod(0o600)


def test_report_and_demo_check_their_plot_path_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = str(tmp_path / "missing" / "p.png")
    assert main(["report", str(tmp_path / "absent.json"), "--plot", bad]) == 2
    assert "invalid --plot=" in capsys.readouterr().err, "the plot path is checked before the report is read"
    assert main(["demo", "--device", "cpu", "--plot", bad]) == 2
    assert "invalid --plot=" in capsys.readouterr().err
