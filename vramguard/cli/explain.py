"""``vramguard explain script.py [--at MARKER]``: run a program and explain its memory.

The program runs as ``vramguard run`` runs it (``__name__ == "__main__"``, ``sys.argv``,
``sys.path[0]``). The ledger is taken when the program ends, while its globals are still alive
(a tensor a global holds is named as ``global __main__.NAME``), or, with ``--at MARKER``, the
first time the program calls ``vramguard.mark("MARKER")``. It goes to stderr, like ``vramguard
run``'s report, so the program's own stdout stays clean; ``--json PATH`` saves it.

``vramguard explain --pid PID`` asks a running process that installed the signal handler
(``vramguard.install_explain_signal()`` or ``VRAMGUARD_EXPLAIN_SIGNAL=USR2``) for its ledger:
it sends the signal, waits for the file (``--timeout``) and prints the ledger to stdout. A
process that does not catch the signal is refused before anything is sent (the signal would
end it).

Exit codes: the program's own (``sys.exit(n)``); 1 when it raised; 2 for bad usage, a missing
script, a marker the program never reached, an unknown pid, a process without the handler, or
a ledger that did not come within the timeout.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from typing import Any

from vramguard.cli._durations import FORMS, duration
from vramguard.cli._paths import check_output_file, check_plot_file
from vramguard.cli.run import _check_target, run_program
from vramguard.core._errors import InvalidArgument
from vramguard.core._sizes import MAX_DURATION_S
from vramguard.ledger._explain import explain
from vramguard.ledger._mark import arm, disarm
from vramguard.ledger._records import MemoryLedger
from vramguard.ledger._remote import ask, request_for
from vramguard.report.ledger_text import render_ledger

HELP = "run a Python script and explain where its memory is: every byte on a line with its holder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help='"auto", "cpu", "cuda" or "cuda:N" (default: auto)')
    parser.add_argument(
        "--at", metavar="MARKER", help='explain where the program calls vramguard.mark("MARKER") (default: at its end)'
    )
    parser.add_argument("--json", metavar="PATH", help="save the ledger as JSON")
    parser.add_argument("--plot", metavar="PATH", help="draw the ledger (a bar stacked by line) into a PNG")
    parser.add_argument("-m", dest="as_module", action="store_true", help="run TARGET as a module, like python -m")
    parser.add_argument("--pid", type=int, help="explain this running process instead (it must catch the signal)")
    parser.add_argument(
        "--timeout",
        type=duration("a timeout", 0.01, MAX_DURATION_S),
        default=60.0,
        metavar="DURATION",
        help=f"with --pid: how long to wait for the ledger ({FORMS}; default: 60s)",
    )
    parser.add_argument(
        "--signal", help="with --pid: the signal to send (default: the process's VRAMGUARD_EXPLAIN_SIGNAL, else USR2)"
    )
    parser.add_argument(
        "--path",
        help="with --pid: the path template the process writes to (default: from its environment, else "
        "<temp dir>/vramguard-ledger-{pid})",
    )
    parser.add_argument("target", metavar="TARGET", nargs="?", help="the script to run (or the module, with -m)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the program")


def run(args: argparse.Namespace) -> int:
    check_output_file("--json", args.json)
    check_plot_file("--plot", args.plot)  # its suffix too: matplotlib picks the format by it
    if args.pid is not None:
        return _remote(args)
    if args.target is None:
        raise InvalidArgument("TARGET", None, "a script to run, or --pid PID of a running process")
    _check_target(args.target, args.as_module)
    if args.at is not None and not args.at.strip():
        raise InvalidArgument("--at", args.at, "a non-empty marker name")
    device = args.device
    ledgers: list[MemoryLedger] = []
    if args.at is not None:
        arm(args.at, lambda: ledgers.append(explain(device)))
    namespace: list[dict[str, Any]] = []  # the program's globals, alive until the ledger is taken
    try:
        code = run_program(args, namespace)
    finally:
        never = args.at is not None and disarm(args.at)
    try:
        if never:
            raise InvalidArgument(
                "--at", args.at, f"a marker the program reaches (it never called vramguard.mark({args.at!r}))"
            )
        if args.at is None:
            ledgers.append(explain(device))
    finally:
        namespace.clear()
        gc.collect()  # the program's functions and its globals form cycles
    render_ledger(ledgers[0], sys.stderr)
    _save(args, ledgers[0])
    return code


def _remote(args: argparse.Namespace) -> int:
    for option, name in (("target", "the script"), ("at", "--at")):
        if getattr(args, option) is not None:
            raise InvalidArgument("--pid", args.pid, f"--pid without {name}: it explains a process already running")
    request = request_for(args.pid, args.signal, args.path)
    ledger = MemoryLedger.from_dict(ask(request, args.timeout))
    render_ledger(ledger, sys.stdout)
    _save(args, ledger)
    return 0


def _save(args: argparse.Namespace, ledger: MemoryLedger) -> None:
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(ledger.to_dict(), file, indent=2)
        print(f"ledger saved to {os.path.abspath(args.json)}", file=sys.stderr)
    if args.plot:
        from vramguard.report.ledger_plot import plot_ledgers

        print(f"picture saved to {os.path.abspath(plot_ledgers(ledger, args.plot))}", file=sys.stderr)
