"""The ledger's picture: one bar per device, stacked by line, the largest holders labelled
(inside their segment, or above it with a leader when it is too narrow); bad input refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import vramguard
from vramguard.ledger._records import FORMAT, MemoryLedger
from vramguard.report.ledger_plot import ledger_figure, plot_ledgers

MIB = 2**20


def _line(category: str, mib: int, holder: str) -> dict[str, Any]:
    return {"category": category, "nbytes": mib * MIB, "holder": holder, "returned_by": "-", "roles": {}}


def recorded(device: str, lines: list[tuple[str, int, str]], total_mib: int) -> MemoryLedger:
    """A ledger as a process wrote it (JSON), the residual making the lines add up."""
    items = [_line(*line) for line in lines]
    items.append(_line("residual", total_mib - sum(m for _, m, _ in lines), "not explained"))
    data = {"format": FORMAT, "device": device, "total_bytes": total_mib * MIB, "total_source": "NVML"}
    return MemoryLedger.from_dict({**data, "taken_at_s": 0.0, "duration_s": 0.0, "lines": items})


GPU = recorded(
    "cuda:0",
    [
        ("tensors", 300, "global app.PIPE.model"),
        ("tensors", 6, "local 'batch' in serve() at app.py:12"),
        ("cached free", 120, "the caching allocator"),
        ("context", 380, "the CUDA context"),
        ("outside torch", 20, "NCCL"),
    ],
    830,
)
HOST = recorded(
    "cpu", [("tensors", 2, "global __main__.CACHE"), ("code", 96, "libraries"), ("malloc in use", 130, "C")], 220
)


def texts(figure: Any) -> list[str]:
    return [text.get_text() for ax in figure.axes for text in ax.texts]


def test_each_device_is_a_bar_and_the_largest_holders_are_named() -> None:
    figure = ledger_figure([GPU, HOST], 1200, 530, 100)
    found = texts(figure)
    assert "global app.PIPE.model\n300.0 MiB" in found, "wide enough: inside its segment"
    # A local is named without its frame's place, which the text rendering keeps.
    assert "local 'batch', 6.00 MiB" in found, "too narrow: above it, on one line"
    assert "context\n380.0 MiB" in found, "lines other than tensors are named by category"
    assert any(t.startswith("global __main__.CACHE") for t in found)
    assert [t.get_text() for t in figure.axes[0].get_yticklabels()] == ["cpu\n220.0 MiB", "cuda:0\n830.0 MiB"]
    bars = figure.axes[0].patches
    assert HOST.residual_bytes < 0, "a negative residual is a mark, not a segment"
    assert len(bars) == len(GPU.lines) + len(HOST.lines) - 1, "one segment per line with bytes"


def test_only_the_largest_lines_are_labelled_and_a_negative_residual_is_marked() -> None:
    overlapping = recorded("cpu", [("tensors", 10, "global m.A"), ("code", 200, "x"), ("malloc in use", 100, "y")], 300)
    assert overlapping.residual_bytes == -10 * MIB
    found = texts(ledger_figure([overlapping], 1200, 360, 100, labelled=1))
    assert found[0] == "code\n200.0 MiB" and not any("global m.A" in t for t in found)
    assert any("residual -10.0 MiB" in t for t in found), found


def test_plot_writes_a_png_of_a_real_ledger(tmp_path: Path) -> None:
    written = plot_ledgers(vramguard.explain("cpu"), tmp_path / "ledger.png")
    assert written.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_input_is_refused(tmp_path: Path) -> None:
    for kwargs in ({"labelled": -1}, {"dpi": 5}, {"width_px": 10}):
        with pytest.raises(vramguard.InvalidArgument, match=next(iter(kwargs))):
            plot_ledgers(HOST, tmp_path / "x.png", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(vramguard.InvalidArgument, match="ledgers"):
        plot_ledgers([], tmp_path / "x.png")
