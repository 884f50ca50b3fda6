"""The ``vramguard`` command: one module per subcommand, ``main(argv) -> int``.

Each subcommand module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. Errors map to exit codes: 2 for bad usage or input (a VramGuardError such
as InvalidArgument or MissingDependency), 1 for a failed check (leaks, rule findings).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from vramguard.core._errors import VramGuardError

SUBCOMMANDS = ("demo", "run", "report", "devices", "check", "asr")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _load(name: str) -> ModuleType:
    return importlib.import_module(f"vramguard.cli.{name}")


def _version() -> str:
    from vramguard import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vramguard",
        description="Measure, release and explain PyTorch memory (GPU, or the host with --device cpu).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        module = _load(name)
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(None if argv is None else list(argv))
    try:
        return int(args._module.run(args))
    except VramGuardError as error:
        print(f"vramguard {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
