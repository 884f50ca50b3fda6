"""JSON files: save, load back by kind, and clear errors for files that are not reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from report_factories import CACHE_LEAK, MODEL, model_leaks, release_report, session_report, timeline

import vramguard
from vramguard import InvalidArgument, Leak, LeakGroup, Leaks, ReleaseReport, ReportFormatError, SessionReport
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
    ("content", "error", "reason"),
    [
        (None, InvalidArgument, "No such file"),
        ("not json", InvalidArgument, "not JSON"),
        ('{"kind": "other"}', ReportFormatError, "kind"),
        ('{"kind": "session", "name": "x"}', ReportFormatError, "malformed report: key 'device' is missing"),
    ],
)
def test_files_that_are_not_reports(tmp_path: Path, content: str | None, error: type[Exception], reason: str) -> None:
    path = tmp_path / "r.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(error, match=reason):
        load_report(path)


def test_only_records_are_saved(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="report"):
        save_report({"kind": "session"}, tmp_path / "r.json")  # type: ignore[arg-type]


def test_leaks_are_saved_flat_and_grouped() -> None:
    leaks = (*model_leaks(3), CACHE_LEAK)
    data = session_report(leaks=leaks).to_dict()
    assert [leak["group"] for leak in data["leaks"]] == [MODEL, MODEL, MODEL, "global __main__.CACHE"]
    assert data["leaks"][-1] == {
        "nbytes": 2**20,
        "description": "float32[512, 512] cpu",
        "created_at": "cache.py:7",
        "holders": ["global __main__.CACHE['k'][0]"],
        "group": "global __main__.CACHE",
        "owner_kind": None,
    }
    assert [(g["holder"], g["nbytes"], g["count"]) for g in data["leak_groups"]] == [
        (MODEL, 3 * 2**19 + 2 * 2**17, 3),
        ("global __main__.CACHE", 2**20, 1),
    ]
    assert data["leak_groups"][0]["tensors"] == [leak.to_dict() for leak in leaks[:3]]
    assert [LeakGroup.from_dict(g) for g in data["leak_groups"]] == list(session_report(leaks=leaks).leak_groups)


def test_grouped_leaks_round_trip(tmp_path: Path) -> None:
    report = session_report(leaks=(*model_leaks(117), CACHE_LEAK))
    again = load_report(save_report(report, tmp_path / "r.json"))
    assert isinstance(again, SessionReport) and isinstance(again.leaks, Leaks)
    assert again == report and again.leak_groups == report.leak_groups
    assert [(g.holder, g.count) for g in again.leak_groups] == [(MODEL, 117), ("global __main__.CACHE", 1)]


def test_reports_saved_before_leak_groups_still_load(tmp_path: Path) -> None:
    data = session_report().to_dict()
    del data["leak_groups"]
    for leak in data["leaks"]:
        del leak["group"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    again = load_report(path)
    assert isinstance(again, SessionReport)
    assert again.leaks == (Leak(64 * 2**20, "float32 tensor [4096, 4096]", "encode.py:12", ("cache['last'] (dict)",)),)
    assert [(g.holder, g.count) for g in again.leak_groups] == [("cache['last'] (dict)", 1)]


def test_a_named_owners_kind_is_saved_apart_from_its_path_and_round_trips(tmp_path: Path) -> None:
    pkv = "global __main__.PKV"
    leaks = tuple(
        Leak(2**19, "float32[1, 2, 64, 16] cpu", None, (f"{pkv}.layers[{i}].keys",), pkv, "KV cache, 2 layers")
        for i in range(2)
    )
    report = session_report(leaks=leaks)
    data = report.to_dict()
    assert {(leak["group"], leak["owner_kind"]) for leak in data["leaks"]} == {(pkv, "KV cache, 2 layers")}
    assert [(g["holder"], g["owner_kind"], g["count"]) for g in data["leak_groups"]] == [
        (pkv, "KV cache, 2 layers", 2)
    ]
    again = load_report(save_report(report, tmp_path / "r.json"))
    assert isinstance(again, SessionReport) and again == report
    assert [(g.holder, g.owner_kind) for g in again.leak_groups] == [(pkv, "KV cache, 2 layers")]
    assert [LeakGroup.from_dict(g) for g in data["leak_groups"]] == list(report.leak_groups)
    for leak in data["leaks"]:
        del leak["owner_kind"]  # a file written before the key: no kind, the same groups
    older = load_report(_write(tmp_path / "old.json", data))
    assert isinstance(older, SessionReport)
    assert [(g.holder, g.owner_kind, g.count) for g in older.leak_groups] == [(pkv, None, 2)]


def _write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path
