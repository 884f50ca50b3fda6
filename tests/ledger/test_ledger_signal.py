"""The explain signal: a real child process writes its ledger when asked and keeps running (it
answers a second request); a process without the handler is refused before the signal is sent;
a handler that is not vramguard's times out; in this process, a nested signal is queued, not
run inside the first, and the handler's own frames hold nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import vramguard
from vramguard.core._errors import InvalidArgument
from vramguard.ledger import _signal
from vramguard.ledger._remote import catches, request_for

SERVER = """\
import sys, torch, vramguard
HELD = torch.ones(250_000)
def serve():
    batch = torch.ones(125_000)
    print("ready", flush=True)
    for line in sys.stdin:
        print("alive", line.strip(), flush=True)
    return batch
serve()
"""


def vramguard_cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vramguard", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start(code: str, cwd: Path, **env: str) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "ready\n", child.communicate(timeout=60)
    return child


def finish(child: subprocess.Popen[str]) -> tuple[int, str]:
    out, err = child.communicate("last\n", timeout=60)
    return child.returncode, out + err


def holders(data: dict[str, Any]) -> dict[str, int]:
    return {line["holder"]: line["nbytes"] for line in data["lines"]}


def test_a_running_server_answers_two_requests_and_keeps_running(tmp_path: Path) -> None:
    """Installed by the environment variable, written to the default path in the child's TMPDIR
    (which the command reads from /proc/PID/environ)."""
    child = start(SERVER, tmp_path, VRAMGUARD_EXPLAIN_SIGNAL="USR2", TMPDIR=str(tmp_path))
    try:
        outputs = []
        for n in (1, 2):
            done = vramguard_cli("explain", "--pid", str(child.pid), "--json", f"{n}.json", cwd=tmp_path)
            assert done.returncode == 0, done.stderr
            outputs.append(done.stdout)
            found = holders(json.loads((tmp_path / f"{n}.json").read_text()))
            assert found["global __main__.HELD"] == 1_000_000
            local = [h for h in found if h.startswith("local 'batch' in serve()")]
            assert len(local) == 1 and found[local[0]] == 500_000, found
            assert not [h for h in found if "ledger/_signal.py" in h or "in handle()" in h], found
        assert all("vramguard explain: cpu" in out for out in outputs)
        written = json.loads((tmp_path / f"vramguard-ledger-{child.pid}.json").read_text())
        assert sum(line["nbytes"] for line in written["lines"]) == written["total_bytes"]
        assert (tmp_path / f"vramguard-ledger-{child.pid}.txt").read_text().startswith("vramguard explain: cpu")
    finally:
        code, output = finish(child)
    assert code == 0 and "alive last" in output, output
    assert not list(tmp_path.glob(".vramguard-*.tmp")), "the temporary files are renamed into place"


def test_a_process_without_the_handler_is_refused_and_not_killed(tmp_path: Path) -> None:
    child = start(
        "import sys\nprint('ready', flush=True)\nfor line in sys.stdin: print('alive', line.strip())", tmp_path
    )
    try:
        done = vramguard_cli("explain", "--pid", str(child.pid), cwd=tmp_path)
    finally:
        code, output = finish(child)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("vramguard explain: error: invalid --pid="), done.stderr
    assert "does not catch SIGUSR2" in lines[0]
    assert code == 0 and "alive last" in output, "the signal was never sent"


def test_a_handler_that_is_not_vramguards_times_out(tmp_path: Path) -> None:
    code = (
        "import signal, sys\nsignal.signal(signal.SIGUSR2, lambda *a: print('other', flush=True))\n"
        "print('ready', flush=True)\nfor line in sys.stdin: print('alive', line.strip())"
    )
    child = start(code, tmp_path)
    try:
        done = vramguard_cli("explain", "--pid", str(child.pid), "--timeout", "1", cwd=tmp_path)
    finally:
        status, output = finish(child)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "caught SIGUSR2 but wrote no ledger" in lines[0], done.stderr
    assert status == 0 and "other" in output and "alive last" in output


def test_an_unknown_pid_and_bad_options_are_one_line_and_exit_2(tmp_path: Path) -> None:
    unused = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    for args in (
        ("--pid", str(unused)),
        ("--pid", "0"),
        ("--pid", str(os.getpid()), "--signal", "KILL"),
        ("--pid", str(os.getpid()), "job.py"),
    ):
        done = vramguard_cli("explain", *args, cwd=tmp_path)
        assert done.returncode == 2, (args, done.stderr)
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("vramguard explain: error: "), (args, done.stderr)
    missing = vramguard_cli("explain", "--pid", str(unused), cwd=tmp_path)
    assert f"no process {unused}" in missing.stderr


def test_the_environment_variable_installs_the_handler_at_import_without_torch(tmp_path: Path) -> None:
    code = (
        "import signal, sys, vramguard\n"
        "assert 'torch' not in sys.modules\n"
        "print(signal.getsignal(signal.SIGUSR1).__qualname__)"
    )
    env = {**os.environ, "VRAMGUARD_EXPLAIN_SIGNAL": f"USR1:{tmp_path}/l-{{pid}}"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and done.stdout == "_Dumper.handle\n", done.stderr
    env["VRAMGUARD_EXPLAIN_SIGNAL"] = "USR3"
    bad = subprocess.run(
        [sys.executable, "-c", "import vramguard"], env=env, capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 1 and "invalid VRAMGUARD_EXPLAIN_SIGNAL='USR3'" in bad.stderr


def test_the_caught_mask_is_read_by_signal_number() -> None:
    status = "Name:\tpython\nSigBlk:\t0000000000000000\nSigIgn:\t0000000001001000\nSigCgt:\t0000000180000a02\n"
    assert catches(status, signal.SIGUSR2)  # 12: bit 11 of 0xa02
    assert catches(status, signal.SIGUSR1)  # 10: bit 9
    assert not catches(status, signal.SIGTERM)
    assert not catches("Name:\tpython\n", signal.SIGUSR2)


def test_the_environment_variable_is_checked() -> None:
    assert _signal.parse_environment("USR1:/x/ledger-{pid}") == (signal.SIGUSR1, "/x/ledger-{pid}")
    assert _signal.parse_environment("SIGUSR2") == (signal.SIGUSR2, None)
    for bad in ("KILL", "USR3", "TERM:/x", ":/x"):
        with pytest.raises(InvalidArgument, match="VRAMGUARD_EXPLAIN_SIGNAL"):
            _signal.install_from_environment({"VRAMGUARD_EXPLAIN_SIGNAL": bad})
    assert _signal.install_from_environment({}) is None


def test_the_path_for_another_process_comes_from_its_environment(tmp_path: Path) -> None:
    env = {"VRAMGUARD_EXPLAIN_SIGNAL": f"USR1:{tmp_path}/l-{{pid}}"}
    pid = os.getpid()
    with pytest.raises(InvalidArgument, match="does not catch SIGUSR1"):  # pytest does not catch it
        request_for(pid, None, None, env)
    previous = signal.signal(signal.SIGUSR1, lambda *a: None)
    try:
        request = request_for(pid, None, None, env)
        assert request.signum == signal.SIGUSR1 and request.text_path == f"{tmp_path}/l-{pid}.txt"
        request = request_for(pid, "USR1", None, {"TMPDIR": str(tmp_path)})
        assert request.json_path == f"{tmp_path}/vramguard-ledger-{pid}.json"
        request = request_for(pid, "USR1", str(tmp_path / "given"), env)
        assert request.text_path == f"{tmp_path}/given.txt", "--path wins"
    finally:
        signal.signal(signal.SIGUSR1, previous)


@pytest.fixture
def usr2() -> Iterator[None]:
    previous = signal.getsignal(signal.SIGUSR2)
    yield
    signal.signal(signal.SIGUSR2, previous)
    _signal._installed.pop(int(signal.SIGUSR2), None)


def test_in_this_process_a_nested_signal_waits_for_the_first_ledger(
    tmp_path: Path, usr2: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = vramguard.install_explain_signal(signal.SIGUSR2, tmp_path / "me-{pid}")
    assert template == f"{tmp_path}/me-{{pid}}"
    dumper = _signal._installed[int(signal.SIGUSR2)]
    real = _signal._ledger
    nested: list[bool] = []

    def ledger_with_a_second_signal(device: str | None) -> tuple[dict[str, Any], str]:
        if not nested:
            os.kill(os.getpid(), signal.SIGUSR2)  # delivered at the next bytecode, inside this handler
            nested.append(dumper.busy)
        return real(device)

    monkeypatch.setattr(_signal, "_ledger", ledger_with_a_second_signal)
    mine = torch.ones(100_003)
    os.kill(os.getpid(), signal.SIGUSR2)
    assert dumper.written == 2 and nested == [True], "the second signal was queued, then answered"
    assert not dumper.busy and dumper.pending == 0
    data = json.loads((tmp_path / f"me-{os.getpid()}.json").read_text())
    found = holders(data)
    local = [h for h in found if h.startswith("local 'mine' in ")]
    assert len(local) == 1 and found[local[0]] == 100_003 * 4, found
    assert not [h for h in found if "ledger/_signal.py" in h or "in handle()" in h or "ledger_with" in h], found
    del mine


def test_install_is_checked(tmp_path: Path, usr2: None) -> None:
    for signum in (signal.SIGKILL, "INT", 0, "nope", 1.5):
        with pytest.raises(InvalidArgument, match="signum"):
            vramguard.install_explain_signal(signum)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="does not exist"):
        vramguard.install_explain_signal(signal.SIGUSR2, tmp_path / "missing" / "l")
    errors: list[BaseException] = []

    def install() -> None:
        try:
            vramguard.install_explain_signal(signal.SIGUSR2, tmp_path / "l")
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=install)
    thread.start()
    thread.join()
    assert len(errors) == 1 and isinstance(errors[0], InvalidArgument) and "main thread" in str(errors[0])
