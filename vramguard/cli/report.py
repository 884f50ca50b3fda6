"""``vramguard report out.json``: render a saved report (``vramguard run --json``, ``save_report``).

``vramguard report report-rank*.json`` merges one session report per rank into one table and plot."""

from __future__ import annotations

import argparse

from vramguard.cli._paths import check_output_file
from vramguard.report.json import load_report
from vramguard.report.merge import merge_rank_reports
from vramguard.report.plot import plot_report
from vramguard.report.text import make_console, render

HELP = "render a report saved as JSON (by vramguard run --json or save_report) as tables or a plot"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path",
        nargs="+",
        help="a JSON report (session, release, multi-device or cluster); several session reports, one per rank "
        "(report-rank*.json from torchrun), merge into one table and one plot",
    )
    parser.add_argument("--plot", metavar="PNG", help="also draw the report into this image file")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="list each leaked tensor under the module or container holding it"
    )


def run(args: argparse.Namespace) -> int:
    check_output_file("--plot", args.plot)  # before any work: a bad path is exit 2, not a traceback
    console = make_console()
    # A malformed file: ReportFormatError, exit 2 with one line. Several files: one per rank, merged.
    report = load_report(args.path[0]) if len(args.path) == 1 else merge_rank_reports(args.path)
    render(report, console=console, verbose=args.verbose)
    if args.plot:
        written = plot_report(report, args.plot)
        console.print(f"plot written to {written}", markup=False, soft_wrap=True)
    return 0
