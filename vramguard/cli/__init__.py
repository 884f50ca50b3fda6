"""The ``vramguard`` command: one module per subcommand, ``main(argv) -> int``.

Each subcommand module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. Errors map to exit codes: 2 for bad usage or input (a VramGuardError such
as InvalidArgument or MissingDependency), 1 for a failed check (leaks, rule findings).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from importlib.abc import InspectLoader
from types import ModuleType

from vramguard.core._errors import VramGuardError

SUBCOMMANDS = ("demo", "run", "explain", "report", "devices", "check", "asr")
"""The subcommand modules, in the order ``vramguard --help`` lists them: each is named after its
module and defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``."""
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _load(name: str) -> ModuleType:
    return importlib.import_module(f"{__name__}.{name}")


def _help(name: str) -> str:
    """The subcommand's ``HELP``, read from its module's source when the module is not loaded yet:
    most subcommands import torch (seconds), and neither the command list nor ``vramguard check``
    in a pre-commit hook should pay for it. A module whose ``HELP`` cannot be read so is imported."""
    module = sys.modules.get(f"{__name__}.{name}")
    if module is None:
        spec = importlib.util.find_spec(f"{__name__}.{name}")
        loader = spec.loader if spec is not None else None
        source = (loader.get_source(f"{__name__}.{name}") if isinstance(loader, InspectLoader) else None) or ""
        # only the lines around the assignment (up to a blank line): parsing seven whole modules
        # would take longer than the rest of ``vramguard --help``
        at = source.find("\nHELP = ")
        with contextlib.suppress(SyntaxError, ValueError):
            for node in ast.parse(source[at + 1 :].split("\n\n", 1)[0] if at >= 0 else "").body:
                if isinstance(node, ast.Assign) and [ast.unparse(target) for target in node.targets] == ["HELP"]:
                    return str(ast.literal_eval(node.value))
        module = _load(name)
    return str(module.HELP)


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
        module = _load(name) if name in load else None
        text = _help(name)
        command = sub.add_parser(name, help=text, description=text)
        if module is not None:
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
