"""A check over files: each file's Python read, checked, and its findings placed on the file's lines."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from vramguard.lint._check import check_source, might_have_findings, suppressed
from vramguard.lint._config import CheckConfig
from vramguard.lint._files import discover
from vramguard.lint._rules import Finding
from vramguard.lint._sources import CorruptNotebook, snippets


@dataclass(frozen=True)
class FileError:
    """A file that could not be read or parsed; ``message`` says why."""

    path: str
    message: str


@dataclass(frozen=True)
class CheckResult:
    """What a check over files found: findings in line order per file, and how much it read."""

    findings: tuple[Finding, ...]
    files_checked: int
    lines_checked: int
    errors: tuple[FileError, ...]


def check_text(text: str, path: Path, codes: Iterable[str] | None = None) -> tuple[Finding, ...]:
    """The findings in one file's text (Python, Markdown or a notebook), at the file's own lines.

    A Python file that does not parse raises SyntaxError, a notebook that is not one (or whose code
    cells are not Python) :class:`CorruptNotebook`; a Markdown block that does not parse (pseudo-code,
    a fragment) is skipped. As with a ``.py`` file, Python is parsed only where a cache call is named;
    a notebook's JSON is read in any case.
    """
    notebook = path.suffix.lower() == ".ipynb"
    if not (notebook or might_have_findings(text)):
        return ()
    pieces = snippets(path, text)
    if not might_have_findings(text):
        return ()
    file_lines = text.splitlines()
    found: list[Finding] = []
    for snippet in pieces:
        try:
            if snippet.whole_file:
                found += check_source(snippet.source, str(path), codes)
                continue
            findings = check_source(snippet.source, str(path), codes, noqa=False, lines=snippet.file_line)
        except SyntaxError as error:
            if snippet.whole_file:
                raise
            if snippet.cells:
                raise CorruptNotebook(snippet.syntax_error(error)) from None
            continue
        for f in findings:
            line = file_lines[f.line - 1] if f.line <= len(file_lines) else ""
            if not suppressed(line, f.code):
                found.append(replace(f, col=f.col + snippet.indent))
    return tuple(found)


def check_paths(paths: Iterable[Path], config: CheckConfig | None = None, root: Path | None = None) -> CheckResult:
    """Check every file under ``paths`` (``.py``, ``.md``, ``.ipynb``) with a configuration's rules."""
    config = config or CheckConfig()
    findings: list[Finding] = []
    errors: list[FileError] = []
    files = lines = 0
    for file in discover(paths, config.exclude, config.respect_gitignore, root):
        files += 1
        try:
            text = file.read_text(encoding="utf-8")
            lines += text.count("\n")
            findings += check_text(text, file, config.codes)
        except SyntaxError as error:
            errors.append(FileError(str(file), f"cannot parse line {error.lineno}: {error.msg}"))
        except CorruptNotebook as error:
            errors.append(FileError(str(file), f"not a valid notebook: {error}"))
        except UnicodeDecodeError as error:
            errors.append(FileError(str(file), f"cannot read: not UTF-8 (byte {error.start})"))
        except (ValueError, OSError) as error:
            errors.append(FileError(str(file), f"cannot read: {error}"))
    return CheckResult(tuple(findings), files, lines, tuple(errors))


def parses(source: str) -> bool:
    """Whether a Python source parses (the fixer's guard)."""
    try:
        ast.parse(source)
    except SyntaxError:
        return False
    return True
