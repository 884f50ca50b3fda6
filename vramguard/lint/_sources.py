"""The Python in a file: a ``.py`` file whole, the fenced code blocks of Markdown, a notebook's code cells.

Each piece keeps where it sits in the file, so that a finding points at the file's own line.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path

SUFFIXES = frozenset({".py", ".pyi", ".md", ".markdown", ".ipynb"})
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^\s`]*)")
_PYTHON_INFO = frozenset({"python", "py", "python3", "py3", "{python}", "{py}"})
_MAGIC = re.compile(r"^\s*([%!]|[\w.]+\s*=\s*[%!])")  # %magic, !shell, files = !ls


@dataclass(frozen=True)
class Snippet:
    """Python source from a file; its line 1 is the file's line ``first_line``, shifted ``indent`` columns."""

    source: str
    first_line: int
    indent: int = 0
    whole_file: bool = False
    line_map: tuple[int, ...] = ()  # when set: the file line of each source line (a notebook's cells)
    cells: tuple[tuple[int, int], ...] = ()  # a notebook's code cells: (cell number, first source line)

    def file_line(self, line: int) -> int:
        """The file's line for a line of this snippet (both from 1)."""
        if self.line_map:
            return self.line_map[min(line, len(self.line_map)) - 1]
        return line + self.first_line - 1

    def syntax_error(self, error: SyntaxError) -> str:
        """Where a notebook's Python does not parse: the first code cell that does not parse on its own."""
        lines = self.source.splitlines()
        ends = [start for _, start in self.cells[1:]] + [len(lines) + 1]
        for (number, start), end in zip(self.cells, ends, strict=True):
            try:
                ast.parse("\n".join(lines[start - 1 : end - 1]))
            except SyntaxError as own:
                line = self.file_line(start + (own.lineno or 1) - 1)
                return f"code cell {number} is not Python (line {line}: {own.msg})"
        return f"the code cells are not Python together (line {self.file_line(error.lineno or 1)}: {error.msg})"


def _closes(line: str, fence: str) -> bool:
    stripped = line.strip()
    return stripped.startswith(fence) and set(stripped) == {fence[0]}


def markdown_snippets(text: str) -> list[Snippet]:
    """The ```python (or ```py) fenced blocks of a Markdown text."""
    snippets: list[Snippet] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        fence = opening.group("fence") if opening else ""
        if opening is None or (fence[0] == "`" and "`" in lines[i][opening.end("fence") :]):
            i += 1  # not a fence (CommonMark: a backtick fence's info string has no backtick)
            continue
        indent = len(opening.group("indent"))
        start = i + 1
        i = start
        while i < len(lines) and not _closes(lines[i], fence):
            i += 1
        if opening.group("info").lower() in _PYTHON_INFO:
            body = [line[indent:] if line[:indent].strip() == "" else line for line in lines[start:i]]
            snippets.append(Snippet("\n".join(body) + "\n", start + 1, indent))
        i += 1
    return snippets


def _source_lines(text: str) -> list[int]:
    """The file line (from 1) of each cell's ``"source"`` key, in cell order."""
    return [n for n, line in enumerate(text.splitlines(), 1) if line.lstrip().startswith('"source"')]


class CorruptNotebook(ValueError):
    """A ``.ipynb`` file that is not a notebook: not JSON, no ``cells`` list, a cell that is not a cell.

    Also a code cell that is not Python (raised by the check, which alone parses the cells).
    """


def _cells(text: str) -> list[dict[str, object]]:
    try:
        notebook = json.loads(text)
    except json.JSONDecodeError as error:
        raise CorruptNotebook(f"not JSON ({error.msg} at line {error.lineno}, column {error.colno})") from None
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    if not isinstance(cells, list):
        raise CorruptNotebook('no "cells" list at the top level')
    for number, cell in enumerate(cells, 1):
        source = cell.get("source") if isinstance(cell, dict) else None
        if not isinstance(cell, dict) or not isinstance(cell.get("cell_type"), str):
            raise CorruptNotebook(f'cell {number} is not a cell (no "cell_type")')
        if not (isinstance(source, str) or (isinstance(source, list) and all(isinstance(s, str) for s in source))):
            raise CorruptNotebook(f'cell {number}: "source" is neither a string nor a list of strings')
    language = notebook.get("metadata", {}).get("language_info", {}) if isinstance(notebook, dict) else {}
    if isinstance(language, dict) and language.get("name", "python") != "python":
        return []  # an R or Julia notebook: its cells are not Python
    return cells


def _python_lines(lines: list[str]) -> list[str]:
    """A code cell's lines with IPython's own syntax blanked; a cell magic (``%%bash``) makes the cell not Python."""
    first = next((line for line in lines if line.strip()), "")
    if first.lstrip().startswith("%%"):
        return [""] * len(lines)
    return ["" if _MAGIC.match(line) or line.rstrip().endswith("?") else line for line in lines]


def notebook_snippets(text: str) -> list[Snippet]:
    """A notebook's code cells, as one module (the cells share a namespace); magics and shell lines blanked.

    Raises :class:`CorruptNotebook` for a file that is not a notebook.
    """
    cells = _cells(text)
    key_lines = _source_lines(text)
    raw = text.splitlines()
    code: list[str] = []
    line_map: list[int] = []
    starts: list[tuple[int, int]] = []
    for index, cell in enumerate(cells):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        lines = _python_lines(("".join(source) if isinstance(source, list) else str(source)).splitlines())
        # nbformat writes one source line per JSON line after the key; a one-string source sits on the key's line.
        key = key_lines[index] if index < len(key_lines) and len(key_lines) == len(cells) else 1
        listed = isinstance(source, list) and len(source) > 0 and not raw[key - 1].rstrip().endswith("]")
        starts.append((index + 1, len(code) + 1))
        code += lines
        line_map += [key + 1 + n if listed else key for n in range(len(lines))]
    if not code:
        return []
    return [Snippet("\n".join(code) + "\n", 1, line_map=tuple(line_map), cells=tuple(starts))]


def snippets(path: Path, text: str) -> list[Snippet]:
    """The Python to check in one file, by its suffix."""
    suffix = path.suffix.lower()
    if suffix in {".md", ".markdown"}:
        return markdown_snippets(text)
    if suffix == ".ipynb":
        return notebook_snippets(text)
    return [Snippet(text, 1, whole_file=True)]
