"""Each subcommand through ``main(argv)``: exit codes, output lines, files written."""

from __future__ import annotations

import builtins
import json
import re
import struct
import sys
import textwrap
from pathlib import Path

import pytest

from vramguard import SessionReport
from vramguard.cli import devices as devices_command
from vramguard.cli import main
from vramguard.report import load_report

MIB = 2**20


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def write(path: Path, code: str) -> Path:
    path.write_text(textwrap.dedent(code))
    return path


@pytest.fixture
def seen(tmp_path: Path) -> Path:
    """Where the test scripts record how they were run."""
    return tmp_path / "seen.json"


RECORDER = """
    import json, sys
    with open(SEEN, "w") as file:
        json.dump({"name": __name__, "argv": sys.argv, "path0": sys.path[0]}, file)
"""


# -- vramguard run ---------------------------------------------------------------------------
def test_run_runs_a_script_as_main(tmp_path: Path, seen: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = write(tmp_path / "job.py", f"SEEN = {str(seen)!r}\n" + textwrap.dedent(RECORDER))
    code = main(["run", "--device", "cpu", str(script), "--flag", "value"])
    assert code == 0
    ran = json.loads(seen.read_text())
    assert ran == {"name": "__main__", "argv": [str(script), "--flag", "value"], "path0": str(tmp_path)}
    err = capsys.readouterr().err
    assert "vramguard session 'job.py' on cpu" in err
    assert "peak above start" in err and "leaked" in err


def test_run_restores_argv_and_path(tmp_path: Path, seen: Path) -> None:
    argv, path = sys.argv[:], sys.path[:]
    script = write(tmp_path / "job.py", f"SEEN = {str(seen)!r}\n" + textwrap.dedent(RECORDER))
    assert main(["run", "--device", "cpu", str(script)]) == 0
    assert (sys.argv, sys.path) == (argv, path)


def test_run_module(tmp_path: Path, seen: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "vg_cli_job.py", f"SEEN = {str(seen)!r}\n" + textwrap.dedent(RECORDER))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["run", "--device", "cpu", "-m", "vg_cli_job", "a", "-b"]) == 0
    ran = json.loads(seen.read_text())
    assert ran["name"] == "__main__"
    assert ran["argv"][1:] == ["a", "-b"] and ran["argv"][0].endswith("vg_cli_job.py")
    assert ran["path0"] == str(tmp_path)


def test_run_keeps_the_script_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--device", "cpu", str(write(tmp_path / "a.py", "raise SystemExit(3)"))]) == 3
    assert main(["run", "--device", "cpu", str(write(tmp_path / "b.py", "import sys; sys.exit()"))]) == 0
    assert main(["run", "--device", "cpu", str(write(tmp_path / "c.py", "import sys; sys.exit('bad input')"))]) == 1
    assert "bad input" in capsys.readouterr().err


def test_run_prints_the_traceback_of_a_failing_script(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = write(tmp_path / "fails.py", "def go():\n    raise ValueError('boom')\ngo()\n")
    assert main(["run", "--device", "cpu", str(script)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):\n")
    assert f'File "{script}", line 3, in <module>' in err
    assert "ValueError: boom" in err
    assert "runpy" not in err and "vramguard/cli" not in err
    assert "the block raised ValueError" in err


def test_run_leak_policies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = write(
        tmp_path / "leaky.py",
        """
        import builtins, torch
        builtins._vramguard_cli_leak = torch.ones(16 * 2**20)  # 64 MiB that outlive the script
        """,
    )
    try:
        assert main(["run", "--device", "cpu", "--leaks", "raise", str(script)]) == 1
        err = capsys.readouterr().err
        assert re.search(r"error: leaky\.py leaked 64\.\d MiB \(--leaks raise\)", err), err
        del builtins._vramguard_cli_leak  # type: ignore[attr-defined]
        assert main(["run", "--device", "cpu", "--leaks", "warn", str(script)]) == 0
        assert re.search(r"warning: leaky\.py leaked 64\.\d MiB", capsys.readouterr().err)
        del builtins._vramguard_cli_leak  # type: ignore[attr-defined]
        assert main(["run", "--device", "cpu", "--leaks", "ignore", str(script)]) == 0
        assert "leaky.py leaked" not in capsys.readouterr().err
    finally:
        vars(builtins).pop("_vramguard_cli_leak", None)


def test_memory_in_the_script_globals_is_judged_before_they_are_dropped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Issue 13: judge first, then drop: what the program's globals still hold is named as its global.
    script = write(tmp_path / "tidy.py", "import torch\nx = torch.ones(16 * 2**20)\n")
    assert main(["run", "--device", "cpu", "--leaks", "raise", str(script)]) == 1
    err = capsys.readouterr().err
    assert re.search(r"leaked 64\.\d MiB", err), err
    assert "global __main__.x" in err


def test_run_saves_json_and_plot(tmp_path: Path) -> None:
    script = write(tmp_path / "job.py", "import torch\nx = torch.ones(4 * 2**20)\nx.mul_(2)\n")
    out, png = tmp_path / "out.json", tmp_path / "out.png"
    assert main(["run", "--device", "cpu", "--json", str(out), "--plot", str(png), str(script)]) == 0
    report = load_report(out)
    assert isinstance(report, SessionReport) and report.name == "job.py"
    assert report.timeline is not None, "--plot records a timeline"
    assert png_size(png) == (1000, 450)


def test_run_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path / "missing.py")]) == 2
    assert "vramguard run: error: invalid script=" in capsys.readouterr().err
    assert main(["run", "-m", "vramguard_no_such_module"]) == 2
    assert main(["run", "--device", "cuda:7", str(write(tmp_path / "a.py", "pass"))]) == 2
    assert "invalid device='cuda:7'" in capsys.readouterr().err


# -- vramguard report ------------------------------------------------------------------------
def test_report_renders_a_saved_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = write(tmp_path / "job.py", "pass\n")
    saved = tmp_path / "r.json"
    assert main(["run", "--device", "cpu", "--json", str(saved), str(script)]) == 0
    capsys.readouterr()
    png = tmp_path / "r.png"
    assert main(["report", str(saved), "--plot", str(png)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("vramguard session 'job.py' on cpu: ")
    assert out[1].split() == ["before", "peak", "at", "exit", "after"]
    assert out[-1] == f"plot written to {png}"
    assert png_size(png) == (1000, 450)


def test_report_of_a_bad_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main(["report", str(bad)]) == 2
    assert "vramguard report: error: malformed report: key 'kind' is missing" in capsys.readouterr().err


# -- vramguard devices -----------------------------------------------------------------------
def test_devices_without_a_driver(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(devices_command, "list_devices", lambda: [])
    monkeypatch.setattr(devices_command, "unavailable_reason", lambda: "NVML not available: no driver")
    assert main(["devices"]) == 0
    assert capsys.readouterr().out == "no GPU visible: NVML not available: no driver\n"
    assert main(["devices", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"devices": [], "unavailable_reason": "NVML not available: no driver"}


def test_devices_table(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    gpu = {
        "index": 0,
        "name": "Tesla T4",
        "total_bytes": 16 * 1024 * MIB,
        "used_bytes": 4 * 1024 * MIB,
        "processes": [{"pid": 99, "used_bytes": 3 * 1024 * MIB}],
    }
    monkeypatch.setattr(devices_command, "list_devices", lambda: [gpu])
    assert main(["devices"]) == 0
    lines = [line.rstrip() for line in capsys.readouterr().out.splitlines()]
    assert lines[0] == "GPUs (NVML)"
    assert " ".join(lines[3].split()) == "0 Tesla T4 16.0 GiB 4.00 GiB 12.0 GiB pid 99: 3.00 GiB"
    assert main(["devices", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["devices"] == [gpu]


# -- vramguard demo --------------------------------------------------------------------------
def test_demo_prints_both_runs_and_plots_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "demo.png"
    assert main(["demo", "--device", "cpu", "--layers", "1", "--steps", "1", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "vramguard session 'bare del' on cpu" in out
    assert "vramguard session 'vramguard' on cpu" in out
    assert "after a bare del the process still held" in out and "after the vramguard session, " in out
    assert f"plot of both runs written to {png}" in out
    assert png_size(png) == (1000, 900)


def test_demo_default_plot_and_no_plot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--device", "cpu", "--layers", "1", "--steps", "1", "--no-plot"]) == 0
    assert list(tmp_path.iterdir()) == []
    assert main(["demo", "--device", "cpu", "--layers", "1", "--steps", "1"]) == 0
    assert png_size(tmp_path / "vramguard-demo.png") == (1000, 900)


def test_demo_rejects_silly_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--device", "cpu", "--layers", "0"]) == 2
    assert "invalid layers=0" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["demo", "--no-plot"], ["devices"], ["report", "r.json"], ["run", "job.py"]])
def test_without_rich_the_commands_say_what_to_install(
    command: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "rich", None)
    assert main(command) == 2
    assert "pip install 'vramguard[cli]'" in capsys.readouterr().err


def test_the_command_list_shows_each_modules_help_without_loading_it() -> None:
    """Each subcommand's help is written once, in its module; ``vramguard --help`` reads it from
    there without importing the module (or torch)."""
    import importlib
    import os
    import subprocess
    import sys

    from vramguard import cli

    assert not hasattr(cli, "HELP"), "the command list keeps no copy of the helps"
    code = (
        "import sys; from vramguard.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('vramguard.cli.')))"
    )
    env = {**os.environ, "COLUMNS": "400"}  # one line per subcommand: no wrapping inside a help
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=99, check=True)
    *listing, loaded = done.stdout.strip().splitlines()
    assert loaded == "[]", loaded
    shown = {line.split()[0]: line.split(None, 1)[1] for line in listing if line.startswith("    ") and line.split()}
    assert shown == {name: importlib.import_module(f"vramguard.cli.{name}").HELP for name in cli.SUBCOMMANDS}


def test_check_loads_only_its_own_subcommand() -> None:
    import subprocess
    import sys

    from vramguard import cli

    folder = str(Path(cli.__file__).parent)
    code = (
        f"import sys; from vramguard.cli import main; rc = main(['check', '-q', '--select', 'VG001', {folder!r}]);"
        "print(sorted(m for m in ('vramguard.cli.run', 'vramguard.cli.demo', 'torch') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr
