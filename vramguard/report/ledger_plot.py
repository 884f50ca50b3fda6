"""Ledgers as a picture: one horizontal bar per device, stacked by line, the largest labelled.

Each bar is one :class:`~vramguard.MemoryLedger`: its lines left to right in ledger order, a
colour per category (the legend), white gaps between lines so two tensor lines stay two. The
largest lines are labelled inside their segment with their holder and bytes where the text fits
(shortened otherwise). A positive residual is a hatched grey segment; a negative one (lines that
overlap) is a mark at the total. Bars share one scale, so devices compare by length.

Built from the records alone (a ledger read back from JSON draws the same); matplotlib is
imported when a picture is made, object API only (see ``vramguard.report.plot``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vramguard.core._errors import InvalidArgument
from vramguard.core._sizes import format_size
from vramguard.ledger import LedgerLine, MemoryLedger
from vramguard.ledger._records import RESIDUAL
from vramguard.report.plot import _check_size, _figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

WIDTH_PX = 1200
BAR_HEIGHT_PX = 170
FRAME_HEIGHT_PX = 190
"""Room for the title, the axis and the legend, above and below the bars."""
BAR = 0.4
"""A bar's height (bars are 1 apart): the space above it takes the labels that do not fit inside."""
LEADER_PX, LEVEL_PX = 6, 14
"""A callout's first level above its bar, and the step between levels, in pixels."""
LABELLED = 6
"""The largest lines of each bar that get a label."""
_UNITS = (("B", 1), ("KiB", 2**10), ("MiB", 2**20), ("GiB", 2**30), ("TiB", 2**40))
_COLOURS = {
    "tensors": "#4878d0",
    "mapped file": "#82c6e2",
    "workspace": "#d65f5f",
    "uncovered blocks": "#956cb4",
    "cached free (stranded)": "#ee854a",
    "cached free": "#ffc080",
    "context": "#8c613c",
    "outside torch": "#dc7ec0",
    "code": "#797979",
    "malloc in use": "#6acc64",
    "malloc free": "#b8e6a8",
    "Python objects": "#d5bb67",
    "stacks": "#b0b0b0",
}
_OTHER_COLOURS = ("#8172b3", "#64b5cd", "#c44e52", "#55a868", "#937860")


def plot_ledgers(
    ledgers: MemoryLedger | Iterable[MemoryLedger],
    path: str | os.PathLike[str],
    *,
    width_px: int = WIDTH_PX,
    height_px: int | None = None,
    dpi: int = 100,
    labelled: int = LABELLED,
) -> Path:
    """Draw one bar per ledger (device) into ``path`` (PNG, or any format matplotlib knows by
    the suffix): stacked by line, coloured by category, the ``labelled`` largest lines of each
    bar named by holder. Returns the path written."""
    items = [ledgers] if isinstance(ledgers, MemoryLedger) else list(ledgers)
    if not items or not all(isinstance(x, MemoryLedger) for x in items):
        raise InvalidArgument("ledgers", ledgers, "a MemoryLedger or a non-empty list of them")
    if isinstance(labelled, bool) or not isinstance(labelled, int) or labelled < 0:
        raise InvalidArgument("labelled", labelled, "an int >= 0")
    if isinstance(dpi, bool) or not isinstance(dpi, int) or not 10 <= dpi <= 1000:
        raise InvalidArgument("dpi", dpi, "an int from 10 to 1000")
    width = _check_size("width_px", width_px)
    height = _check_size("height_px", FRAME_HEIGHT_PX + BAR_HEIGHT_PX * len(items) if height_px is None else height_px)
    figure = ledger_figure(items, width, height, dpi, labelled)
    target = Path(path)
    figure.savefig(target, dpi=dpi)
    return target


def ledger_figure(items: list[MemoryLedger], width: int, height: int, dpi: int, labelled: int = LABELLED) -> Figure:
    """The figure :func:`plot_ledgers` saves (checked arguments)."""
    figure = _figure(width, height, dpi)
    ax = figure.add_subplot()
    largest = max(max(x.total_bytes, sum(line.nbytes for line in x.lines if line.nbytes > 0)) for x in items)
    unit, div = next(((n, d) for n, d in reversed(_UNITS) if largest >= 2 * d), _UNITS[0])
    colours = _colours(items)
    # Limits, title and legend first: a label is fitted to its segment's width in pixels.
    ax.set_yticks(range(len(items)), [_bar_name(x) for x in reversed(items)])
    ax.set_ylim(-0.5, len(items) - 0.1)
    ax.set_xlim(0, largest / div * 1.01)
    ax.set_xlabel(unit)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title("Where the memory is: every byte on a line with its holder (vramguard explain)", loc="left")
    handles = [_patch(colour, category) for category, colour in colours.items()]
    figure.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 7), fontsize=8)
    figure.canvas.draw()
    for row, ledger in enumerate(items):
        _draw_bar(ax, len(items) - 1 - row, ledger, div, colours, labelled)
    return figure


def _bar_name(ledger: MemoryLedger) -> str:
    return f"{ledger.device}\n{format_size(ledger.total_bytes)}"


def _colours(items: list[MemoryLedger]) -> dict[str, str]:
    found: dict[str, str] = {}
    spare = iter(_OTHER_COLOURS * 4)
    for ledger in items:
        for line in ledger.lines:
            if line.category not in found and line.nbytes > 0:
                found[line.category] = _COLOURS.get(line.category) or next(spare, "#999999")
    if RESIDUAL in found:
        found[RESIDUAL] = "#dddddd"
    return found


def _patch(colour: str, category: str) -> Any:
    from matplotlib.patches import Patch

    return Patch(
        facecolor=colour,
        edgecolor="#666666" if category == RESIDUAL else colour,
        label=category,
        hatch="//" if category == RESIDUAL else None,
    )


def _label(line: LedgerLine) -> str:
    """A line that holds tensors (a tensor line, a mapped checkpoint that tensors use) by its
    holder; the others by what they are (their holder is generic)."""
    name = line.holder if line.category == "tensors" or line.storage_bytes is not None else line.category
    # A picture names the holder, not where its frame is ("local 'pipe' in f() at a.py:82"):
    # the text rendering keeps the whole path.
    name = name.split(" in ", 1)[0] if name.startswith("local ") else name
    if len(name) > _LABEL_CHARS:
        name = name[: _LABEL_CHARS - 1] + "…"
    return f"{name}\n{format_size(line.nbytes)}"


_LABEL_CHARS = 44


def _draw_bar(ax: Axes, y: int, ledger: MemoryLedger, div: int, colours: dict[str, str], labelled: int) -> None:
    drawn = [line for line in ledger.lines if line.nbytes > 0]
    named = {id(line) for line in sorted(drawn, key=lambda x: -x.nbytes)[:labelled] if line.category != RESIDUAL}
    renderer = ax.figure.canvas.get_renderer()  # type: ignore[attr-defined]
    left = 0.0
    callouts: list[tuple[float, str]] = []
    for line in drawn:
        size = line.nbytes / div
        residual = line.category == RESIDUAL
        ax.barh(
            y,
            size,
            left=left,
            height=BAR,
            color=colours[line.category],
            edgecolor="#666666" if residual else "white",
            linewidth=0.8,
            hatch="//" if residual else None,
        )
        if id(line) in named and not _fits(ax, left + size / 2, y, size, _label(line), renderer):
            callouts.append((left + size / 2, _label(line).replace("\n", ", ")))
        left += size
    _callouts(ax, y, callouts, renderer)
    if ledger.residual_bytes < 0:
        total = ledger.total_bytes / div
        ax.plot([total, total], [y - BAR / 2 - 0.05, y + BAR / 2 + 0.05], color="black", linewidth=1.5)
        ax.annotate(
            f"total {format_size(ledger.total_bytes)}; residual {format_size(ledger.residual_bytes)} (lines overlap)",
            (total, y - BAR / 2 - 0.05),
            xytext=(0, -2),
            textcoords="offset points",
            ha="left",
            va="top",
            fontsize=8,
        )


def _fits(ax: Axes, x: float, y: float, width: float, text: str, renderer: Any) -> bool:
    """Write ``text`` centred in a segment ``width`` data units wide if it fits there."""
    room = abs(ax.transData.transform((width, 0))[0] - ax.transData.transform((0, 0))[0]) - 6
    label = ax.text(x, y, text, ha="center", va="center", fontsize=8, color="black")
    if label.get_window_extent(renderer).width <= room:
        return True
    label.remove()
    return False


def _callouts(ax: Axes, y: float, callouts: list[tuple[float, str]], renderer: Any) -> None:
    """Labels of segments too narrow for them, above the bar, each starting over its segment
    with a vertical leader. Placed right to left, a label that would run into the next one up
    a level: a leader then passes left of every label it could cross."""
    per_pixel = abs(ax.transData.inverted().transform((0, 1))[1] - ax.transData.inverted().transform((0, 0))[1])
    starts: list[float] = []  # per level: the left edge (pixels) of its leftmost label
    for x, text in sorted(callouts, reverse=True):
        label = ax.text(x, 0, text, ha="left", va="bottom", fontsize=8)
        extent = label.get_window_extent(renderer)
        if extent.x1 > ax.get_window_extent(renderer).x1:  # past the right edge: end at the leader instead
            label.set_horizontalalignment("right")
            extent = label.get_window_extent(renderer)
        level = next((n for n, start in enumerate(starts) if extent.x1 + 6 < start), len(starts))
        top = y + BAR / 2 + (LEADER_PX + LEVEL_PX * level) * per_pixel
        label.set_position((x, top))
        ax.plot([x, x], [y + BAR / 2, top], color="#444444", linewidth=0.8)
        if level == len(starts):
            starts.append(extent.x0)
        else:
            starts[level] = extent.x0
