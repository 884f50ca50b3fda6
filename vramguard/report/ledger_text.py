"""A :class:`~vramguard.MemoryLedger` as a table: rich when it is installed, plain text otherwise.

Built from the record alone, so a ledger loaded from JSON (``MemoryLedger.from_dict``) renders
the same as a live one. Columns: what the memory is, its bytes and share of the total, who holds
it (with its roles), and what would return it. The residual is the last row, always.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import IO

from vramguard.core._sizes import format_size
from vramguard.ledger import LedgerLine, MemoryLedger

COLUMNS = ("memory", "bytes", "share", "held by", "returned by")


def _holder(line: LedgerLine) -> str:
    text = line.holder
    if line.detail and line.category in ("tensors", "mapped file"):
        text = f"{line.detail}: {text}" if line.category == "tensors" else f"{text} ({line.detail})"
    if line.roles and not (len(line.roles) == 1 and line.roles[0][0] == "other"):
        text += " [" + ", ".join(f"{role} {format_size(n)}" for role, n in line.roles) + "]"
    return text


def _share(line: LedgerLine, total: int) -> str:
    return f"{100 * line.nbytes / total:.1f}%" if total else "-"


def rows(ledger: MemoryLedger) -> list[tuple[str, str, str, str, str]]:
    """The table's rows as strings, the residual last."""
    return [
        (line.category, format_size(line.nbytes), _share(line, ledger.total_bytes), _holder(line), line.returned_by)
        for line in ledger.lines
    ]


def header(ledger: MemoryLedger) -> str:
    return (
        f"vramguard explain: {ledger.device}, {format_size(ledger.total_bytes)} ({ledger.total_source}); "
        f"residual {format_size(ledger.residual_bytes)}; read in {ledger.duration_s * 1000:.0f} ms"
    )


def ledger_text(ledger: MemoryLedger) -> str:
    """Plain text: a header line, one line per ledger line, then the notes."""
    table = [COLUMNS, *rows(ledger)]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    out = [header(ledger)]
    for row in table:
        left = "  ".join(cell.ljust(widths[i]) if i != 1 else cell.rjust(widths[i]) for i, cell in enumerate(row[:3]))
        out.append(f"{left}  {row[3]}  ->  {row[4]}")
    out += [f"note: {note}" for note in ledger.notes]
    return "\n".join(out) + "\n"


def render_ledger(ledger: MemoryLedger, file: IO[str] | None = None, *, width: int | None = None) -> None:
    """Print the ledger to ``file`` (default stdout): a rich table where rich is installed."""
    stream = sys.stdout if file is None else file
    if importlib.util.find_spec("rich") is None:
        stream.write(ledger_text(ledger))
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(file=stream, width=width, highlight=False)
    table = Table(title=header(ledger), title_justify="left", box=box.SIMPLE_HEAD, show_edge=False)
    for name in COLUMNS:
        table.add_column(name, justify="right" if name in ("bytes", "share") else "left", overflow="fold")
    for row, line in zip(rows(ledger), ledger.lines, strict=True):
        table.add_row(*(Text(cell) for cell in row), style="bold" if line.category == "residual" else None)
    console.print(table)
    for note in ledger.notes:
        console.print(f"note: {note}", markup=False, soft_wrap=True)
