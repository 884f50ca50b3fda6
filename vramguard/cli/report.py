"""``vramguard report out.json``: render a saved report (``vramguard run --json``, ``save_report``)."""

from __future__ import annotations

import argparse

from vramguard.report.json import load_report
from vramguard.report.plot import plot_report
from vramguard.report.text import make_console, render

HELP = "render a report saved as JSON (by vramguard run --json or save_report) as tables or a plot"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="a JSON report (session or release)")
    parser.add_argument("--plot", metavar="PNG", help="also draw the report into this image file")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="list each leaked tensor under the module or container holding it"
    )


def run(args: argparse.Namespace) -> int:
    console = make_console()
    report = load_report(args.path)
    render(report, console=console, verbose=args.verbose)
    if args.plot:
        written = plot_report(report, args.plot)
        console.print(f"plot written to {written}", markup=False, soft_wrap=True)
    return 0
