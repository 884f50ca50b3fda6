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

SUBCOMMANDS = ("demo", "run", "explain", "report", "devices", "check", "asr")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# Each subcommand's one-line help, so that the command list needs no module: most subcommands
# import torch (seconds), and ``vramguard check`` in a pre-commit hook should not pay for it.
# tests/cli/test_cli_commands.py keeps these equal to each module's HELP.
HELP = {
    "demo": "run a small transformer twice (bare del, then a vramguard session) and show what came back",
    "run": "run a Python script (or -m module) inside a vramguard session and report what it left behind",
    "explain": "run a Python script and explain where its memory is: every byte on a line with its holder",
    "report": "render a report saved as JSON (by vramguard run --json or save_report) as tables or a plot",
    "devices": "list the GPUs (total, used, processes and their memory), read through NVML; --watch for a live view",
    "check": "Find empty_cache() placed where it cannot give memory back (rules VG001-VG005) in .py, .md and .ipynb "
    "files.",
    "asr": "transcribe and diarize audio files (Whisper + pyannote.audio), with each stage's memory",
}


def _load(name: str) -> ModuleType:
    return importlib.import_module(f"vramguard.cli.{name}")


def _version() -> str:
    from vramguard import __version__

    return __version__


def _chosen(argv: Sequence[str] | None) -> str | None:
    """The subcommand named on the command line (the first word that is not an option)."""
    words = sys.argv[1:] if argv is None else list(argv)
    first = next((word for word in words if not word.startswith("-")), None)
    return first if first in SUBCOMMANDS else None


def build_parser(load: Sequence[str] = SUBCOMMANDS) -> argparse.ArgumentParser:
    """The parser, with the arguments of the subcommands in ``load`` (the others listed by name)."""
    parser = argparse.ArgumentParser(
        prog="vramguard",
        description="Measure, release and explain PyTorch memory (GPU, or the host with --device cpu).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        command = sub.add_parser(name, help=HELP[name], description=HELP[name])
        if name in load:
            module = _load(name)
            module.add_arguments(command)
            command.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    chosen = _chosen(argv)
    parser = build_parser(() if chosen is None else (chosen,))
    args = parser.parse_args(None if argv is None else list(argv))
    try:
        return int(args._module.run(args))
    except VramGuardError as error:
        print(f"vramguard {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
