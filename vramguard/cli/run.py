"""``vramguard run script.py [args...]`` (or ``-m module``): run a program inside a session.

The program runs as ``python`` would run it (``__name__ == "__main__"``, ``sys.argv``,
``sys.path[0]`` the script's folder, or the current folder for ``-m``), through :mod:`runpy`.
When it ends, the session judges what survived while the program's globals are still alive, so
a tensor its globals hold (``CACHE.append(...)``) is named as the script's global
(``global __main__.CACHE``); the globals are dropped after the report is made.
The report goes to stderr, like ``time``'s, so the program's own stdout stays clean.
Under torchrun each rank writes its own ``report-rank{N}.json`` (``vramguard report`` merges them).

Ctrl-C and SIGTERM (as ``timeout`` sends it) stop the program alike: one line says where it
was, the report is printed and the files written, then the exit code is the shell's.

Exit codes: the program's own (``sys.exit(n)``); 1 when it raised (the traceback is printed) or
when it leaked under ``--leaks raise``; 130 on Ctrl-C; 143 on SIGTERM; 2 for bad usage.
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

from vramguard.cli import _signals
from vramguard.cli._durations import FORMS, duration
from vramguard.cli._paths import check_output_file, check_plot_file
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
_SIGNALS_FILE = os.path.abspath(_signals.__file__)
_OWN_FRAMES = {os.path.abspath(__file__), os.path.abspath(runpy.__file__ or "")}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help='"auto", "cpu", "cuda" or "cuda:N" (default: auto)')
    parser.add_argument("--json", metavar="PATH", help="save the report as JSON (read it with vramguard report)")
    parser.add_argument(
        "--plot", metavar="PNG", help="record a timeline and draw it into this image file (.png, .svg, .pdf...)"
    )
    parser.add_argument(
        "--sample-every",
        type=duration("a sampling interval", 0.001, 60.0),
        metavar="INTERVAL",
        help=f"record a timeline at this interval ({FORMS}; default with --plot: {DEFAULT_PLOT_INTERVAL_S * 1000:g}ms)",
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
    check_plot_file("--plot", args.plot)
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
    if report is None:  # stopped while the session itself was starting or ending: nothing measured
        return code
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
    sys.path are the program's) and return its exit code: its own; 130 on Ctrl-C and 143 on
    SIGTERM, with one line saying where the program was; 1 when it raised, whose traceback is
    then printed to stderr. Its globals go into ``namespace`` (see :func:`_execute`)."""
    failure: list[str] = []
    try:
        with (
            _signals.terminate_as_interrupt(),
            _as_main(args.target, args.args, args.as_module),
            around or contextlib.nullcontext(),
        ):
            code = _execute(args.target, args.as_module, failure, namespace)
    except KeyboardInterrupt as interrupt:
        code = _signals.exit_code(interrupt)
        if not failure:  # stopped outside the program: while its session started or ended
            failure.append(f"{_signals.describe(interrupt)}: stopped in the vramguard session around {args.target}\n")
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
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM (terminate_as_interrupt)
        failure.append(_stopped_at(target, interrupt))
        raise interrupt.with_traceback(None) from None
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


def _stopped_at(target: str, interrupt: KeyboardInterrupt) -> str:
    """One line for a program stopped by Ctrl-C or SIGTERM: where it was, the innermost line of
    the script itself (else of any code but vramguard's), in place of the traceback."""
    script = os.path.abspath(target)
    inner = own = None
    tb = interrupt.__traceback__
    while tb is not None:
        filename = os.path.abspath(tb.tb_frame.f_code.co_filename)
        if not _own_frame(filename) and filename != _SIGNALS_FILE:
            inner = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"
            if filename == script:
                own = inner
        tb = tb.tb_next
    where = own or inner
    return f"{_signals.describe(interrupt)}: {target} stopped{f' at {where}' if where else ''}\n"


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
