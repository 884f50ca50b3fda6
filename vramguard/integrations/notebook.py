"""The notebook magics: ``%load_ext vramguard``, then

- ``%%vram [--device D] [--leaks warn|raise|ignore] [--plot]``: the cell in a session, its report
  rendered below the cell (a rich table), with ``--plot`` its timeline inline. The variables the
  cell assigns are the notebook's namespace: what they hold is kept ("kept by notebook variable
  x"), not a leak; a leak warning points at the cell;
- ``%vram [--device D]``: the device's memory now;
- ``%vram_release [--device D]``: drop what the notebook itself holds (the output history ``_``,
  ``__``, ``___``, ``Out[n]``, ``_n``, and the last exception with its frames), then release in order.

Notebooks are where leaks hide best: the report names those holders in notebook terms
("output of cell 7 (Out[7])", "the last exception", "notebook variable x"). Needs the
``notebook`` extra (IPython).
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shlex
import symtable
import sys
import tempfile
import types
import warnings
from dataclasses import replace
from typing import Any

from vramguard.core._errors import InvalidArgument, LeakError, LeakWarning, MissingDependency
from vramguard.core._records import Leak, SessionReport
from vramguard.core._release import release
from vramguard.core._session import GpuSession
from vramguard.core._sizes import format_size
from vramguard.core._tensors import storage_bytes
from vramguard.probes import resolve_device, take
from vramguard.report.plot import plot_report
from vramguard.report.text import make_console, render

try:
    import IPython
except ImportError as error:  # pragma: no cover - the extra is installed in the test environment
    raise MissingDependency("ipython", "notebook", "vramguard's notebook magics") from error

__all__ = ["VramMagics", "load_ipython_extension", "magics_of", "notebook_holder"]

SAMPLE_EVERY_S = 0.01
_IPYTHON_DIR = os.path.join(os.path.dirname(os.path.abspath(IPython.__file__)), "")
_LAST_EXCEPTION = re.compile(r" via global sys\.last_(?:value|traceback|exc|type)\b.*$")
_RAISED = re.compile(r"^unreachable from any global or live frame: objects through frame, traceback, (\w+)")
_HISTORY = re.compile(r"^global (?:__main__\._oh|__main__\.Out|sys\.displayhook\._oh)\[(\d+)\](.*)$")
_NUMBERED = re.compile(r"^global __main__\._(\d+)\b(.*)$")
_LAST = re.compile(r"^global (?:__main__|sys\.displayhook)\.(_{1,3})(?![\w])(.*)$")
_VARIABLE = re.compile(r"^global __main__\.([A-Za-z]\w*)(.*)$")
_SITE = re.compile(r"^(.*):(\d+)(?: in .*)?$")  # a creation site: "app.py:41 in infer"
_NOT_DATA = (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType, type)
"""Values a cell binds that hold no data of their own (``import torch``, ``def f``): not kept."""


def assigned_names(source: str) -> list[str]:
    """The names a cell's code binds at the notebook's top level (assignments, imports, ``for``
    targets, ``def`` and ``class``, ``:=``), in the order the symbol table lists them."""
    table = symtable.symtable(source, "<cell>", "exec")
    return [s.get_name() for s in table.get_symbols() if s.is_assigned() or s.is_imported()]


def notebook_holder(holder: str, last_outputs: dict[str, int]) -> str:
    """A holder path in notebook terms. ``last_outputs`` maps ``_``, ``__``, ``___`` to the cell
    whose output each is."""
    if _LAST_EXCEPTION.search(holder):
        return "the last exception: " + _LAST_EXCEPTION.sub("", holder) + " (%vram_release drops it)"
    raised = _RAISED.match(holder)
    if raised:
        return f"the {raised.group(1)} the cell raised: its traceback holds its frames' locals (%vram_release drops it)"
    for pattern, name in ((_HISTORY, "Out[{n}]"), (_NUMBERED, "_{n}")):
        match = pattern.match(holder)
        if match:
            n = match.group(1)
            return f"output of cell {n} ({name.format(n=n)}){match.group(2)}"
    match = _LAST.match(holder)
    if match:
        name, rest = match.groups()
        cell = last_outputs.get(name)
        where = f"output of cell {cell}" if cell is not None else "an earlier cell's output"
        return f"{where} ({name}){rest}"
    match = _VARIABLE.match(holder)
    if match:
        return f"notebook variable {match.group(1)}{match.group(2)}"
    return holder


def _unique(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


class _Parser(argparse.ArgumentParser):
    """The magics' options: a bad one is a UsageError in the cell, not an exit."""

    def error(self, message: str) -> Any:
        from IPython.core.error import UsageError

        raise UsageError(f"{self.prog}: {message}")


def _parser(name: str, *, cell: bool = False) -> _Parser:
    parser = _Parser(prog=name, add_help=False)
    parser.add_argument("--device", default="auto", help='"auto", "cpu", "cuda" or "cuda:N"')
    if cell:
        parser.add_argument("--leaks", default="warn", choices=("warn", "raise", "ignore"), help="what a leak does")
        parser.add_argument("--plot", action="store_true", help="record a timeline and draw it below the cell")
    return parser


_CELL, _SNAPSHOT, _RELEASE = _parser("%%vram", cell=True), _parser("%vram"), _parser("%vram_release")


class VramMagics:
    """``%%vram``, ``%vram`` and ``%vram_release`` of one shell. The last cell's report is
    ``last_report``; :func:`magics_of` finds the instance of a shell."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.last_report: SessionReport | None = None

    # -- naming the notebook's holders --------------------------------------------------------
    def _last_outputs(self) -> dict[str, int]:
        ns = self.shell.user_ns
        history = ns.get("_oh", {})
        found: dict[str, int] = {}
        for name in ("_", "__", "___"):
            value = ns.get(name)
            if value is None or value == "":
                continue
            cells = [n for n, out in history.items() if out is value]
            if cells:
                found[name] = max(cells)
        return found

    def in_notebook_terms(self, report: SessionReport) -> SessionReport:
        """The report with each holder path in notebook terms."""
        last = self._last_outputs()

        def leak(item: Leak) -> Leak:
            holders = _unique([notebook_holder(h, last) for h in item.holders])
            group = None if item.group is None else notebook_holder(item.group, last)
            return replace(item, holders=holders, group=group)

        return replace(report, leaks=tuple(leak(item) for item in report.leaks))

    # -- %%vram ---------------------------------------------------------------------------------
    def vram(self, line: str, cell: str) -> Any:
        """Run the cell in a vramguard session and render its report below it."""
        args = _CELL.parse_args(shlex.split(line))
        # The cell's number as its In[n] / Out[n] show it (the displayhook's prompt count).
        count = getattr(getattr(self.shell, "displayhook", None), "prompt_count", None)
        name = f"cell {count}" if count is not None else "cell"
        session = GpuSession(
            name, device=args.device, leaks="ignore", sample_every=SAMPLE_EVERY_S if args.plot else None
        )
        source = self.shell.transform_cell(cell)
        # The cell's own name, as IPython names a cell (linecache holds its lines): tracebacks
        # and the leak warning point into the cell, not into IPython.
        filename = self.shell.compile.cache(source, count or 0, raw_code=cell)
        body, last = self._split(source, filename)
        names = assigned_names(source)
        ns = self.shell.user_ns
        result = None
        variables: list[tuple[str, int]] = []
        try:
            with session:
                try:
                    exec(body, ns)
                    if last is not None:
                        result = eval(last, ns)
                        session.keep(result)  # the cell's output, shown below it: expected to survive
                finally:
                    variables = self._keep_variables(session, names)
        finally:
            if session.report is not None:
                self._show(session.report, args.plot, variables)
        report = self.last_report
        assert report is not None
        leaked = report.leaked_bytes or 0
        if leaked and args.leaks != "ignore":
            held = "; ".join(dict.fromkeys(h for leak in report.leaks for h in leak.holders[:1])) or "census off"
            message = f"{report.name} leaked {format_size(leaked)}: held by {held}"
            if args.leaks == "raise":
                raise LeakError(message, report)
            warnings.warn_explicit(
                LeakWarning(message), LeakWarning, filename, _line_of(report, filename), module=filename
            )
        return result

    def _keep_variables(self, session: GpuSession, names: list[str]) -> list[tuple[str, int]]:
        """Keep what the cell's variables hold (the notebook's namespace outlives the cell) and
        return each variable that holds memory on the session's device, with its bytes."""
        ns = self.shell.user_ns
        kept: list[tuple[str, int]] = []
        for name in names:
            value = ns.get(name)
            if value is None or isinstance(value, _NOT_DATA):
                continue
            nbytes = storage_bytes([value], session.device)
            if nbytes:
                session.keep(value)
                kept.append((name, nbytes))
        return kept

    def _split(self, source: str, filename: str = "<vram cell>") -> tuple[Any, Any]:
        """The cell compiled in two parts: the statements, and a last expression (its output)."""
        tree = ast.parse(source)
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            expression = tree.body.pop()
            assert isinstance(expression, ast.Expr)
            last = compile(ast.Expression(expression.value), filename, "eval")
        return compile(tree, filename, "exec"), last

    def _show(self, report: SessionReport, plot: bool, variables: list[tuple[str, int]] | None = None) -> None:
        report = self.in_notebook_terms(report)
        kept = tuple(
            f"kept by notebook variable {name}: {format_size(nbytes)} (the notebook's namespace; del {name} frees it)"
            for name, nbytes in variables or ()
        )
        report = replace(report, notes=(*kept, *report.notes))
        self.last_report = report
        render(report, console=make_console(file=sys.stdout))
        if plot and report.timeline is not None:
            from IPython import display as ipython_display

            display: Any = ipython_display.display  # untyped in IPython
            image: Any = ipython_display.Image

            fd, path = tempfile.mkstemp(suffix=".png", prefix="vramguard-")
            os.close(fd)
            try:
                plot_report(report, path)
                with open(path, "rb") as file:
                    display(image(data=file.read(), format="png"))
            finally:
                os.unlink(path)

    # -- %vram ------------------------------------------------------------------------------------
    def vram_line(self, line: str) -> None:
        """The device's memory now: allocated, reserved, cached, NVML's view."""
        args = _SNAPSHOT.parse_args(shlex.split(line))
        snap = take(resolve_device(args.device), nvml=True)
        rows = [
            ("allocated", snap.allocated_bytes),
            ("reserved", snap.reserved_bytes),
            ("cached", snap.cached_bytes),
            ("peak allocated", snap.peak_allocated_bytes),
            ("process (NVML)", snap.process_used_bytes),
            ("device used (NVML)", snap.device_used_bytes),
        ]
        from rich.table import Table

        table = Table(title=f"vramguard: {snap.device} now", title_justify="left", show_header=False)
        for label, value in rows:
            if value is not None:
                table.add_row(label, format_size(value))
        console = make_console(file=sys.stdout)
        console.print(table)
        held = self.notebook_holdings(resolve_device(args.device))
        if held:
            lines = [f"  {where}: {format_size(nbytes)}" for where, nbytes in held]
            console.print("held by the notebook (%vram_release drops them):\n" + "\n".join(lines), markup=False)

    def notebook_holdings(self, device: Any) -> list[tuple[str, int]]:
        """The device's tensor bytes the notebook itself holds: each cell's output in the
        history, and the last exception's frames."""
        found: list[tuple[str, int]] = []
        history = self.shell.user_ns.get("_oh", {})
        for n in sorted(history):
            nbytes = storage_bytes([history[n]], device)
            if nbytes:
                found.append((f"output of cell {n} (Out[{n}])", nbytes))
        error = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
        if isinstance(error, BaseException):
            frames: list[object] = []
            tb = error.__traceback__
            while tb is not None:
                code = tb.tb_frame.f_code
                # Not a cell's own frame (its locals are the notebook's), nor IPython's (it holds the shell).
                if code.co_name != "<module>" and not code.co_filename.startswith(_IPYTHON_DIR):
                    frames.append(dict(tb.tb_frame.f_locals))
                tb = tb.tb_next
            nbytes = storage_bytes(frames, device)
            del frames
            if nbytes:
                found.append((f"the last exception ({type(error).__name__}: its traceback's frames)", nbytes))
        return found

    # -- %vram_release ------------------------------------------------------------------------
    def vram_release(self, line: str) -> None:
        """Drop the notebook's own references, then release in order and show what came back.

        The order: the output history (``_``, ``__``, ``___``, ``Out``, ``_n``) and the last
        exception (its traceback holds every frame's locals) first, then ``gc.collect()``,
        synchronize and ``empty_cache()``: emptying the cache before the drop would return nothing.
        """
        args = _RELEASE.parse_args(shlex.split(line))
        device = resolve_device(args.device)
        dropped = self.drop_notebook_references()
        report = release(device=device)
        console = make_console(file=sys.stdout)
        console.print(f"dropped: {', '.join(dropped) or 'nothing the notebook held'}", markup=False, soft_wrap=True)
        render(report, console=console)

    def drop_notebook_references(self) -> list[str]:
        """Clear the output history and the last exception; what was dropped."""
        shell = self.shell
        dropped: list[str] = []
        history = shell.user_ns.get("_oh", {})
        if history or any(shell.user_ns.get(n) not in (None, "") for n in ("_", "__", "___")):
            dropped.append(f"the output history ({len(history)} outputs: _, __, ___, Out[n], _n)")
        displayhook = getattr(shell, "displayhook", None)
        if displayhook is not None and hasattr(displayhook, "flush"):
            displayhook.flush()  # clears Out, _, __, ___ and every _n
        hidden = getattr(shell, "user_ns_hidden", {})
        for name in ("_", "__", "___"):
            # flush() leaves them when output caching is off, and always in the hidden namespace
            # (IPython pushes them there too, to keep them out of %who).
            shell.user_ns[name] = ""
            if name in hidden:
                hidden[name] = ""
        if any(getattr(sys, name, None) is not None for name in ("last_value", "last_traceback", "last_exc")):
            dropped.append("the last exception (sys.last_value and its traceback's frames)")
        for name in ("last_type", "last_value", "last_traceback", "last_exc"):
            if hasattr(sys, name):
                setattr(sys, name, None)
        return dropped


def _line_of(report: SessionReport, filename: str) -> int:
    """The cell's line where the first leaked tensor was made, when the census recorded it there; else 1."""
    from vramguard.census._frames import short_path

    names = {filename, short_path(filename)}  # sites name files by their short path
    for leak in report.leaks:
        site = _SITE.match(leak.created_at or "")
        if site and site.group(1) in names:
            return int(site.group(2))
    return 1


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics with an IPython shell (``%load_ext vramguard``)."""
    if ipython is None or not hasattr(ipython, "register_magic_function"):
        raise InvalidArgument("ipython", ipython, "an IPython shell (get_ipython())")
    magics = VramMagics(ipython)
    ipython.register_magic_function(magics.vram, magic_kind="cell", magic_name="vram")
    ipython.register_magic_function(magics.vram_line, magic_kind="line", magic_name="vram")
    ipython.register_magic_function(magics.vram_release, magic_kind="line", magic_name="vram_release")
    ipython._vramguard_magics = magics


def magics_of(ipython: Any) -> VramMagics | None:
    """The magics ``%load_ext vramguard`` registered with this shell (None before)."""
    found = getattr(ipython, "_vramguard_magics", None)
    return found if isinstance(found, VramMagics) else None
