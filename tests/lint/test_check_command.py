"""``vramguard check``'s controls: noqa, select/ignore, exclude and .gitignore, pyproject, formats, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vramguard.cli import main

BAD = "import torch\n\ndef f(x):\n    torch.cuda.empty_cache()\n    del x\n"
LOOP = "import torch\n\nfor b in range(3):\n    torch.cuda.empty_cache()\n    run(b)\n"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "bad.py").write_text(BAD)
    (tmp_path / "src" / "loop.py").write_text(LOOP)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["check", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_exit_codes_and_the_clean_line(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "src")
    assert code == 1
    assert out.splitlines() == [
        "src/bad.py:4:5 VG001 torch.cuda.empty_cache() runs before `del x` (line 5) drops a reference: the memory "
        "freed afterwards stays cached; drop references first, then gc.collect(), then torch.cuda.empty_cache()",
        "src/loop.py:4:5 VG005 " + out.splitlines()[1].split(" VG005 ")[1],
    ]
    assert err == "2 finding(s) in 2 of 2 file(s)\n"
    assert run(capsys, "--select", "VG003", "src") == (0, "checked 2 files, no findings\n", "")
    assert run(capsys, "-q", "--select", "VG003", "src") == (0, "", "")
    assert run(capsys, "--select", "VG999", "src")[0] == 2
    assert run(capsys, "nowhere")[0] == 2
    with pytest.raises(SystemExit) as exited:
        main(["check", "--output-format", "xml", "src"])
    assert exited.value.code == 2


def test_select_ignore_and_noqa(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert [line.split()[1] for line in run(capsys, "--ignore", "VG005", "src")[1].splitlines()] == ["VG001"]
    assert run(capsys, "--select", "VG00", "--ignore", "VG001,VG005", "-q", "src")[0] == 0
    (project / "src" / "bad.py").write_text(BAD.replace("empty_cache()", "empty_cache()  # noqa: VG001"))
    assert [line.split()[1] for line in run(capsys, "src")[1].splitlines()] == ["VG005"]


def test_exclude_gitignore_and_pyproject(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "-q", "--exclude", "loop.py", "--select", "VG005", "src")[0] == 0
    assert run(capsys, "-q", "--exclude", "src/l*", "--select", "VG005", "src")[0] == 0
    (project / ".gitignore").write_text("# generated\nloop.py\n")
    assert run(capsys, "--select", "VG005", "src")[1] == "checked 1 file, no findings\n"
    assert run(capsys, "--no-gitignore", "--select", "VG005", "src")[0] == 1
    (project / ".gitignore").write_text("src/\n!src/bad.py\n")
    # The folder is ignored, so git does not look inside it: the negation cannot bring bad.py back.
    assert run(capsys, ".") == (0, "checked 0 files, no findings\n", "")

    (project / ".gitignore").unlink()
    (project / "pyproject.toml").write_text(
        "[tool.vramguard.check]\nignore = ['VG005']\nexclude = ['bad.py']\noutput-format = 'json'\n"
    )
    assert run(capsys, "src") == (0, "[]\n", "checked 1 file, no findings\n")
    assert json.loads(run(capsys, "--select", "VG005", "src")[1])[0]["code"] == "VG005"  # the command line wins
    (project / "pyproject.toml").write_text("[tool.vramguard.check]\nselects = ['VG001']\n")
    code, _, err = run(capsys, "src")
    assert code == 2 and "selects" in err


def test_output_formats_and_statistics(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--output-format", "json", "src")
    assert code == 1
    assert [(r["path"], r["line"], r["col"], r["code"]) for r in json.loads(out)] == [
        ("src/bad.py", 4, 5, "VG001"),
        ("src/loop.py", 4, 5, "VG005"),
    ]
    sarif = json.loads(run(capsys, "--output-format", "sarif", "src")[1])
    assert sarif["version"] == "2.1.0" and sarif["$schema"].endswith("sarif-2.1.0.json")
    (sarif_run,) = sarif["runs"]
    rules = sarif_run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == ["VG001", "VG002", "VG003", "VG004", "VG005"]
    first = sarif_run["results"][0]
    assert rules[first["ruleIndex"]]["id"] == first["ruleId"] == "VG001"
    location = first["locations"][0]["physicalLocation"]
    assert location == {"artifactLocation": {"uri": "src/bad.py"}, "region": {"startLine": 4, "startColumn": 5}}
    github = run(capsys, "--output-format", "github", "src")[1].splitlines()
    assert github[0].startswith("::error file=src/bad.py,line=4,col=5,title=VG001::VG001 torch.cuda.empty_cache()")
    assert "%2C" not in github[0] and "," in github[0].split("::", 2)[2]
    out = run(capsys, "--statistics", "src")[1].splitlines()
    assert out[-2:] == [
        "    1  VG001  empty_cache() before the references are dropped",
        "    1  VG005  empty_cache() on every iteration of a loop",
    ]


def test_fix_and_diff(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--diff", "src")
    assert code == 1
    assert out.endswith(" def f(x):\n+    del x\n     torch.cuda.empty_cache()\n-    del x\n")
    assert out.startswith("--- src/bad.py\n+++ src/bad.py\n")
    assert (project / "src" / "bad.py").read_text() == BAD  # --diff writes nothing
    code, out, err = run(capsys, "--fix", "--select", "VG001", "src")
    assert (code, out) == (0, "checked 2 files, no findings\n")
    assert "fixed 1 in src/bad.py" in err
    assert (
        project / "src" / "bad.py"
    ).read_text() == "import torch\n\ndef f(x):\n    del x\n    torch.cuda.empty_cache()\n"
    assert run(capsys, "--diff", "src") == (0, "", "")


def test_pre_commit_hook_definition() -> None:
    hooks = (Path(__file__).parents[2] / ".pre-commit-hooks.yaml").read_text()
    assert "- id: vramguard-check" in hooks
    assert "entry: vramguard check" in hooks
    assert "types_or: [python, markdown, jupyter]" in hooks


def test_statistics_keep_machine_formats_parseable(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--statistics", "--output-format", "json", "src")
    assert code == 1 and len(json.loads(out)) == 2
    assert "    1  VG001  empty_cache() before the references are dropped\n" in err
