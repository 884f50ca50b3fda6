"""Bad input, fuzzed: every public function's arguments, the pytest markers' arguments, the
CLI's arguments and report JSON. The only errors allowed out are InvalidArgument (naming the
argument), ReportFormatError (naming the key) and, from the CLI, exit code 2; never an
AttributeError, KeyError, TypeError or OverflowError from inside, and never a half-registered
session."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vramguard
from vramguard import InvalidArgument, ReportFormatError, gpu_session
from vramguard.cli import main
from vramguard.core import _hooks, _run
from vramguard.pytest_plugin import MARKERS
from vramguard.report import report_from_dict

FIXTURES = Path(__file__).parent.parent / "report" / "fixtures"

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.sampled_from([10**400, -(10**400), 2**63, 2**64])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
"""Any JSON value (and the non-standard NaN and Infinity Python's json reads)."""

JUNK = (
    JSON
    | st.binary(max_size=8)
    | st.sampled_from([object(), torch.ones(3), torch.device("meta"), float("nan"), -1, 10**400, "9" * 5000])
    | st.builds(lambda n: __import__("numpy").arange(n), st.integers(0, 3))
)
"""Anything a caller might pass by mistake."""

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _outcome(call: Callable[[], Any]) -> tuple[Any, str | None]:
    """(the result, None), or (None, the argument an InvalidArgument named): nothing else may come out."""
    try:
        return call(), None
    except InvalidArgument as error:
        return None, error.argument


def _clean() -> bool:
    return all(not runs for runs in _run._active.values()) and not _hooks.empty_cache_listeners


@FAST
@given(JUNK)
def test_parse_size(value: Any) -> None:
    nbytes, refused = _outcome(lambda: vramguard.parse_size(value, argument="limit"))
    assert refused == "limit" or (isinstance(nbytes, int) and nbytes >= 0)


@FAST
@given(JUNK, JUNK)
def test_format_size(value: Any, signed: Any) -> None:
    text, refused = _outcome(lambda: vramguard.format_size(value, signed=signed))
    assert refused in ("nbytes", "signed") or isinstance(text, str)


@FAST
@given(JUNK)
def test_resolve_device(value: Any) -> None:
    device, refused = _outcome(lambda: vramguard.resolve_device(value))
    assert refused == "device" or device.type in ("cpu", "cuda")


OPTIONS = (
    "device",
    "release",
    "leaks",
    "leak_tolerance",
    "max_peak",
    "census",
    "strict",
    "sample_every",
    "record_history",
    "holder_levels",
    "holder_width",
    "holder_leaks",
)


@FAST
@given(st.sampled_from(OPTIONS), JUNK, JUNK)
def test_gpu_session_options(option: str, value: Any, name: Any) -> None:
    session, refused = _outcome(lambda: gpu_session(name if isinstance(name, str) else None, **{option: value}))
    assert refused in (option, "device") or not session.active
    assert _clean()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JUNK, JUNK)
def test_release_arguments(attrs: Any, evict: Any) -> None:
    class Holder:
        x: Any = None

    holder = Holder()
    holder.x = torch.ones(4)
    _, refused = _outcome(lambda: vramguard.release(holder, attrs=attrs, evict=evict, device="cpu"))
    if refused is not None:
        assert refused in ("attrs", "evict")
        assert holder.x is not None  # refused before anything changed
    assert _clean()


@FAST
@given(JUNK, JUNK, JUNK)
def test_snapshot_arguments(device: Any, nvml: Any, uss: Any) -> None:
    snap, refused = _outcome(lambda: vramguard.snapshot(device, nvml=nvml, uss=uss))
    assert refused in ("device", "nvml", "uss") or snap.device.startswith(("cpu", "cuda"))


@FAST
@given(st.sampled_from(sorted(MARKERS)), JUNK)
def test_marker_arguments(marker: str, value: Any) -> None:
    report = vramguard.load_report(FIXTURES / "schema1_session.json")
    _, refused = _outcome(lambda: MARKERS[marker](value, _report=report))
    assert refused in (None, "max_peak", "max_leak")


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += _paths(value, (*prefix, index))
    return found


SESSION = json.loads((FIXTURES / "schema1_session.json").read_text())
RELEASE = json.loads((FIXTURES / "schema1_release.json").read_text())


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    data = copy.deepcopy(draw(st.sampled_from([SESSION, RELEASE])))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(data)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        target = data
        for part in path[:-1]:
            target = target[part]
        if draw(st.booleans()) and isinstance(target, dict):
            del target[path[-1]]
        else:
            target[path[-1]] = draw(JSON)
    return data


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_report_json(data: Any) -> None:
    try:
        report = report_from_dict(data)
    except ReportFormatError as error:
        problem = error
    else:
        problem = None
    if problem is not None:
        assert "\n" not in str(problem) and problem.key
        return
    # What loads renders: every figure it holds is one format_size and the tables accept.
    assert str(report)
    assert report_from_dict(json.loads(json.dumps(report.to_dict()))) == report


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(mutated())
def test_the_report_command_on_any_file(tmp_path: Path, data: Any) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["report", str(path)])
    assert code in (0, 2)
    if code == 2:
        assert err.getvalue().count("\n") == 1


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.sampled_from(["-v", "--plot", "--json", "x.png", "", "-", "--", "$_$.png", "--verbose"])
        | st.text(max_size=8),
        max_size=4,
    )
)
def test_the_report_command_arguments(tmp_path: Path, extra: list[str]) -> None:
    path = vramguard.save_report(vramguard.load_report(FIXTURES / "schema1_release.json"), tmp_path / "r.json")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), contextlib.chdir(tmp_path):
        try:
            code = main(["report", str(path), *extra])
        except SystemExit as exit_:  # argparse's own answer to a bad option: usage, exit 2
            code = exit_.code  # type: ignore[assignment]
    assert code in (0, 2)


@pytest.mark.parametrize(
    "argv", [["report"], ["report", "--plot"], ["nosuch"], [], ["report", "r.json", "--no-such-option"]]
)
def test_cli_usage_errors_exit_2(argv: list[str]) -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
