"""``vramguard report --plot`` refuses a file matplotlib cannot write before it reads or prints
anything, as ``run`` and ``demo`` do (issue 30)."""

from __future__ import annotations

from pathlib import Path

import pytest

import vramguard
from vramguard.cli import main


def test_report_refuses_a_plot_suffix_matplotlib_cannot_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    with vramguard.gpu_session("saved", device="cpu") as session:
        pass
    assert session.report is not None
    saved = vramguard.save_report(session.report, tmp_path / "r.json")
    page = tmp_path / "x.html"
    assert main(["report", str(saved), "--plot", str(page)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "", "nothing rendered before the refusal"
    err = captured.err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"vramguard report: error: invalid --plot='{page}'"), err[0]
    assert "an image file name ending in one of" in err[0] and ".png" in err[0]
    assert not page.exists()
    # a suffix it can write passes the same check
    assert main(["report", str(saved), "--plot", str(tmp_path / "x.png")]) == 0
