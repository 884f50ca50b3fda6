"""Report JSON: ``"schema": 1``, every earlier schema read back from a kept fixture, and malformed
keys answered with a one-line ReportFormatError naming the key (``vramguard report``: exit 2)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from report_factories import CACHE_LEAK, model_leaks, release_report, session_report, timeline

import vramguard
from vramguard import InvalidArgument, OrderViolation, ReleaseReport, ReportFormatError, SessionReport
from vramguard.cli import main
from vramguard.report import report_from_dict

FIXTURES = Path(__file__).parent / "fixtures"


def _fixture_session() -> SessionReport:
    """The record the session fixtures hold (written from it, once per schema)."""
    return session_report(
        timeline=timeline(6),
        leaks=(*model_leaks(2), CACHE_LEAK),
        order_violations=(OrderViolation("a.py:3", 1024),),
        notes=("a note",),
        cycles=("a cycle",),
    )


@pytest.mark.parametrize("schema", [0, 1])
def test_every_schema_so_far_loads_from_its_fixture(schema: int) -> None:
    session = vramguard.load_report(FIXTURES / f"schema{schema}_session.json")
    release = vramguard.load_report(FIXTURES / f"schema{schema}_release.json")
    assert isinstance(session, SessionReport) and session == _fixture_session()
    assert isinstance(release, ReleaseReport) and release == release_report()
    raw = json.loads((FIXTURES / f"schema{schema}_session.json").read_text())
    assert raw.get("schema", 0) == schema


def test_saved_reports_carry_schema_1(tmp_path: Path) -> None:
    for report in (session_report(), release_report()):
        path = vramguard.save_report(report, tmp_path / "r.json")
        assert json.loads(path.read_text())["schema"] == 1
        assert vramguard.load_report(path) == report


def test_a_later_schema_is_refused_by_name() -> None:
    data = session_report().to_dict()
    data["schema"] = 2
    with pytest.raises(ReportFormatError, match="'schema' is 2") as caught:
        report_from_dict(data)
    assert caught.value.key == "schema"


def _set(data: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(data)
    target: Any = changed
    for part in path[:-1]:
        target = target[part]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return changed


_DELETE = object()
MALFORMED = [
    (("name",), _DELETE, "name", "missing"),
    (("device",), 5, "device", "a string"),
    (("device",), ["cuda"], "device", "a string"),
    (("leaked_bytes",), 10**400, "leaked_bytes", "an int"),
    (("kept_bytes",), 1.5, "kept_bytes", "an int"),
    (("peak_allocated_bytes",), "300 MiB", "peak_allocated_bytes", "an int"),
    (("duration_s",), float("nan"), "duration_s", "a finite number"),
    (("duration_s",), 10**400, "duration_s", "a finite number"),
    (("released",), "yes", "released", "true or false"),
    (("before",), [], "before", "a JSON object"),
    (("before", "allocated_bytes"), "x", "before.allocated_bytes", "an int"),
    (("before", "time_s"), _DELETE, "before.time_s", "missing"),
    (("before", "notes"), "n", "before.notes", "a JSON array"),
    (("leaks", 0, "nbytes"), _DELETE, "leaks[0].nbytes", "missing"),
    (("leaks", 0, "holders"), [1], "leaks[0].holders[0]", "a string"),
    (("leaks", 0), "leak", "leaks[0]", "a JSON object"),
    (("leaks", 0, "owner_kind"), 5, "leaks[0].owner_kind", "a string or null"),
    (("release_steps", 1, "duration_s"), None, "release_steps[1].duration_s", "a finite number"),
    (("release_steps", 1, "bogus"), 1, None, None),  # an unknown key is ignored, as before
    (("notes",), [None], "notes[0]", "a string"),
    (("timeline", "samples", 0), [0.0, 1], "timeline.samples[0]", "t_s"),
    (("timeline", "marks", 0), [0.0, 7], "timeline.marks[0]", "label"),
    (("order_violations", 0, "bytes_left_cached"), True, "order_violations[0].bytes_left_cached", "an int"),
    (("kind",), _DELETE, "kind", "missing"),
]


@pytest.mark.parametrize(("path", "value", "key", "accepted"), MALFORMED)
def test_a_malformed_key_is_named(path: tuple[Any, ...], value: Any, key: str | None, accepted: str | None) -> None:
    data = _set(_fixture_session().to_dict(), path, value)
    if key is None:
        assert report_from_dict(data) == _fixture_session()
        return
    with pytest.raises(ReportFormatError) as caught:
        report_from_dict(data)
    assert caught.value.key == key
    assert accepted in str(caught.value)
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, vramguard.VramGuardError)


def test_the_from_dict_methods_name_the_key_too() -> None:
    with pytest.raises(ReportFormatError, match="'before'"):
        SessionReport.from_dict({"kind": "session", "name": "x", "device": "cpu"})
    with pytest.raises(ReportFormatError, match="top level"):
        SessionReport.from_dict([])  # type: ignore[arg-type]
    data = release_report().to_dict()
    data["steps"] = {"drop": 1}
    with pytest.raises(ReportFormatError, match="'steps' is"):
        ReleaseReport.from_dict(data)


@pytest.mark.parametrize(
    ("path", "value"), [(("device",), 5), (("leaked_bytes",), 10**400), (("before", "rss_bytes"), 1e308)]
)
def test_the_cli_answers_a_malformed_file_with_exit_2_and_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], path: tuple[Any, ...], value: Any
) -> None:
    # 10**400 is a valid JSON integer; before the checks, rendering it raised OverflowError.
    file = tmp_path / "bad.json"
    file.write_text(json.dumps(_set(session_report().to_dict(), path, value)))
    assert main(["report", str(file)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and "malformed report" in err and ".".join(map(str, path)) in err


def test_a_file_that_is_not_json_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for text in ("9" * 5000, "[" * 100_000, "\xff"):
        file = tmp_path / "bad.json"
        file.write_text(text, encoding="latin-1")
        with pytest.raises(InvalidArgument, match="not JSON"):
            vramguard.load_report(file)
        assert main(["report", str(file)]) == 2
        assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("where", ["missing/out.png", "."])
def test_report_plot_path_is_checked_before_anything_renders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    monkeypatch.chdir(tmp_path)
    file = vramguard.save_report(session_report(), tmp_path / "r.json")
    assert main(["report", str(file), "--plot", where]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "--plot" in err


def test_save_report_names_a_path_it_cannot_write(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="path"):
        vramguard.save_report(session_report(), tmp_path / "missing" / "r.json")
    with pytest.raises(InvalidArgument, match="path"):
        vramguard.save_report(session_report(), tmp_path)
    with pytest.raises(InvalidArgument, match="path"):
        vramguard.load_report(5)  # type: ignore[arg-type]


def test_a_dollar_in_the_name_plots_as_text(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    # "$_$" is mathtext with a subscript of nothing: it raised ValueError before the escape.
    report = session_report(name="bench$_$.py", timeline=timeline(6))
    written = report.plot(tmp_path / "p.png")
    assert written.stat().st_size > 0
    again = session_report(name="cost $5 and $6")
    assert again.plot(tmp_path / "q.png").stat().st_size > 0
