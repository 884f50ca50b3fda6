"""``vramguard check PATH...``: find ``empty_cache()`` called before the references are dropped.

Prints one ``file:line:col CODE message`` line per finding (rules: ``docs/rules.md``).
Exit codes: 0 clean, 1 findings, 2 a path that does not exist or a file that cannot be parsed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from vramguard.census import Finding, check_source
from vramguard.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE

HELP = "Find empty_cache() called before the references are dropped (rules VG001, VG002) in Python files."
_SKIPPED_DIRS = frozenset({"__pycache__", "node_modules", "site-packages"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="Python files or directories (searched recursively)")


def _python_files(path: Path) -> Iterator[Path]:
    if path.is_file():
        yield path
        return
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIPPED_DIRS)
        yield from (Path(root) / name for name in sorted(files) if name.endswith(".py"))


def run(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.paths]
    missing = [p for p in paths if not p.exists()]
    for path in missing:
        print(f"vramguard check: error: {path}: no such file or directory", file=sys.stderr)
    if missing:
        return EXIT_USAGE
    findings: list[Finding] = []
    unreadable = 0
    checked = 0
    for path in paths:
        for file in _python_files(path):
            checked += 1
            try:
                findings += check_source(file.read_text(encoding="utf-8"), str(file))
            except (SyntaxError, UnicodeDecodeError, OSError) as error:
                print(f"vramguard check: error: {file}: cannot parse: {error}", file=sys.stderr)
                unreadable += 1
    for finding in findings:
        print(finding)
    if findings:
        files = len({f.path for f in findings})
        print(f"{len(findings)} finding(s) in {files} of {checked} file(s)", file=sys.stderr)
    if unreadable:
        return EXIT_USAGE
    return EXIT_FAILED if findings else EXIT_OK
