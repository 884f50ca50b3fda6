"""The many-files figure of ``benchmarks/asr_memory.py --files N``: one panel per way on shared
axes, memory over time with a dot as each file is done (imported by ``benchmarks/asr_memory.py``)."""

from __future__ import annotations

import statistics
from typing import Any

import vramguard

MiB = 2**20


def plot_files(results: dict[str, dict[str, Any]], path: str, title: str) -> None:
    """One panel per way, stacked on shared axes: each way's memory over time, and a dot where
    each file was done, so growth (the dots climb) and a sawtooth (they stay low) read at a glance."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 0.6 + 1.55 * len(results)), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(results), 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    for ax, (colour, (way, result)) in zip(axes, enumerate(results.items()), strict=True):
        base = result["before_reserved_bytes"] or 0
        xs = [t for t, v in result["samples"] if v is not None]
        ys = [(v - base) / MiB for _, v in result["samples"] if v is not None]
        ax.plot(xs, ys, color=f"C{colour}", linewidth=1.0)
        ends = [(t, (v - base) / MiB) for t, v in result["file_ends"] if v is not None]
        if ends:
            ax.plot(*zip(*ends, strict=True), "o", color="black", markersize=3, label="each file done")
        ax.axhline(0, color="0.5", linewidth=0.7, linestyle=":")
        peak, end = above_start(result, "peak_reserved_bytes"), above_start(result, "end_reserved_bytes")
        times = result["per_file_s"]
        ax.set_title(
            f"{way}: peak {signed(peak)}, held at the end {signed(end)}, "
            f"{statistics.median(times):.2f} s per file (median)",
            fontsize=9, loc="left",
        )  # fmt: skip
        ax.grid(alpha=0.3)
    legend = next((h for h in (ax.get_legend_handles_labels() for ax in axes) if h[0]), None)
    if legend is not None:  # above the panels, clear of every line
        figure.legend(*legend, fontsize=8, loc="upper right")
    axes[-1].set_xlabel("seconds since the first file")
    figure.supylabel("memory above the start (MiB)", fontsize=10)
    figure.suptitle(title, fontsize=10, x=0.01, ha="left")
    figure.savefig(path)


def above_start(result: dict[str, Any], key: str) -> int | None:
    base, value = result["before_reserved_bytes"], result[key]
    return None if base is None or value is None else value - base


def signed(value: int | None) -> str:
    return "n/a" if value is None else vramguard.format_size(value, signed=True)
