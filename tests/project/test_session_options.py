"""gpu_session's arguments are written once (``vramguard.core._options.ARGUMENTS``): the typed
shortcut, the checking function and the docs agree with that list (issue 27)."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import vramguard
from vramguard.core import _options
from vramguard.core._options import ARGUMENTS, SessionOptions

ROOT = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("options_table", ROOT / "scripts" / "options_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _keywords(fn: Any) -> list[tuple[str, str]]:
    return [
        (p.name, repr(p.default).replace("'", '"'))
        for p in inspect.signature(fn).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]


EXPECTED = [(a.name, a.default) for a in ARGUMENTS]


def test_the_checking_function_takes_exactly_the_arguments_listed() -> None:
    assert _keywords(SessionOptions.from_arguments) == EXPECTED


@pytest.mark.skipif(sys.version_info < (3, 11), reason="typing.get_overloads is Python 3.11+")
def test_the_typed_shortcut_names_exactly_the_arguments_listed() -> None:
    from typing import get_overloads

    from vramguard import _api

    keyword_overloads = [fn for fn in get_overloads(_api.gpu_session) if "release" in inspect.signature(fn).parameters]
    assert len(keyword_overloads) == 1
    assert _keywords(keyword_overloads[0]) == EXPECTED


def test_the_readme_and_the_sessions_page_show_the_generated_list() -> None:
    script = _script()
    assert script.main(["--check"]) == 0, "run .venv/bin/python scripts/options_table.py"
    for path in script.FILES:
        text = path.read_text(encoding="utf-8")
        assert script.block() in text
        for argument in ARGUMENTS:
            assert f"| `{argument.name}` |" in text


def test_an_unknown_argument_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match="holder_depth"):
        vramguard.gpu_session(device="cpu", holder_depth=3)


@given(
    release=st.booleans(),
    census=st.booleans(),
    leaks=st.sampled_from(["ignore", "warn", "raise"]),
    tolerance=st.integers(0, 2**40),
    peak=st.none() | st.integers(0, 2**40),
    levels=st.integers(1, 100_000),
    every=st.none() | st.floats(0.001, 60),
)
def test_options_build_again_from_their_arguments(
    release: bool, census: bool, leaks: str, tolerance: int, peak: int | None, levels: int, every: float | None
) -> None:
    options = SessionOptions.from_arguments(
        device="cpu",
        release=release,
        census=census,
        leaks=leaks,
        leak_tolerance=tolerance,
        max_peak=peak,
        holder_levels=levels,
        sample_every=every,
    )
    assert SessionOptions.from_arguments(**options.arguments()) == options
    assert options.device == torch.device("cpu")


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The arguments of every ``SessionOptions.from_arguments`` call (the real one runs), with no
    options made earlier in the process."""
    calls: list[dict[str, Any]] = []
    real = SessionOptions.from_arguments.__func__  # type: ignore[attr-defined]

    def counted(cls: type[SessionOptions], **arguments: Any) -> SessionOptions:
        calls.append(arguments)
        return real(cls, **arguments)  # type: ignore[no-any-return]

    monkeypatch.setattr(SessionOptions, "from_arguments", classmethod(counted))
    _options._MADE.clear()
    return calls


def test_a_decorated_function_checks_its_options_once(checks: list[dict[str, Any]]) -> None:
    @vramguard.gpu_session(device="cpu", leaks="ignore")
    def step() -> int:
        return 1

    for _ in range(5):
        step()
    assert len(checks) == 1
    assert step.vram_report is not None  # type: ignore[attr-defined]


def test_a_session_takes_options_built_once() -> None:
    options = SessionOptions.from_arguments(device="cpu", leaks="ignore")
    with vramguard.gpu_session("step", options=options) as s:
        pass
    assert s.options is options and s.report is not None and s.report.name == "step"
    with pytest.raises(vramguard.InvalidArgument, match="options"):
        vramguard.GpuSession("step", options=options, leaks="warn")
    assert "vramguard" in sys.modules


def test_the_same_plain_arguments_give_the_same_options_once() -> None:
    _options._MADE.clear()
    first = _options.options_of({"device": "cpu", "leaks": "ignore"})
    assert _options.options_of({"device": "cpu", "leaks": "ignore"}) is first
    assert _options.options_of({"leaks": "ignore", "device": "cpu"}) == first  # another order: its own entry
    # Equal but of another type is another key: True == 1, and 1 is no flag.
    assert _options.options_of({"device": "cpu", "census": True}).census is True
    with pytest.raises(vramguard.InvalidArgument, match="census"):
        _options.options_of({"device": "cpu", "census": 1})
    # A bad argument is refused every time, never cached.
    for _ in range(2):
        with pytest.raises(vramguard.InvalidArgument, match="leaks"):
            _options.options_of({"device": "cpu", "leaks": "loud"})


def test_the_graph_bound_variable_is_read_with_a_census(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_options.GRAPH_NODES_VAR, "1000")
    small = _options.options_of({"device": "cpu"})
    monkeypatch.setenv(_options.GRAPH_NODES_VAR, "2000")
    large = _options.options_of({"device": "cpu"})
    assert (small.bounds.graph_nodes, large.bounds.graph_nodes) == (1000, 2000)


def test_arguments_of_other_types_are_checked_each_time(checks: list[dict[str, Any]]) -> None:
    class Device(str):  # a str subclass: not a plain argument, never a key
        pass

    for _ in range(3):
        _options.options_of({"device": Device("cpu")})
    assert len(checks) == 3


def test_the_current_cuda_device_is_read_at_each_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """``device="auto"`` (the default) and ``"cuda"`` mean the current CUDA device, which
    ``torch.cuda.set_device`` changes: made options never freeze it. CUDA is said to be here and
    its current device to move (the edge this machine cannot run); the rest is the real code."""
    from vramguard.probes import _device

    current = [0]
    monkeypatch.setattr(_device, "cuda_available", lambda: True)
    monkeypatch.setattr(_device, "cuda_device_count", lambda: 2)
    monkeypatch.setattr(_device, "_current", lambda: current[0])
    _options._MADE.clear()
    for arguments in ({}, {"device": "auto"}, {"device": "cuda"}, {"device": torch.device("cuda")}):
        current[0] = 0
        assert _options.options_of(dict(arguments)).device == torch.device("cuda", 0)
        current[0] = 1
        assert _options.options_of(dict(arguments)).device == torch.device("cuda", 1), arguments
    assert _options.options_of({"device": "cuda:0"}).device == torch.device("cuda", 0)
    _options._MADE.clear()
