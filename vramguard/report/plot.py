"""Plots of reports, drawn with matplotlib's Agg canvas into a file.

A report with a timeline (``gpu_session(sample_every=...)``) is drawn as allocated and reserved
bytes over time, the release steps shaded, the peak annotated and each ``empty_cache`` call
marked; a report without one as bars of before / peak / at exit / after. Several reports share
one figure, one panel each on a common scale, for comparisons.

matplotlib is imported only when a plot is made, and only its object API (``Figure`` on an Agg
canvas): plotting never switches the caller's pyplot backend or touches pyplot's global figures.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vramguard.core import _hooks
from vramguard.core._errors import InvalidArgument, MissingDependency
from vramguard.core._multi_report import MultiDeviceReport
from vramguard.core._records import ReleaseReport, SessionReport
from vramguard.core._sizes import format_size
from vramguard.distributed import ClusterReport
from vramguard.report._panels import panels
from vramguard.report._words import is_host, words_for

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Report = SessionReport | ReleaseReport
PlotInput = Report | MultiDeviceReport | ClusterReport
Sample = tuple[float, int | None, int | None, int | None]

PANEL_WIDTH_PX = 1000
PANEL_HEIGHT_PX = 450
DPI = 100
_UNITS = (("B", 1), ("KiB", 2**10), ("MiB", 2**20), ("GiB", 2**30), ("TiB", 2**40))
_STEP_SHADES = ("tab:green", "tab:olive")
LABEL_HEADROOM = 1.3
"""A timeline panel's y range is this much above its data: the band where step labels go."""
LABEL_PAD_PX = 3.0
PEAK_GID = "vramguard-peak"  # the peak annotation's id: found again to move it clear of the lines


def _figure(width_px: int, height_px: int, dpi: int) -> Figure:
    if importlib.util.find_spec("matplotlib") is None:
        raise MissingDependency("matplotlib", "plot", "plotting a report")
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise MissingDependency("matplotlib", "plot", "plotting a report") from error
    figure = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _check_size(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 50 <= value <= 20_000:
        raise InvalidArgument(name, value, "an int number of pixels from 50 to 20000")
    return value


def plot_report(
    report: PlotInput,
    path: str | os.PathLike[str],
    *,
    width_px: int = PANEL_WIDTH_PX,
    height_px: int | None = None,
    dpi: int = DPI,
) -> Path:
    """Draw ``report`` into ``path`` (PNG, or any format matplotlib knows by the suffix); a
    session over several devices or ranks gets a panel each (``height_px``: 450 per panel)."""
    return plot_reports([report], path, width_px=width_px, height_px=height_px, dpi=dpi)


def plot_reports(
    reports: Iterable[PlotInput],
    path: str | os.PathLike[str],
    *,
    width_px: int = PANEL_WIDTH_PX,
    height_px: int | None = None,
    dpi: int = DPI,
) -> Path:
    """Draw several reports on one figure, one panel each, stacked on a common scale.

    ``height_px`` defaults to 450 pixels per report. Returns the path written.
    """
    given = panels(reports)  # a MultiDeviceReport or ClusterReport: a panel per device or rank
    items = [r for r in given if isinstance(r, (SessionReport, ReleaseReport))]
    if not items or len(items) != len(given):
        accepted = "one or more SessionReport, ReleaseReport, MultiDeviceReport or ClusterReport"
        raise InvalidArgument("reports", given, accepted)
    width = _check_size("width_px", width_px)
    height = _check_size("height_px", PANEL_HEIGHT_PX * len(items) if height_px is None else height_px)
    if isinstance(dpi, bool) or not isinstance(dpi, int) or not 10 <= dpi <= 1000:
        raise InvalidArgument("dpi", dpi, "an int from 10 to 1000")
    figure = render_figure(items, width, height, dpi)
    target = Path(path)
    figure.savefig(target, dpi=dpi)
    return target


# The records' .plot(path) draws through this: renderers depend on records, never the reverse.
_hooks.register_plotter(plot_reports)


def render_figure(items: Sequence[Report], width: int, height: int, dpi: int) -> Figure:
    """The figure of ``items``, laid out and ready to save (checked arguments only)."""
    figure = _figure(width, height, dpi)
    axes = figure.subplots(len(items), 1, squeeze=False)[:, 0]
    unit = _unit(max((_largest(r) for r in items), default=0))
    top = right = 0.0
    timelines: list[tuple[Axes, list[tuple[float, str]]]] = []
    for ax, report in zip(axes, items, strict=True):
        if isinstance(report, SessionReport) and report.timeline is not None and len(report.timeline.samples) >= 2:
            timelines.append((ax, _draw_timeline(ax, report, unit)))
            right = max(right, ax.get_xlim()[1])
        else:
            _draw_bars(ax, report, unit)
        top = max(top, ax.get_ylim()[1])
    # One scale for every panel (and one time axis for the timelines): compared by eye.
    for ax in axes:
        ax.set_ylim(0, top * (LABEL_HEADROOM if timelines else 1.0))
    for ax, _ in timelines:
        ax.set_xlim(0, right)
    if timelines:
        # The step labels are laid out on the final geometry: draw once (the layout engine
        # places the axes), freeze that layout, then place each label where it fits.
        figure.canvas.draw()
        figure.set_layout_engine("none")
        renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
        for ax, labels in timelines:
            _clear_peak_label(ax, renderer)
            _place_step_labels(ax, labels, renderer)
    return figure


def _unit(largest: int) -> tuple[str, int]:
    name, div = _UNITS[0]
    for name_, div_ in _UNITS:
        if largest >= div_:
            name, div = name_, div_
    return name, div


def _values(report: Report) -> list[int | None]:
    if isinstance(report, ReleaseReport):
        return [
            report.before.allocated_bytes,
            report.before.reserved_bytes,
            report.after.allocated_bytes,
            report.after.reserved_bytes,
        ]
    values = [report.peak_allocated_bytes, report.peak_reserved_bytes]
    for snap in (report.before, report.at_exit, report.after):
        values += [snap.allocated_bytes, snap.reserved_bytes]
    if report.timeline is not None:
        for _, allocated, reserved, process in report.timeline.samples:
            values += [allocated, reserved, process]
    return values


def _largest(report: Report) -> int:
    return max((v for v in _values(report) if v is not None), default=0)


def _title(report: Report) -> str:
    # A "$" pair in a name (a script "cost$1$.py") would be read as mathtext and can fail to
    # parse: matplotlib shows an escaped dollar (r"\$") as a plain one.
    return _title_text(report).replace("$", r"\$")


def _title_text(report: Report) -> str:
    if isinstance(report, ReleaseReport):
        return (
            f"release on {report.device}: reclaimed {format_size(report.reclaimed_bytes)}, "
            f"{words_for(report.device).cached} {format_size(report.cached_bytes_after)}"
        )
    # What the session holds after its release: what it kept on purpose (a load stage keeps the
    # model it loaded) and what leaked; a session that kept something is not titled by a leak it had not.
    held = f"leaked {format_size(report.leaked_bytes)}"
    if report.kept_bytes:
        held = f"kept {format_size(report.kept_bytes)}" + (f", {held}" if report.leaked_bytes else "")
    return (
        f"{report.name} on {report.device}: peak {format_size(report.peak_increase_bytes, signed=True)} "
        f"above start, reclaimed {format_size(report.reclaimed_bytes)}, {held}"
    )


def _series(samples: Sequence[Sample], index: int, div: int) -> tuple[list[float], list[float]]:
    xs = [s[0] for s in samples if s[index] is not None]
    ys = [float(s[index] or 0) / div for s in samples if s[index] is not None]
    return xs, ys


def _draw_timeline(ax: Axes, report: SessionReport, unit: tuple[str, int]) -> list[tuple[float, str]]:
    """Lines of allocated and reserved bytes (on the host: malloc's in-use bytes and the resident
    memory), release steps shaded, peak and empty_cache marked.

    Returns the release steps' labels (start time, name), placed once the figure's layout is final."""
    assert report.timeline is not None
    name, div = unit
    samples = report.timeline.samples
    marks = sorted(report.timeline.marks)
    words = words_for(report.device)
    for index, label, style in ((1, words.allocated, "-"), (2, words.reserved, "-"), (3, "process (NVML)", ":")):
        xs, ys = _series(samples, index, div)
        if xs:
            ax.plot(xs, ys, style, label=label, linewidth=1.6 if index < 3 else 1.2)
    end = max([samples[-1][0], *(t for t, _ in marks)])
    shaded = 0
    labels: list[tuple[float, str]] = []
    for i, (start, label) in enumerate(marks):
        if not label.startswith("release:"):
            continue
        stop = marks[i + 1][0] if i + 1 < len(marks) else end
        ax.axvspan(
            start,
            max(stop, start + end * 1e-3),
            color=_STEP_SHADES[shaded % 2],
            alpha=0.18,
            label="release steps" if shaded == 0 else None,
        )
        labels.append((start, label.removeprefix("release:")))
        shaded += 1
    calls = [t for t, label in marks if label.startswith("empty_cache")]
    for j, t in enumerate(calls):
        ax.axvline(t, color="tab:red", linestyle="--", linewidth=1.2, label="empty_cache()" if j == 0 else None)
    for t, label in marks:
        if label == "exit":
            ax.axvline(t, color="0.4", linestyle=":", linewidth=1.0, label="block exit")
    _annotate_peak(ax, report, samples, div)
    ax.set_xlabel("seconds since the session's entry")
    ax.set_ylabel(f"memory ({name})")
    ax.set_title(_title(report), fontsize=10, loc="left")
    ax.set_xlim(0, end if end > 0 else None)
    ax.grid(alpha=0.3)
    # Outside the plot, right of it: inside, it would compete with the step labels and the peak.
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, borderaxespad=0.0)
    return labels


def _place_step_labels(ax: Axes, labels: Sequence[tuple[float, str]], renderer: Any) -> None:
    """Write each release step's name at the top of the panel, above its start: horizontal, kept
    inside the axes, and moved down a row wherever it would overlap a label or the peak's text."""
    from matplotlib.transforms import Bbox, IdentityTransform

    box = ax.get_window_extent(renderer)
    taken = [text.get_window_extent(renderer) for text in ax.texts]  # the peak annotation
    to_axes = ax.transAxes.inverted()
    for start, name in labels:
        x_px = float(ax.transData.transform((start, 0.0))[0])
        text = ax.text(0, 0, name, fontsize=7, color="tab:green", ha="left", va="top", transform=IdentityTransform())
        room = box.width - 2 * LABEL_PAD_PX
        size = _fit(text, name, room, renderer)
        width, height = size.width, size.height
        left = min(max(x_px, box.x0 + LABEL_PAD_PX), box.x1 - LABEL_PAD_PX - width)
        top = box.y1 - LABEL_PAD_PX
        while True:
            candidate = Bbox.from_bounds(left, top - height, width, height)
            if not any(candidate.overlaps(other) for other in taken) or top - 2 * height < box.y0:
                break
            top -= height + LABEL_PAD_PX
        taken.append(candidate)
        x_axes, y_axes = to_axes.transform((left, top))
        text.set_position((float(x_axes), float(y_axes)))
        text.set_transform(ax.transAxes)
        ax.plot([start, start], [1.0, 0.97], color="tab:green", linewidth=0.8, transform=ax.get_xaxis_transform())


def _fit(text: Any, name: str, room: float, renderer: Any) -> Any:
    """Shrink, then shorten (with "…"), a label until it is at most ``room`` pixels wide (a
    narrow panel); returns its extent."""
    size = text.get_window_extent(renderer)
    for fontsize in (6, 5):
        if size.width <= room:
            return size
        text.set_fontsize(fontsize)
        size = text.get_window_extent(renderer)
    for keep in range(len(name) - 1, -1, -1):
        if size.width <= room:
            break
        text.set_text(name[:keep] + "…")
        size = text.get_window_extent(renderer)
    return size


def _annotate_peak(ax: Axes, report: SessionReport, samples: Sequence[Sample], div: int) -> None:
    """Mark the session's peak on the line it belongs to, named in the legend and beside the point.

    On CUDA that is the allocator's own peak counter, on the allocated line (it may be above the
    sampled one: blocks can live between two samples). On the host it is the resident peak, on the
    resident line: the kernel's resident high-water mark (VmHWM) folded into the sampled one, which
    counts every resident page, mapped files included, so it is never drawn on malloc's line."""
    host = is_host(report.device)
    index, figure = (2, report.peak_reserved_bytes) if host else (1, report.peak_allocated_bytes)
    present: list[tuple[int, float]] = []
    for sample in samples:
        value = sample[index]
        if isinstance(value, int):
            present.append((value, -sample[0]))
    if not present:
        return
    sampled, minus_t = max(present)  # the first sample at the highest value
    at = -minus_t
    peak = sampled if figure is None else figure
    name = words_for(report.device).peak  # the legend names the figure; the label beside the point gives it
    label = f"{name} {format_size(peak)}"
    if peak - sampled > max(2**20, 0.02 * peak):
        # The peak lived between two samples (on the host it may also be file pages the resident
        # line does not count): the point is drawn at the report's figure, above the highest
        # sample, joined to it, so the picture never shows a peak the line cannot reach.
        ax.plot([at, at], [sampled / div, peak / div], ":", color="tab:red", linewidth=1)
        # On the host the kernel's mark also counts mapped files (a model's weights) that the
        # resident line, anonymous memory only, does not: not only a spike between two samples.
        label += " (incl. mapped files)" if host else " (between samples)"
    ax.plot([at], [peak / div], "o", color="tab:red", markersize=5, label=name)
    note = ax.annotate(
        label,
        (at, peak / div),
        xytext=(0, 10),
        ha="center",
        va="bottom",
        textcoords="offset points",
        fontsize=9,
        color="tab:red",
        arrowprops={"arrowstyle": "-", "color": "tab:red"},
    )
    note.set_gid(PEAK_GID)


def _clear_peak_label(ax: Axes, renderer: Any) -> None:
    """Move the peak's label off the lines: kept inside the panel's width, then lifted above every
    line under it (or, with no room above, set below them), its arrow still at the peak."""
    import numpy as np
    from matplotlib.text import Text

    label = next((t for t in ax.texts if t.get_gid() == PEAK_GID), None)
    if label is None:
        return
    box, pad = ax.get_window_extent(renderer), LABEL_PAD_PX
    to_points = 72.0 / ax.figure.dpi
    dx, dy = label.xyann  # type: ignore[attr-defined]
    extent = Text.get_window_extent(label, renderer)  # the words alone, not the arrow down to the peak
    shift = min(0.0, box.x1 - pad - extent.x1) + max(0.0, box.x0 + pad - extent.x0)
    x0, x1 = extent.x0 + shift, extent.x1 + shift
    under = []
    for line in ax.lines:
        data = np.asarray(line.get_xydata(), dtype=float)
        if len(data) <= 2:  # the peak's point and its dotted join, not a series
            continue
        xy = line.get_transform().transform(data)
        xs = np.arange(max(x0 - pad, xy[0, 0]), min(x1 + pad, xy[-1, 0]) + 1.0)  # every pixel column
        under.append(np.interp(xs, xy[:, 0], xy[:, 1]))
    ys = np.concatenate(under) if under else np.empty(0)
    lift = 0.0
    if ys.size and ((ys >= extent.y0 - pad) & (ys <= extent.y1 + pad)).any():
        above = float(ys.max()) + pad - extent.y0
        below = float(ys.min()) - pad - extent.y1
        if extent.y1 + above <= box.y1 - pad:
            lift = above
        elif extent.y0 + below >= box.y0 + pad:
            lift = below
    label.xyann = (dx + shift * to_points, dy + lift * to_points)  # type: ignore[attr-defined]


def _draw_bars(ax: Axes, report: Report, unit: tuple[str, int]) -> None:
    """Grouped bars of allocated and reserved bytes at each moment the report measured."""
    name, div = unit
    moments: list[tuple[str, int | None, int | None]]
    if isinstance(report, ReleaseReport):
        moments = [
            ("before", report.before.allocated_bytes, report.before.reserved_bytes),
            ("after", report.after.allocated_bytes, report.after.reserved_bytes),
        ]
    else:
        moments = [
            ("before", report.before.allocated_bytes, report.before.reserved_bytes),
            ("peak", report.peak_allocated_bytes, report.peak_reserved_bytes),
            ("at exit", report.at_exit.allocated_bytes, report.at_exit.reserved_bytes),
            ("after", report.after.allocated_bytes, report.after.reserved_bytes),
        ]
    positions = list(range(len(moments)))
    width = 0.38
    words = words_for(report.device)
    for offset, index, label in ((-width / 2, 1, words.allocated), (width / 2, 2, words.reserved)):
        raw: list[Any] = [m[index] for m in moments]
        bars = ax.bar([p + offset for p in positions], [(v or 0) / div for v in raw], width, label=label)
        ax.bar_label(bars, labels=[format_size(v) for v in raw], fontsize=8, padding=2)
    ax.set_xticks(positions, [m[0] for m in moments])
    ax.set_ylabel(f"memory ({name})")
    ax.set_title(_title(report), fontsize=10, loc="left")
    ax.margins(y=0.15)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
