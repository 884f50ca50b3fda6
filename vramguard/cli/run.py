"""``vramguard run script.py [args...]`` (or ``-m module``): run a program inside a session.

The program runs as ``python`` would run it (``__name__ == "__main__"``, ``sys.argv``,
``sys.path[0]`` the script's folder, or the current folder for ``-m``), through :mod:`runpy`.
When it ends, the session judges what survived while the program's globals are still alive, so
a tensor its globals hold (``CACHE.append(...)``) is named as the script's global
(``global __main__.CACHE``); the globals are dropped after the report is made.
The report goes to stderr, like ``time``'s, so the program's own stdout stays clean.
Under torchrun each rank writes its own ``report-rank{N}.json`` (``vramguard report`` merges them).

Exit codes: the program's own (``sys.exit(n)``); 1 when it raised (the traceback is printed) or
when it leaked under ``--leaks raise``; 130 on Ctrl-C; 2 for bad usage.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import os
import runpy
import sys
import traceback
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from vramguard.cli._paths import check_output_file
from vramguard.cli._ranks import per_rank_outputs
from vramguard.core._errors import InvalidArgument
from vramguard.core._records import SessionReport
from vramguard.core._session import GpuSession
from vramguard.core._sizes import format_size
from vramguard.report.json import save_report
from vramguard.report.plot import plot_report
from vramguard.report.text import make_console, render

if TYPE_CHECKING:
    from rich.console import Console

HELP = "run a Python script (or -m module) inside a vramguard session and report what it left behind"
DEFAULT_PLOT_INTERVAL_S = 0.01
_OWN_FRAMES = {os.path.abspath(__file__), os.path.abspath(runpy.__file__ or "")}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help='"auto", "cpu", "cuda" or "cuda:N" (default: auto)')
    parser.add_argument("--json", metavar="PATH", help="save the report as JSON (read it with vramguard report)")
    parser.add_argument("--plot", metavar="PNG", help="record a timeline and draw it into this image file")
    parser.add_argument(
        "--sample-every",
        type=float,
        metavar="SECONDS",
        help=f"record a timeline at this interval (default with --plot: {DEFAULT_PLOT_INTERVAL_S})",
    )
    parser.add_argument(
        "--leaks",
        choices=("warn", "raise", "ignore"),
        default="warn",
        help="what a leak does: print a warning (default), exit 1 (raise), or nothing",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="list each leaked tensor under the module or container holding it"
    )
    parser.add_argument("-m", dest="as_module", action="store_true", help="run TARGET as a module, like python -m")
    parser.add_argument("target", metavar="TARGET", help="the script to run (or the module, with -m)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the program")


def run(args: argparse.Namespace) -> int:
    console = make_console(stderr=True)
    _check_target(args.target, args.as_module)
    rank = per_rank_outputs(args)  # under torchrun: report-rank{N}.json, one file per rank
    check_output_file("--json", args.json)
    check_output_file("--plot", args.plot)
    sample_every = args.sample_every
    if sample_every is None and args.plot:
        sample_every = DEFAULT_PLOT_INTERVAL_S
    name = args.target if args.as_module else os.path.basename(args.target)
    if rank is not None:
        name = f"{name} [rank {rank}]"
    session = GpuSession(name, device=args.device, leaks="ignore", sample_every=sample_every)
    # The program's globals, alive through the session's exit: judged first, then dropped.
    namespace: list[dict[str, Any]] = []
    try:
        code = run_program(args, namespace, session)
    finally:
        namespace.clear()
        gc.collect()  # the program's functions and its globals form cycles
    report = session.report
    assert report is not None
    render(report, console=console, verbose=args.verbose)
    if args.json:
        console.print(f"report saved to {save_report(report, args.json)}", markup=False, soft_wrap=True)
    if args.plot:
        console.print(f"plot written to {plot_report(report, args.plot)}", markup=False, soft_wrap=True)
    return _leak_verdict(report, args.leaks, code, console)


def run_program(
    args: argparse.Namespace,
    namespace: list[dict[str, Any]],
    around: contextlib.AbstractContextManager[object] | None = None,
) -> int:
    """Run ``args.target`` as ``__main__`` (``around``, a session, entered once sys.argv and
    sys.path are the program's) and return its exit code: its own, 130 on Ctrl-C, 1 when it
    raised, whose traceback is then printed to stderr. Its globals go into ``namespace``
    (see :func:`_execute`)."""
    failure: list[str] = []
    try:
        with _as_main(args.target, args.args, args.as_module), around or contextlib.nullcontext():
            code = _execute(args.target, args.as_module, failure, namespace)
    except KeyboardInterrupt:
        code = 130
    except Exception:
        code = 1
    if failure:
        print(failure[0], file=sys.stderr, end="")
    return code


def _check_target(target: str, as_module: bool) -> None:
    if as_module:
        try:
            found = importlib.util.find_spec(target) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise InvalidArgument("module", target, "an importable module name (as for python -m)")
    elif not os.path.isfile(target):
        raise InvalidArgument("script", target, "a Python file that exists")


@contextlib.contextmanager
def _as_main(target: str, argv: list[str], as_module: bool) -> Iterator[None]:
    """Set sys.argv and sys.path[0] as ``python script.py`` (or ``python -m``) would."""
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    folder = os.getcwd() if as_module else os.path.dirname(os.path.abspath(target))
    sys.argv = [target, *argv]
    if sys.path:
        sys.path[0] = folder
    else:
        sys.path.append(folder)
    try:
        yield
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path


def _execute(target: str, as_module: bool, failure: list[str], namespace: list[dict[str, Any]]) -> int:
    """Run the program; its exit status. The globals runpy returns go into ``namespace``, which
    the caller keeps until the session has judged the survivors: a tensor they hold is then a leak
    named as the script's global, not a cycle freed by the collection.

    An exception is re-raised without its traceback (its text goes to ``failure``): the
    traceback's frames would keep the program's globals alive through the release.
    """
    try:
        if as_module:
            namespace.append(runpy.run_module(target, run_name="__main__", alter_sys=True))
        else:
            namespace.append(runpy.run_path(target, run_name="__main__"))
    except SystemExit as exit_:
        return _exit_status(exit_.code)
    except BaseException as error:
        failure.append(_format_traceback(error))
        raise error.with_traceback(None) from error.__cause__
    return 0


def _exit_status(code: object) -> int:
    """What ``sys.exit(code)`` makes the interpreter return."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _format_traceback(error: BaseException) -> str:
    """The program's traceback, without vramguard's and runpy's frames above it."""
    tb = error.__traceback__
    while tb is not None and _own_frame(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(error), error, tb))


def _own_frame(filename: str) -> bool:
    return filename in _OWN_FRAMES or filename == "<frozen runpy>" or os.path.abspath(filename) in _OWN_FRAMES


def _leak_verdict(report: SessionReport, policy: str, code: int, console: Console) -> int:
    """The exit code once the leak policy is applied: a leak under "raise" turns 0 into 1."""
    leaked = report.leaked_bytes or 0
    if leaked == 0 or policy == "ignore":
        return code
    if policy == "raise":
        message = f"error: {report.name} leaked {format_size(leaked)} (--leaks raise)"
        console.print(message, style="bold red", markup=False)
        return code or 1
    console.print(f"warning: {report.name} leaked {format_size(leaked)}", style="yellow", markup=False)
    return code
