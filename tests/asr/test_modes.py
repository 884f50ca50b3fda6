"""The pipeline's modes in one place (vramguard/asr/_modes.py): the CLI, docs/asr.md and the
docstrings name the modes of ``MODES``; the asr modules import one another without a circle."""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import pytest

import vramguard
import vramguard.asr
from vramguard.asr import MODES, ASRDiarizationPipeline
from vramguard.asr import _pipeline as pipeline_module
from vramguard.cli import build_parser

PACKAGE = Path(vramguard.asr.__file__).parent
DOCS = PACKAGE.parents[1] / "docs" / "asr.md"


def _mode_option() -> argparse.Action:
    parser = build_parser(("asr",))
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return next(a for a in sub.choices["asr"]._actions if "--mode" in a.option_strings)


def test_the_cli_offers_every_mode_with_its_line() -> None:
    option = _mode_option()
    assert tuple(option.choices or ()) == tuple(MODES)
    assert option.default in MODES
    assert option.help is not None
    for mode in MODES.values():
        assert f"{mode.name}: {mode.summary}" in option.help


def test_the_docs_and_the_docstrings_name_the_same_modes() -> None:
    rows = re.findall(r'^\| `"(\w+)"`', DOCS.read_text(encoding="utf-8"), flags=re.MULTILINE)
    assert rows == list(MODES), "docs/asr.md's table of modes"
    assert pipeline_module.__doc__ is not None
    named = re.findall(r'``"(\w+)"``', pipeline_module.__doc__.split("The modes", 1)[1].split("\n\n")[0])
    assert named == list(MODES), "the pipeline's docstring"
    assert "Two modes" not in pipeline_module.__doc__


def test_each_mode_is_one_object_under_its_name() -> None:
    assert list(MODES) == ["resident", "staged", "swap", "isolated"]
    assert all(mode.name == name for name, mode in MODES.items())
    assert {name for name, mode in MODES.items() if mode.keeps_models} == {"resident", "swap"}
    assert all(mode.in_worker in MODES and MODES[mode.in_worker].in_worker == mode.in_worker for mode in MODES.values())
    with pytest.raises(TypeError):
        MODES["eager"] = MODES["staged"]  # type: ignore[index]


@pytest.mark.parametrize("mode", ["eager", ["staged"], None])
def test_an_unknown_mode_is_refused_naming_the_modes(mode: object) -> None:
    with pytest.raises(vramguard.InvalidArgument) as caught:
        ASRDiarizationPipeline.from_pretrained("whisper", "pyannote", device="cpu", mode=mode)  # type: ignore[arg-type]
    assert caught.value.argument == "mode"
    assert all(name in str(caught.value) for name in MODES)


def _imports(path: Path) -> set[str]:
    """The asr modules ``path`` imports, at any level, ``if TYPE_CHECKING:`` blocks excepted."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vramguard.asr"):
            if node.module == "vramguard.asr":
                found.update(a.name if (PACKAGE / f"{a.name}.py").exists() else "__init__" for a in node.names)
            else:
                found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[2] for a in node.names if a.name.startswith("vramguard.asr."))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found - {path.stem}


def test_no_module_of_the_package_imports_one_that_imports_it_back() -> None:
    graph = {path.stem: _imports(path) for path in PACKAGE.glob("*.py")}
    assert "_pipeline" not in graph["_spread"] and "_pipeline" not in graph["_modes"]

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph.get(start, ()))

    circles = sorted(name for name in graph if reaches(name, name, {name}))
    assert circles == [], f"modules on an import circle: {circles}"


@pytest.mark.slow
def test_on_result_hands_each_file_over_once_done_and_an_interrupt_keeps_them(
    tiny_whisper: Path, tiny_diarizer: Path, sample_audio: Path, tmp_path: Path
) -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("pyannote.audio")
    from tests.asr.conftest import GENERATE

    missing = tmp_path / "absent.wav"
    with ASRDiarizationPipeline.from_pretrained(
        tiny_whisper, tiny_diarizer, device="cpu", mode="staged", generate_kwargs=GENERATE
    ) as pipe:
        got: list[vramguard.asr.FileResult] = []
        results = pipe.map(
            [sample_audio, missing, sample_audio], errors="collect", progress=False, on_result=got.append
        )
        assert got == results and [r.ok for r in got] == [True, False, True]
        previous = pipe.last_reports

        def stop_after_the_first(result: vramguard.asr.FileResult) -> None:
            got.append(result)
            raise KeyboardInterrupt  # what Ctrl-C raises in the middle of a call

        got.clear()
        with pytest.raises(KeyboardInterrupt):
            pipe.map([sample_audio, sample_audio], progress=False, on_result=stop_after_the_first)
        assert len(got) == 1 and got[0].segments
        # The stages that ended (the ASR stage) and the one interrupted, not the previous call's.
        assert [r.name for r in pipe.last_reports] == ["asr stage", "diarizer stage"]
        assert not any(r is p for r in pipe.last_reports for p in previous)
    with pytest.raises(vramguard.InvalidArgument, match="on_result"):
        pipe.map([], on_result="print")  # type: ignore[arg-type]
