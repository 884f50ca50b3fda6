"""``vramguard report out.json``: render a saved report (``vramguard run --json``, ``save_report``).

``vramguard report report-rank*.json`` merges the rank files of one run into one table and plot;
any other set of files (``a.json b.json``: two runs) is compared side by side, one column each."""

from __future__ import annotations

import argparse
import os

from vramguard.cli._paths import check_plot_file
from vramguard.core._errors import InvalidArgument
from vramguard.report.compare import COMPARABLE, Compared, compare_renderables
from vramguard.report.json import load_report
from vramguard.report.merge import merge_rank_reports, one_run
from vramguard.report.plot import plot_report, plot_reports
from vramguard.report.text import make_console, print_parts, render

HELP = "render a report saved as JSON (by vramguard run --json or save_report) as tables or a plot"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path",
        nargs="+",
        help="a JSON report (session, release, multi-device or cluster); the rank files of one run "
        "(report-rank*.json from torchrun) merge into one table and one plot; other reports are compared side by side",
    )
    parser.add_argument("--plot", metavar="PNG", help="also draw the report into this image file")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="list each leaked tensor under the module or container holding it"
    )


def run(args: argparse.Namespace) -> int:
    check_plot_file("--plot", args.plot)  # before any work: a bad path is exit 2, not a traceback
    console = make_console()
    # A malformed file: ReportFormatError, exit 2 with one line.
    reports = [load_report(path) for path in args.path]
    if len(reports) == 1 or one_run(args.path, reports):
        report = reports[0] if len(reports) == 1 else merge_rank_reports(args.path)
        render(report, console=console, verbose=args.verbose)
        written = plot_report(report, args.plot) if args.plot else None
    else:
        items = []
        for path, loaded in zip(args.path, reports, strict=True):
            if not isinstance(loaded, COMPARABLE):
                accepted = "a session, multi-device or release report to compare with the others"
                raise InvalidArgument("path", path, accepted)
            items.append(Compared(os.path.basename(path), loaded))
        print_parts(compare_renderables(items, verbose=args.verbose), console)
        written = plot_reports([item.report for item in items], args.plot) if args.plot else None
    if written is not None:
        console.print(f"plot written to {written}", markup=False, soft_wrap=True)
    return 0
