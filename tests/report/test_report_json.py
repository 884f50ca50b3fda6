"""JSON files: save, load back by kind, and clear errors for files that are not reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from report_factories import release_report, session_report, timeline

import vramguard
from vramguard import InvalidArgument, ReleaseReport, SessionReport
from vramguard.report import load_report, save_report


def test_session_report_round_trips(tmp_path: Path) -> None:
    report = session_report(timeline=timeline())
    path = save_report(report, tmp_path / "r.json")
    assert json.loads(path.read_text())["kind"] == "session"
    again = load_report(path)
    assert isinstance(again, SessionReport)
    assert again == report


def test_release_report_round_trips(tmp_path: Path) -> None:
    report = release_report()
    again = load_report(save_report(report, tmp_path / "r.json"))
    assert isinstance(again, ReleaseReport)
    assert again == report


def test_live_session_round_trips_without_its_memory_history(tmp_path: Path) -> None:
    with vramguard.gpu_session("live", device="cpu", leaks="ignore") as session:
        pass
    assert session.report is not None
    again = load_report(save_report(session.report, tmp_path / "r.json"))
    assert again == session.report
    assert isinstance(again, SessionReport) and again.memory_history is None


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "No such file"),
        ("not json", "not JSON"),
        ('{"kind": "other"}', "kind"),
        ('{"kind": "session", "name": "x"}', "malformed"),
    ],
)
def test_files_that_are_not_reports(tmp_path: Path, content: str | None, reason: str) -> None:
    path = tmp_path / "r.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InvalidArgument, match=reason):
        load_report(path)


def test_only_records_are_saved(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="report"):
        save_report({"kind": "session"}, tmp_path / "r.json")  # type: ignore[arg-type]
