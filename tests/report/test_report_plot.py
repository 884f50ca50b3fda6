"""Plots: files written, not empty, at the size asked for; timelines, bars and comparisons."""

from __future__ import annotations

import struct
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from report_factories import MIB, STEPS, release_report, session_report, timeline

import vramguard
from vramguard import InvalidArgument, MissingDependency, ReleaseStep, Timeline, format_size
from vramguard.report import plot_report
from vramguard.report.plot import render_figure


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_timeline_plot_is_a_png_of_the_default_size(tmp_path: Path) -> None:
    report = session_report(timeline=timeline())
    written = report.plot(tmp_path / "timeline.png")
    assert written == tmp_path / "timeline.png"
    assert written.stat().st_size > 10_000
    assert png_size(written) == (1000, 450)


def test_report_without_timeline_plots_bars(tmp_path: Path) -> None:
    written = session_report().plot(tmp_path / "bars.png", width_px=640, height_px=480)
    assert png_size(written) == (640, 480)
    assert written.stat().st_size > 5_000


def test_release_report_plots_before_and_after(tmp_path: Path) -> None:
    written = plot_report(release_report(), tmp_path / "release.png")
    assert png_size(written) == (1000, 450)


def test_several_reports_on_one_figure(tmp_path: Path) -> None:
    reports = [session_report(name="bare del"), session_report(timeline=timeline()), release_report()]
    written = vramguard.plot_reports(reports, tmp_path / "compare.png")
    assert png_size(written) == (1000, 3 * 450)
    assert written.stat().st_size > 20_000


def test_real_session_timeline_plots(tmp_path: Path) -> None:
    with vramguard.gpu_session("real", device="cpu", sample_every=0.005, leaks="ignore") as session:
        x = torch.ones(4 * 2**20)
        for _ in range(3):
            x.mul_(1.5)
        del x
        vramguard.empty_cache("cpu")
    report = session.report
    assert report is not None and report.timeline is not None
    written = report.plot(tmp_path / "real.png", width_px=800, height_px=400, dpi=80)
    assert png_size(written) == (800, 400)


def test_bad_arguments_are_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="width_px"):
        session_report().plot(tmp_path / "x.png", width_px=0)
    with pytest.raises(InvalidArgument, match="reports"):
        vramguard.plot_reports([], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_missing_matplotlib_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingDependency, match=r"pip install 'vramguard\[plot\]'"):
        session_report().plot(tmp_path / "x.png")


def _step_label_boxes(figure: Any) -> list[tuple[Any, Any]]:
    """(axes box, label box) of every release-step label, measured by the figure's own renderer."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    steps = {step.name for step in STEPS} | {"drop", "gc", "sync", "empty_cache", "malloc_trim", "census"}
    found = []
    for ax in figure.axes:
        box = ax.get_window_extent(renderer)
        found += [
            (box, t.get_window_extent(renderer))
            for t in ax.texts
            if t.get_text() in steps or t.get_text().endswith("…") or t.get_color() == "tab:green"
        ]
    return found


@pytest.mark.parametrize("width_px", [300, 1000])
def test_step_labels_never_overlap_nor_leave_the_axes(width_px: int) -> None:
    # Three steps within a few ms at the end of a 2 s timeline: drawn at their starts, their
    # names would sit on top of each other ("drgc"), the last one past the right edge.
    steps = (*STEPS, ReleaseStep("census", 0.001, 0, 0, ""))
    marks = [(0.0, "enter"), (1.995, "exit")] + [(1.995 + 0.001 * i, f"release:{s.name}") for i, s in enumerate(steps)]
    samples = tuple((i * 0.05, (100 + i) * MIB, (150 + i) * MIB, None) for i in range(41))
    tl = Timeline(0.05, samples, tuple(marks))
    report = session_report(timeline=tl, release_steps=steps)
    figure = render_figure([report, report], width_px, 900, 100)
    boxes = _step_label_boxes(figure)
    assert len(boxes) == 2 * len(steps)
    for axes_box, label in boxes:
        assert axes_box.x0 <= label.x0 and label.x1 <= axes_box.x1, "a label leaves its panel sideways"
        assert axes_box.y0 <= label.y0 and label.y1 <= axes_box.y1, "a label leaves its panel vertically"
    labels = [label for _, label in boxes]
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            assert not a.overlaps(b), "two step labels overlap"


def test_real_timeline_ends_at_the_reports_after() -> None:
    with vramguard.gpu_session("real", device="cpu", sample_every=0.002, leaks="ignore") as session:
        x = torch.ones(8 * 2**20)
        x.mul_(2.0)
        del x
    report = session.report
    assert report is not None and report.timeline is not None
    t_last, allocated, reserved, _ = report.timeline.samples[-1]
    assert (allocated, reserved) == (report.after.allocated_bytes, report.after.reserved_bytes)
    assert t_last >= max(t for t, _ in report.timeline.marks), "the last sample predates the last release step"
    times = [s[0] for s in report.timeline.samples]
    assert times == sorted(times)


def _peak(figure: Any) -> tuple[Any, Any]:
    """The peak's label and its point (the one-point line the legend names)."""
    from vramguard.report.plot import PEAK_GID

    ax = figure.axes[0]
    label = next(t for t in ax.texts if t.get_gid() == PEAK_GID)
    (point,) = [line for line in ax.lines if len(line.get_xydata()) == 1]
    return label, point


def test_titles_and_peak_label_carry_the_reports_figures() -> None:
    report = session_report(timeline=timeline(), device="cuda:0")
    figure = render_figure([report], 1000, 450, 100)
    ax = figure.axes[0]
    assert format_size(report.peak_increase_bytes, signed=True) in ax.get_title(loc="left")
    assert format_size(report.reclaimed_bytes) in ax.get_title(loc="left")
    label, point = _peak(figure)
    assert label.get_text() == f"allocated peak {format_size(report.peak_allocated_bytes)}"
    assert point.get_label() == "allocated peak"
    assert "allocated peak" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_host_peak_is_the_resident_peak_drawn_on_the_resident_line() -> None:
    """The demo's host session: malloc's line near 200 MiB, the resident line up to 288 MiB, and a
    peak_allocated_bytes of 236 MiB that is the entry's malloc figure plus the resident spike. The
    point used to be drawn at 236 MiB, far above every malloc sample, named "allocated peak"."""
    samples = tuple(
        (t / 100, (204 if t == 50 else 190) * MIB, (288 if t == 70 else 260) * MIB, None) for t in range(100)
    )
    marks = ((0.0, "enter"), (0.99, "exit"), (0.99, "release:drop"))
    report = session_report(
        timeline=Timeline(0.01, samples, marks), peak_allocated_bytes=236 * MIB, peak_reserved_bytes=288 * MIB
    )
    figure = render_figure([report], 1000, 450, 100)
    label, point = _peak(figure)
    assert label.get_text() == "resident peak 288.0 MiB"
    assert point.get_label() == "resident peak"
    ((x, y),) = point.get_xydata()
    assert (x, y) == (0.70, 288.0), "the point sits on the resident line's highest sample"
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert legend[:2] == ["malloc in use", "resident"] and "resident peak" in legend
    assert not any("allocated" in text for text in legend)


def _crosses(figure: Any, label: Any) -> list[str]:
    """The series whose line passes through ``label``'s box (the line sampled every pixel)."""
    import numpy as np
    from matplotlib.text import Text

    renderer = figure.canvas.get_renderer()
    box = Text.get_window_extent(label, renderer)  # the words, not the arrow to the peak
    crossed = []
    for line in figure.axes[0].lines:
        data = np.asarray(line.get_xydata(), dtype=float)
        if len(data) <= 2:
            continue
        xy = line.get_transform().transform(data)
        xs = np.arange(max(box.x0, xy[0, 0]), min(box.x1, xy[-1, 0]) + 1.0)
        ys = np.interp(xs, xy[:, 0], xy[:, 1])
        if ((ys >= box.y0) & (ys <= box.y1)).any():
            crossed.append(str(line.get_label()))
    return crossed


def test_the_peak_label_sits_clear_of_every_line_and_inside_its_panel() -> None:
    from matplotlib.text import Text

    # The demo's session panel: allocated flat near 180 MiB, reserved near 280 MiB, a peak of
    # 226 MiB between two samples just before the release, and the reserved line dropping to
    # 150 MiB right under where the label would be drawn (it used to cross the label).
    samples = tuple(
        (t / 100, (190 if t == 306 else 180) * MIB, (280 if t < 310 else 150) * MIB, None) for t in range(313)
    )
    marks = ((0.0, "enter"), (3.1, "exit"), (3.1, "release:drop"), (3.105, "release:gc"), (3.11, "release:malloc_trim"))
    report = session_report(timeline=Timeline(0.01, samples, marks), peak_allocated_bytes=226 * MIB, device="cuda:0")
    figure = render_figure([report], 1000, 450, 100)
    label, _ = _peak(figure)
    assert "(between samples)" in label.get_text()
    assert _crosses(figure, label) == []
    renderer = figure.canvas.get_renderer()
    panel, box = figure.axes[0].get_window_extent(renderer), Text.get_window_extent(label, renderer)
    assert panel.x0 <= box.x0 and box.x1 <= panel.x1 and panel.y0 <= box.y0 and box.y1 <= panel.y1
    steps = [t.get_window_extent(renderer) for t in figure.axes[0].texts if t.get_color() == "tab:green"]
    assert steps and not any(box.overlaps(step) for step in steps)


def test_a_session_that_kept_memory_is_titled_by_what_it_kept() -> None:
    kept = session_report(kept_bytes=40 * MIB, leaked_bytes=0, leaks=())
    title = render_figure([kept], 1000, 450, 100).axes[0].get_title(loc="left")
    assert title.endswith("reclaimed 96.0 MiB, kept 40.0 MiB"), title
    both = session_report(kept_bytes=40 * MIB)
    title = render_figure([both], 1000, 450, 100).axes[0].get_title(loc="left")
    assert title.endswith("kept 40.0 MiB, leaked 64.0 MiB"), title
    assert render_figure([session_report()], 1000, 450, 100).axes[0].get_title(loc="left").endswith("leaked 64.0 MiB")
