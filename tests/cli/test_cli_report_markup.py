"""A saved report whose names hold rich markup renders through ``vramguard report`` as written
(a release step named "[/]" used to crash it with rich's MarkupError)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import vramguard
from vramguard import ReleaseStep


def test_markup_in_a_saved_reports_names_is_printed_as_written(tmp_path: Path) -> None:
    with vramguard.gpu_session("warm", device="cpu", leaks="ignore") as session:
        pass
    assert session.report is not None
    steps = (*session.report.release_steps, ReleaseStep("[/]", 0.001, 0, 0, "freed [bold]x\\[y]"))
    report = dataclasses.replace(session.report, name="[bold]train[/bold] \\[", release_steps=steps)
    vramguard.save_report(report, tmp_path / "r.json")
    done = subprocess.run(
        [sys.executable, "-m", "vramguard", "report", "r.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "MarkupError" not in done.stderr
    assert "vramguard session '[bold]train[/bold] \\\\['" in done.stdout  # the name's repr
    step = next(line for line in done.stdout.splitlines() if line.split()[:1] == ["[/]"])
    assert step.rstrip().endswith("freed [bold]x\\[y]"), step
