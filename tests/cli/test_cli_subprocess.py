"""Each subcommand once as a real program: ``python -m vramguard ...`` in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def vramguard(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vramguard", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_run_and_report(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text("import sys, torch\nx = torch.ones(2**20)\nprint('args', sys.argv[1:])\nsys.exit(4)\n")
    done = vramguard("run", "--device", "cpu", "--json", "r.json", str(script), "--x", cwd=tmp_path)
    assert done.returncode == 4, done.stderr
    assert done.stdout == "args ['--x']\n", "the report goes to stderr, the program's output stays clean"
    assert "vramguard session 'job.py' on cpu" in done.stderr
    shown = vramguard("report", "r.json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("vramguard session 'job.py' on cpu: ")


def test_devices(tmp_path: Path) -> None:
    done = vramguard("devices", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert set(data) == {"devices", "unavailable_reason"}
    assert data["devices"] or data["unavailable_reason"]


def test_demo(tmp_path: Path) -> None:
    done = vramguard("demo", "--device", "cpu", "--layers", "1", "--steps", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "after a bare del the process still held" in done.stdout
    assert (tmp_path / "vramguard-demo.png").stat().st_size > 10_000
