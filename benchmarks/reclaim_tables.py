"""The reclaim benchmark's figures and tables: a cell's fractions from its children's snapshots,
their spread over the repetitions, and the Markdown tables and the plot (imported by
``benchmarks/reclaim.py``; ``--from-json`` redraws them from a saved run)."""

from __future__ import annotations

import statistics
import textwrap
from collections.abc import Callable, Sequence
from typing import Any


def figures(result: dict[str, Any]) -> dict[str, float | int | None]:
    """The cell's figures from one child's three snapshots."""
    # On the host the basis is the resident set: anonymous memory *and* file-backed mappings.
    # transformers maps a safetensors checkpoint instead of copying it (whisper-base's 277 MiB of
    # weights added 25 MiB of anonymous memory and the rest as mapped file pages once run), so a
    # model kept alive would look returned by resident anonymous memory alone.
    key = "reserved_bytes" if result.get("device", "cpu").startswith("cuda") else "rss_bytes"
    before, loaded, after = (result[k][key] for k in ("before", "loaded", "after"))
    reclaimable = None if loaded is None or before is None else loaded - before
    fraction = None
    if reclaimable is not None and after is not None and reclaimable > 0:
        fraction = (loaded - after) / reclaimable
    alloc_before, alloc_after = result["before"]["allocated_bytes"], result["after"]["allocated_bytes"]
    referenced = None if alloc_before is None or alloc_after is None else max(0, alloc_after - alloc_before)
    cached_before, cached_after = result["before"]["cached_bytes"], result["after"]["cached_bytes"]
    mapped = None
    if not key.startswith("reserved"):
        parts = [result[k][f] for k in ("before", "after") for f in ("rss_bytes", "reserved_bytes")]
        if None not in parts:
            mapped = (parts[2] - parts[3]) - (parts[0] - parts[1])
    found: dict[str, float | int | None] = {
        "fraction": fraction,
        "reclaimable_bytes": reclaimable,
        # Above the level before loading: on the host the absolute figure also counts pymalloc's
        # arenas and the libraries' own memory, which no strategy is about.
        "cached_bytes": None if cached_before is None or cached_after is None else cached_after - cached_before,
        "referenced_bytes": referenced,
        "mapped_bytes": mapped,  # host only: file-backed resident pages above the level before loading
        "release_s": result["release_s"],
    }
    if key.startswith("reserved"):
        found.update(process_figures(result))
    return found


def process_figures(result: dict[str, Any]) -> dict[str, float | int | None]:
    """On CUDA, the same fraction by NVML's figure for this process (``process_used_bytes``):
    torch's reserved bytes plus the CUDA context and whatever else the driver holds for it, so
    a strategy that returns the cache shows there as it does in reserved; and how far the
    process stays above the level before loading. None where NVML could not be read."""
    before, loaded, after = (result[k].get("process_used_bytes") for k in ("before", "loaded", "after"))
    reclaimable = None if loaded is None or before is None else loaded - before
    fraction = None
    if reclaimable is not None and after is not None and reclaimable > 0:
        fraction = (loaded - after) / reclaimable
    return {
        "process_fraction": fraction,
        "process_reclaimable_bytes": reclaimable,
        "process_above_before_bytes": None if after is None or before is None else after - before,
    }


def _spread(values: Sequence[float | int | None]) -> dict[str, float | None]:
    present = [float(v) for v in values if v is not None]
    if not present:
        return {"min": None, "median": None, "max": None}
    return {"min": min(present), "median": statistics.median(present), "max": max(present)}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """A cell's figures per repetition and their spread."""
    per_run = [figures(r) for r in runs]
    summary = {key: _spread([f[key] for f in per_run]) for key in per_run[0]}
    arenas = [r.get("main_arena") for r in runs]
    cell = {"runs": per_run, "summary": summary, "told": runs[-1]["told"], "main_arena": arenas}
    if "environment" in runs[-1]:  # CUDA: the device the child measured, named by the child
        cell["environment"] = runs[-1]["environment"]
    return cell


def _mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:.1f}"


def fraction_text(cell: dict[str, Any], key: str = "fraction") -> str:
    if "error" in cell:
        return "failed"
    return _with_spread(cell, key, _two)


def _two(value: float) -> str:
    return f"{value:.2f}".replace("-0.00", "0.00")


def _mib_spread(cell: dict[str, Any], key: str) -> str:
    return _with_spread(cell, key, _mib)


def _with_spread(cell: dict[str, Any], key: str, text: Callable[[float], str]) -> str:
    """The median and, from two repetitions on, always the min–max: identical repetitions are a
    finding too, and a bare figure would hide whether there was a spread."""
    s = cell["summary"].get(key)
    if s is None or s["median"] is None:
        return "n/a"
    measured = sum(run.get(key) is not None for run in cell["runs"])
    if measured < 2:
        return text(s["median"])
    return f"{text(s['median'])} ({text(s['min'])}–{text(s['max'])})"


def markdown(data: dict[str, Any]) -> str:
    """The run as Markdown: a summary matrix, then one table per scenario."""
    results: dict[str, dict[str, Any]] = data["results"]
    strategies = data["strategies"]
    cuda = data["device"].startswith("cuda")
    if cuda:
        return markdown_cuda(data)
    lines = [
        f"Device: {data['device_label']}. Date: {data['date']}. Repetitions per cell: {data['repeat']} "
        "(median, with min–max in brackets). Command: `" + data["command"] + "`.",
        "",
        "**Fraction of the reclaimable memory returned (1.00 = the level before loading):**",
        "",
        "| strategy | " + " | ".join(results) + " |",
        "|---|" + "---|" * len(results),
    ]
    for strategy in strategies:
        lines.append(f"| {strategy} | " + " | ".join(fraction_text(results[s][strategy]) for s in results) + " |")
    for scenario, cells in results.items():
        reclaimable = next(
            (c["summary"]["reclaimable_bytes"]["median"] for c in cells.values() if "summary" in c), None
        )
        lines += [
            "",
            f"**{scenario}** (loading and one run added {_mib(reclaimable)} MiB):",
            "",
            "| strategy | returned | more cached (MiB) | still referenced (MiB) | "
            + ("" if cuda else "mapped files (MiB) | ")
            + "release (ms) | told why |",
            "|---|---|---|---|---|" + ("" if cuda else "---|") + "---|",
        ]
        for strategy in strategies:
            cell = cells[strategy]
            if "error" in cell:
                lines.append(f"| {strategy} | failed |" + " |" * (4 if cuda else 5))
                continue
            ms = cell["summary"]["release_s"]
            took = "n/a"
            if ms["median"] is not None:
                took = f"{ms['median'] * 1000:.0f} ({ms['min'] * 1000:.0f}–{ms['max'] * 1000:.0f})"
            told = cell["told"] or "no"
            lines.append(
                f"| {strategy} | {fraction_text(cell)} | {_mib_spread(cell, 'cached_bytes')} | "
                f"{_mib_spread(cell, 'referenced_bytes')} | "
                + ("" if cuda else f"{_mib_spread(cell, 'mapped_bytes')} | ")
                + f"{took} | {told} |"
            )
    return "\n".join(lines) + "\n"


def _matrix(title: str, results: dict[str, dict[str, Any]], strategies: list[str], key: str) -> list[str]:
    lines = ["", title, "", "| strategy | " + " | ".join(results) + " |", "|---|" + "---|" * len(results)]
    for strategy in strategies:
        lines.append(f"| {strategy} | " + " | ".join(fraction_text(results[s][strategy], key) for s in results) + " |")
    return lines


def _median(cells: dict[str, Any], key: str) -> float | None:
    return next((c["summary"][key]["median"] for c in cells.values() if key in c.get("summary", {})), None)


def markdown_cuda(data: dict[str, Any]) -> str:
    """A CUDA run: the fractions by torch's reserved bytes and, beside them, by NVML's figure for
    the process; per scenario, how far the process stays above the level before loading."""
    results: dict[str, dict[str, Any]] = data["results"]
    strategies: list[str] = data["strategies"]
    lines = [
        f"Device: {data['device_label']}. Date: {data['date']}. Repetitions per cell: {data['repeat']} "
        "(median, with min–max in brackets). Command: `" + data["command"] + "`."
    ]
    lines += _matrix(
        "**Fraction of the reclaimable memory returned, by torch's reserved bytes (1.00 = the level before loading):**",
        results, strategies, "fraction",
    )  # fmt: skip
    lines += _matrix(
        "**The same by NVML's figure for this process (`process_used_bytes`: reserved memory, the CUDA context "
        "and whatever else the driver holds for it):**",
        results, strategies, "process_fraction",
    )  # fmt: skip
    for scenario, reason in data.get("skipped", {}).items():
        lines += ["", f"Scenario {scenario!r} skipped: {reason}."]
    for scenario, cells in results.items():
        lines += [
            "",
            f"**{scenario}** (loading and one run added {_mib(_median(cells, 'reclaimable_bytes'))} MiB reserved, "
            f"{_mib(_median(cells, 'process_reclaimable_bytes'))} MiB by NVML):",
            "",
            "| strategy | returned (reserved) | returned (NVML) | NVML above before (MiB) | more cached (MiB) | "
            "still referenced (MiB) | release (ms) | told why |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for strategy in strategies:
            cell = cells[strategy]
            if "error" in cell:
                lines.append(f"| {strategy} | failed |" + " |" * 6)
                continue
            ms = cell["summary"]["release_s"]
            took = "n/a"
            if ms["median"] is not None:
                took = f"{ms['median'] * 1000:.0f} ({ms['min'] * 1000:.0f}–{ms['max'] * 1000:.0f})"
            lines.append(
                f"| {strategy} | {fraction_text(cell)} | {fraction_text(cell, 'process_fraction')} | "
                f"{_mib_spread(cell, 'process_above_before_bytes')} | {_mib_spread(cell, 'cached_bytes')} | "
                f"{_mib_spread(cell, 'referenced_bytes')} | {took} | {cell['told'] or 'no'} |"
            )
    return "\n".join(lines) + "\n"


def plot(data: dict[str, Any], path: str) -> None:
    """A heat table of the median fraction returned: one row per strategy, one column per scenario,
    each cell coloured from red (nothing returned) to green (all of it) and printed with its median
    and, where the repetitions differ, their min–max; on CUDA a second table with the fractions by
    NVML's figure for the process. A table, not bars: ten strategies as ten bar colours per group
    could not be told apart at a glance."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    results: dict[str, dict[str, Any]] = data["results"]
    strategies: list[str] = data["strategies"]
    scenarios = list(results)
    panels = [("fraction", "fraction of the reclaimable memory returned (1.00 = the level before loading)")]
    if data["device"].startswith("cuda"):
        panels = [("fraction", "returned: torch's reserved bytes"), ("process_fraction", "returned: NVML, the process")]
    figure = Figure(figsize=(10, (0.55 * len(strategies) + 2.0) * len(panels)), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(panels), 1, squeeze=False)[:, 0]
    colours = _fraction_colours()
    for ax, (key, title) in zip(axes, panels, strict=True):
        medians = [[_cell_median(results[scenario].get(strategy, {}), key) for scenario in scenarios]
                   for strategy in strategies]  # fmt: skip
        shown = [[colours(value) if value is not None else (0.88, 0.88, 0.88, 1.0) for value in row] for row in medians]
        ax.imshow(shown, aspect="auto")
        for i, strategy in enumerate(strategies):
            for j, scenario in enumerate(scenarios):
                summary = results[scenario].get(strategy, {}).get("summary", {}).get(key)
                value = medians[i][j]
                if value is None or not summary:
                    ax.text(j, i, "—", ha="center", va="center", fontsize=11, color="0.3")
                    continue
                text = _two(value)
                if _two(summary["min"]) != _two(summary["max"]):
                    text += f"\n{_two(summary['min'])}–{_two(summary['max'])}"
                dark = value < 0.2 or value > 0.85
                ax.text(j, i, text, ha="center", va="center", fontsize=11 if "\n" not in text else 9.5,
                        color="white" if dark else "black", linespacing=1.1)  # fmt: skip
        ax.set_xticks(range(len(scenarios)), [textwrap.fill(name, 12) for name in scenarios], fontsize=9)
        ax.xaxis.tick_top()
        ax.set_yticks(range(len(strategies)), strategies, fontsize=10.5)
        ax.tick_params(length=0)
        ax.set_xticks([x + 0.5 for x in range(len(scenarios) - 1)], minor=True)
        ax.set_yticks([y + 0.5 for y in range(len(strategies) - 1)], minor=True)
        ax.grid(which="minor", color="white", linewidth=2)
        ax.tick_params(which="minor", length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_title(title, fontsize=11, loc="left")
    figure.suptitle(f"{data['device_label'].split(' (')[0]}, {data['date']}: median of {data['repeat']} repetitions "
                    "(min–max below where they differ)", fontsize=10, x=0.01, ha="left")  # fmt: skip
    figure.savefig(path)


def _fraction_colours() -> Callable[[float], tuple[float, float, float, float]]:
    """Red (0) through yellow to green (1): the fraction returned, read without a legend."""
    from matplotlib import colormaps

    cmap = colormaps["RdYlGn"]
    return lambda value: cmap(min(max(value, 0.0), 1.0))  # type: ignore[no-any-return]


def _cell_median(cell: dict[str, Any], key: str) -> float | None:
    summary = cell.get("summary", {}).get(key)
    if not summary or summary["median"] is None:
        return None
    return float(summary["median"])
