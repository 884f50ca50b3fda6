"""``vramguard check PATH...``: find cache calls placed where they cannot give memory back.

Prints one ``file:line:col CODE message`` line per finding (rules: ``docs/rules.md``), or JSON,
SARIF or GitHub annotations with ``--output-format``. Reads ``.py``, the Python blocks of ``.md``
and the code cells of ``.ipynb``. Exit codes: 0 clean, 1 findings, 2 bad usage or a file that
cannot be read (a ``.py`` that does not parse, a notebook that is not one: one line each, and no
"no findings"). ``[tool.vramguard.check]`` in the nearest ``pyproject.toml`` sets the defaults.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from dataclasses import replace
from pathlib import Path

from vramguard.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from vramguard.lint import RULES
from vramguard.lint._config import OUTPUT_FORMATS, CheckConfig, find_pyproject, load_config, rule_codes
from vramguard.lint._files import discover
from vramguard.lint._fix import fix_source
from vramguard.lint._run import CheckResult, check_paths
from vramguard.report.findings import (
    render_github,
    render_json,
    render_sarif,
    render_statistics,
    render_text,
)

HELP = "Find empty_cache() placed where it cannot give memory back (rules VG001-VG005) in .py, .md and .ipynb files."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths", nargs="*", metavar="PATH", help="files or directories (searched recursively); default ."
    )
    parser.add_argument(
        "--select", metavar="CODES", help=f"comma-separated rules to run (default all: {', '.join(RULES)})"
    )
    parser.add_argument("--ignore", metavar="CODES", help="comma-separated rules not to run")
    parser.add_argument("--exclude", metavar="GLOBS", action="append", default=[], help="comma-separated globs to skip")
    parser.add_argument("--no-gitignore", action="store_true", help="also check files the .gitignore excludes")
    parser.add_argument("--output-format", choices=OUTPUT_FORMATS, help="text (default), json, sarif or github")
    parser.add_argument("--statistics", action="store_true", help="print the number of findings per rule")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing on a clean run")
    parser.add_argument("--fix", action="store_true", help="move drops before the cache call where that is safe")
    parser.add_argument("--diff", action="store_true", help="show what --fix would change, without writing")


def _config(args: argparse.Namespace) -> CheckConfig:
    config = load_config(find_pyproject(Path.cwd()))
    if args.select:
        # As in ruff: the command line's selection comes after the configuration's ignore list.
        config = replace(config, select=rule_codes("--select", args.select), ignore=())
    if args.ignore:
        config = replace(config, ignore=rule_codes("--ignore", args.ignore))
    extra = tuple(p.strip() for value in args.exclude for p in value.split(",") if p.strip())
    config = replace(config, exclude=config.exclude + extra)
    if args.no_gitignore:
        config = replace(config, respect_gitignore=False)
    if args.output_format:
        config = replace(config, output_format=args.output_format)
    return config


def _fix(paths: list[Path], config: CheckConfig, root: Path, write: bool) -> int:
    """Rewrite (or, without ``write``, diff) the Python files whose simple cases can be reordered."""
    changed = 0
    for file in discover(paths, config.exclude, config.respect_gitignore, root):
        if file.suffix != ".py":
            continue  # Markdown and notebooks are reported, not rewritten
        try:
            before = file.read_text(encoding="utf-8")
            result = fix_source(before)
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue  # the check reports it
        if not result.fixed:
            continue
        changed += 1
        if write:
            file.write_text(result.source, encoding="utf-8")
            print(f"fixed {result.fixed} in {file}", file=sys.stderr)
        else:
            sys.stdout.writelines(
                difflib.unified_diff(
                    before.splitlines(keepends=True), result.source.splitlines(keepends=True), str(file), str(file)
                )
            )
    return changed


def _print(result: CheckResult, config: CheckConfig, args: argparse.Namespace) -> None:
    from vramguard import __version__

    findings = result.findings
    fmt = config.output_format
    if fmt == "json":
        sys.stdout.write(render_json(findings))
    elif fmt == "sarif":
        sys.stdout.write(render_sarif(findings, __version__))
    elif fmt == "github":
        sys.stdout.write(render_github(findings))
    else:
        sys.stdout.write(render_text(findings))
    summary = sys.stdout if fmt == "text" else sys.stderr  # JSON, SARIF and annotations stay parseable
    if args.statistics:
        summary.write(render_statistics(findings))
    if findings:
        files = len({f.path for f in findings})
        print(f"{len(findings)} finding(s) in {files} of {result.files_checked} file(s)", file=sys.stderr)
    elif not (args.quiet or result.errors):  # a file that could not be checked is not "no findings"
        n = result.files_checked
        print(f"checked {n} file{'' if n == 1 else 's'}, no findings", file=summary)


def run(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.paths] or [Path(".")]
    missing = [p for p in paths if not p.exists()]
    for path in missing:
        print(f"vramguard check: error: {path}: no such file or directory", file=sys.stderr)
    if missing:
        return EXIT_USAGE
    config = _config(args)
    root = config.source.parent if config.source else Path.cwd()
    if args.diff:
        return EXIT_FAILED if _fix(paths, config, root, write=False) else EXIT_OK
    if args.fix:
        _fix(paths, config, root, write=True)
    result = check_paths(paths, config, root)
    for error in result.errors:
        print(f"vramguard check: error: {error.path}: {error.message}", file=sys.stderr)
    _print(result, config, args)
    if result.errors:
        return EXIT_USAGE
    return EXIT_FAILED if result.findings else EXIT_OK
