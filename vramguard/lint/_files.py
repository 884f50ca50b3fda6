"""Which files a check reads: the paths given, directories searched, minus exclusions and ``.gitignore``."""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from vramguard.lint._sources import SUFFIXES

_ALWAYS_SKIPPED = frozenset({"__pycache__", "node_modules", "site-packages"})


def _glob_regex(pattern: str) -> str:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("/**", i) and i + 3 == len(pattern):
            out, i = out + "(?:/.*)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[" and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 1)
            out, i = out + "[" + pattern[i + 1 : end].replace("!", "^", 1) + "]", end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return out


@dataclass(frozen=True)
class _Rule:
    base: Path
    regex: re.Pattern[str]
    negated: bool
    directories_only: bool


def _rules(gitignore: Path) -> list[_Rule]:
    try:
        lines = gitignore.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    rules = []
    for raw in lines:
        line = raw.rstrip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        line = line[1:] if negated else line.removeprefix("\\")
        directories_only = line.endswith("/")
        line = line.rstrip("/")
        anchored = "/" in line
        body = _glob_regex(line.lstrip("/"))
        regex = re.compile(body if anchored else f"(?:.*/)?{body}")
        rules.append(_Rule(gitignore.parent, regex, negated, directories_only))
    return rules


class GitIgnore:
    """The ``.gitignore`` files of a tree (and of its parents up to the repository root), as git reads them."""

    def __init__(self) -> None:
        self._loaded: dict[Path, list[_Rule]] = {}

    def _for(self, directory: Path) -> list[_Rule]:
        if directory not in self._loaded:
            parent = directory.parent
            inherited = [] if (directory / ".git").exists() or parent == directory else self._for(parent)
            self._loaded[directory] = inherited + _rules(directory / ".gitignore")
        return self._loaded[directory]

    def ignored(self, path: Path, is_dir: bool) -> bool:
        verdict = False
        for rule in self._for(path.parent):
            if rule.directories_only and not is_dir:
                continue
            try:
                relative = path.relative_to(rule.base).as_posix()
            except ValueError:
                continue
            if rule.regex.fullmatch(relative):
                verdict = not rule.negated
        return verdict


def excluded(path: Path, patterns: Iterable[str], root: Path | None = None) -> bool:
    """Whether a path matches an ``--exclude`` glob: by its name, a folder in it, or its path from ``root``."""
    absolute = path.absolute()
    relative = absolute.relative_to(root.absolute()) if root and absolute.is_relative_to(root.absolute()) else path
    text = relative.as_posix()
    for pattern in patterns:
        stripped = pattern.rstrip("/")
        if fnmatch.fnmatch(text, stripped) or text.startswith(stripped + "/"):
            return True
        if "/" not in stripped and any(fnmatch.fnmatch(part, stripped) for part in relative.parts):
            return True
    return False


def discover(
    paths: Iterable[Path], exclude: Iterable[str] = (), respect_gitignore: bool = True, root: Path | None = None
) -> Iterator[Path]:
    """The files to check, in a stable order: given files as they are (unless excluded), directories searched."""
    patterns = list(exclude)
    gitignore = GitIgnore() if respect_gitignore else None
    for path in paths:
        if path.is_file():
            if not excluded(path, patterns, root):
                yield path
            continue
        for top, dirs, files in os.walk(path):
            here = Path(top)
            dirs[:] = sorted(
                d
                for d in dirs
                if not d.startswith(".")
                and d not in _ALWAYS_SKIPPED
                and not excluded(here / d, patterns, root)
                and not (gitignore and gitignore.ignored(here / d, True))
            )
            for name in sorted(files):
                file = here / name
                if file.suffix.lower() not in SUFFIXES or excluded(file, patterns, root):
                    continue
                if gitignore is None or not gitignore.ignored(file, False):
                    yield file
