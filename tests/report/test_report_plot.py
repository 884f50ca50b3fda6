"""Plots: files written, not empty, at the size asked for; timelines, bars and comparisons."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest
import torch
from report_factories import release_report, session_report, timeline

import vramguard
from vramguard import InvalidArgument, MissingDependency
from vramguard.report import plot_report


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
