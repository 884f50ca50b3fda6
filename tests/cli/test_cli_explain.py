"""``vramguard explain``: a real script explained at its end and at a marker; bad input exits 2
with one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = """\
import sys, torch, vramguard
WEIGHTS = torch.ones(250_000)
vramguard.mark("loaded")
LATER = torch.ones(125_000)
print("done", sys.argv[1:])
"""


def vramguard(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vramguard", *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_explain_at_the_end_names_the_scripts_globals(tmp_path: Path) -> None:
    (tmp_path / "job.py").write_text(SCRIPT)
    done = vramguard("explain", "--device", "cpu", "--json", "l.json", "--plot", "l.png", "job.py", "--x", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "done ['--x']\n", "the ledger goes to stderr"
    assert "vramguard explain: cpu" in done.stderr
    data = json.loads((tmp_path / "l.json").read_text())
    by_holder = {line["holder"]: line for line in data["lines"]}
    assert by_holder["global __main__.WEIGHTS"]["nbytes"] == 1_000_000
    assert by_holder["global __main__.LATER"]["nbytes"] == 500_000
    assert sum(line["nbytes"] for line in data["lines"]) == data["total_bytes"]
    assert data["lines"][-1]["category"] == "residual"
    assert (tmp_path / "l.png").read_bytes()[:4] == b"\x89PNG" and "picture saved to" in done.stderr


def test_explain_at_a_marker_sees_the_process_there(tmp_path: Path) -> None:
    (tmp_path / "job.py").write_text(SCRIPT)
    done = vramguard("explain", "--device", "cpu", "--at", "loaded", "--json", "l.json", "job.py", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    holders = {line["holder"] for line in json.loads((tmp_path / "l.json").read_text())["lines"]}
    assert "global __main__.WEIGHTS" in holders
    assert "global __main__.LATER" not in holders


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "job.py").write_text(SCRIPT)
    missing = vramguard("explain", "--device", "cpu", "nope.py", cwd=tmp_path)
    never = vramguard("explain", "--device", "cpu", "--at", "never", "job.py", cwd=tmp_path)
    for done in (missing, never):
        assert done.returncode == 2, done.stderr
        errors = [line for line in done.stderr.splitlines() if "error" in line]
        assert len(errors) == 1 and errors[0].startswith("vramguard explain: error: "), done.stderr
    assert "never called vramguard.mark('never')" in never.stderr
    assert "nope.py" in missing.stderr


def test_the_timeout_takes_the_shared_duration_forms() -> None:
    """``--timeout`` reads ``500ms``, ``2m`` and bare seconds like every other time option."""
    from vramguard.cli import build_parser

    parser = build_parser(("explain",))
    for text, seconds in (("500ms", 0.5), ("2m", 120.0), ("300", 300.0)):
        assert parser.parse_args(["explain", "--pid", "1", "--timeout", text]).timeout == seconds
    assert parser.parse_args(["explain", "--pid", "1"]).timeout == 60.0


def test_a_bad_timeout_is_one_usage_error(tmp_path: Path) -> None:
    done = vramguard("explain", "--pid", "1", "--timeout", "soon", cwd=tmp_path)
    assert done.returncode == 2
    assert "'soon' is not a timeout from 10ms to 86400s (seconds, or with a unit: 500ms, 1s, 2m)" in done.stderr
