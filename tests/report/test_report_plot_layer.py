"""A record draws itself without importing its renderer: ``report.plot(path)`` runs the plotter the
report layer registered when it was loaded, and says what to import when it never was (issue 27)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "schema1_session.json"


def test_a_record_plots_through_the_report_layer_it_never_imports(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    code = textwrap.dedent(f"""
        import json, sys
        from vramguard.core._records import SessionReport
        from vramguard.core._errors import SessionError

        report = SessionReport.from_dict(json.load(open({str(FIXTURE)!r})))
        try:
            report.plot({str(tmp_path / "early.png")!r})
        except SessionError as error:
            print("refused:", error)
        print("report layer loaded:", sorted(m for m in sys.modules if m.startswith("vramguard.report")))
        import vramguard.report.plot
        print("written:", report.plot({str(tmp_path / "late.png")!r}).stat().st_size > 0)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("refused: plotting a report needs vramguard's report layer"), lines
    assert "import vramguard.report.plot" in lines[0]
    assert lines[1] == "report layer loaded: []"
    assert lines[2] == "written: True"
    assert not (tmp_path / "early.png").exists()


def test_the_quickstart_path_plots_after_only_import_vramguard(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    picture = tmp_path / "q.png"
    code = textwrap.dedent(f"""
        import vramguard
        with vramguard.gpu_session("q", device="cpu") as s:
            pass
        print(s.report.plot({str(picture)!r}).stat().st_size > 0)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
