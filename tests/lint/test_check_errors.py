"""Files ``vramguard check`` cannot read: one error line naming the file and why, exit 2, never "no findings"."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def check(*argv: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vramguard", "check", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
    )


def notebook(*cells: list[str], kind: str = "code") -> str:
    body = {
        "cells": [{"cell_type": kind, "metadata": {}, "source": source} for source in cells],
        "metadata": {"language_info": {"name": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    return json.dumps(body, indent=1) + "\n"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('{"cells": [', "not JSON (Expecting value at line 1, column 12)"),
        ("", "not JSON (Expecting value at line 1, column 1)"),
        ('{"metadata": {}, "nbformat": 4}', 'no "cells" list at the top level'),
        ("[1, 2]", 'no "cells" list at the top level'),
        ('{"cells": [{"source": "x = 1"}]}', 'cell 1 is not a cell (no "cell_type")'),
        (
            '{"cells": [{"cell_type": "code", "source": 5}]}',
            'cell 1: "source" is neither a string nor a list of strings',
        ),
    ],
)
def test_a_corrupt_notebook_is_an_error(tmp_path: Path, text: str, why: str) -> None:
    # None of these names a cache call: a notebook is read as JSON whatever it contains.
    (tmp_path / "corrupt.ipynb").write_text(text)
    done = check("corrupt.ipynb", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"vramguard check: error: corrupt.ipynb: not a valid notebook: {why}\n"


def test_a_code_cell_that_is_not_python_is_named(tmp_path: Path) -> None:
    text = notebook(["import torch\n", "model = load_model()\n"], ["torch.cuda.empty_cache(\n", "del model\n"])
    (tmp_path / "nb.ipynb").write_text(text)
    done = check("nb.ipynb", cwd=tmp_path)
    line = next(n for n, t in enumerate(text.splitlines(), 1) if "empty_cache(" in t)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"vramguard check: error: nb.ipynb: not a valid notebook: code cell 2 is not Python "
        f"(line {line}: '(' was never closed)\n"
    )


def test_ipython_syntax_is_not_an_error(tmp_path: Path) -> None:
    text = notebook(
        ["%%bash\n", "nvidia-smi | head -n 3\n"],
        ["files = !ls\n", "torch.cuda.empty_cache?\n", "model = load_model()\n", "%time run(model)\n"],
        ["torch.cuda.empty_cache()\n", "del model\n"],
    )
    (tmp_path / "nb.ipynb").write_text(text)
    done = check("nb.ipynb", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert [line.split()[1] for line in done.stdout.splitlines()] == ["VG001"]


def test_a_python_file_that_does_not_parse_prints_only_the_error(tmp_path: Path) -> None:
    (tmp_path / "syntaxerr.py").write_text("import torch\ndef f(:\n    torch.cuda.empty_cache()\n")
    done = check("syntaxerr.py", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "vramguard check: error: syntaxerr.py: cannot parse line 2: invalid syntax\n"


def test_errors_beside_findings_keep_both_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text("def f(x):\n    torch.cuda.empty_cache()\n    del x\n")
    (tmp_path / "corrupt.ipynb").write_text("{")
    done = check("bad.py", "corrupt.ipynb", cwd=tmp_path)
    assert done.returncode == 2
    assert [line.split()[1] for line in done.stdout.splitlines()] == ["VG001"]
    assert done.stderr.splitlines()[0].startswith("vramguard check: error: corrupt.ipynb: not a valid notebook: ")
    assert "no findings" not in done.stdout + done.stderr


def test_an_empty_notebook_and_a_non_python_kernel_are_clean(tmp_path: Path) -> None:
    (tmp_path / "empty.ipynb").write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    r_cells = {"cells": [{"cell_type": "code", "source": "torch.cuda.empty_cache() <- x"}]}
    (tmp_path / "r.ipynb").write_text(json.dumps({**r_cells, "metadata": {"language_info": {"name": "R"}}}))
    done = check("empty.ipynb", "r.ipynb", cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, "checked 2 files, no findings\n", "")
