"""Markdown code blocks and notebook code cells are checked, and findings point at the file's own lines."""

from __future__ import annotations

import json
from pathlib import Path

from vramguard.lint._run import check_paths, check_text

README = """\
# Usage

```bash
pip install whisperx
```

```python
import gc, torch
model = load_model()
gc.collect(); torch.cuda.empty_cache(); del model
```

- in a list:

  ```py
  torch.cuda.empty_cache()
  self.pipe = None
  ```

```python
this is not python: torch.cuda.empty_cache(); del x
```
"""


def test_markdown_blocks_at_the_file_lines() -> None:
    findings = check_text(README, Path("README.md"))
    assert [(f.line, f.col, f.code) for f in findings] == [(10, 15, "VG001"), (16, 3, "VG001")]


def notebook(cells: list[tuple[str, list[str]]]) -> str:
    body = {
        "cells": [{"cell_type": kind, "metadata": {}, "source": source} for kind, source in cells],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    return json.dumps(body, indent=1) + "\n"


def test_notebook_code_cells_at_the_json_lines() -> None:
    text = notebook(
        [
            ("markdown", ["torch.cuda.empty_cache(); del x\n"]),
            ("code", ["%pip install torch\n", "import torch\n", "model = load_model()\n"]),
            ("code", ["!nvidia-smi\n", "torch.cuda.empty_cache()\n", "del model\n"]),
        ]
    )
    findings = check_text(text, Path("demo.ipynb"))
    lines = text.splitlines()
    assert [f.code for f in findings] == ["VG001"]
    assert lines[findings[0].line - 1].strip() == '"torch.cuda.empty_cache()\\n",'


def test_a_directory_walk_reads_py_md_and_ipynb(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text(README)
    (tmp_path / "nb.ipynb").write_text(
        notebook([("code", ["model = m()\n", "torch.cuda.empty_cache()\n", "del model\n"])])
    )
    (tmp_path / "a.py").write_text("def f(x):\n    torch.cuda.empty_cache()\n    del x\n")
    (tmp_path / "notes.txt").write_text("torch.cuda.empty_cache(); del x\n")
    result = check_paths([tmp_path])
    assert result.files_checked == 3
    assert sorted(Path(f.path).name for f in result.findings) == ["README.md", "README.md", "a.py", "nb.ipynb"]
