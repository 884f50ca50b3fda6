"""The rich renderers, compared line by line at a fixed terminal width."""

from __future__ import annotations

import sys
from io import StringIO

import pytest
from report_factories import release_report, session_report
from rich.console import Console

from vramguard import MissingDependency
from vramguard.report import render, render_devices

MIB = 2**20


def rendered(report: object, width: int = 100) -> list[str]:
    console = Console(width=width, file=StringIO(), color_system=None)
    if isinstance(report, list):
        render_devices(report, None, console=console)
    else:
        render(report, console=console)  # type: ignore[arg-type]
    assert isinstance(console.file, StringIO)
    return [line.rstrip() for line in console.file.getvalue().splitlines()]


def test_session_report_tables() -> None:
    assert rendered(session_report()) == [
        "vramguard session 'encode' on cpu: 250.0 ms",
        "                before        peak     at exit       after",
        "───────────────────────────────────────────────────────────",
        " allocated   100.0 MiB   300.0 MiB   228.0 MiB   164.0 MiB",
        " reserved    150.0 MiB   350.0 MiB   310.0 MiB   214.0 MiB",
        "",
        " peak above start   reclaimed   still cached   kept     leaked",
        "───────────────────────────────────────────────────────────────",
        "        200.0 MiB    96.0 MiB       50.0 MiB    0 B   64.0 MiB",
        "",
        "release steps",
        " step              time       freed    returned   detail",
        "───────────────────────────────────────────────────────────────────────────────",
        " drop           0.10 ms   +64.0 MiB         0 B   1 owned reference(s) dropped",
        " gc            50.00 ms         0 B         0 B   12 unreachable objects",
        " malloc_trim    2.00 ms         0 B   +96.0 MiB",
        "",
        "leaks: 64.0 MiB",
        "     size   tensor                        created at     held by",
        "──────────────────────────────────────────────────────────────────────────────",
        " 64.0 MiB   float32 tensor [4096, 4096]   encode.py:12   cache['last'] (dict)",
        "",
        "note: a note with [brackets]",
    ]


def test_release_report_tables() -> None:
    lines = rendered(release_report())
    assert lines[:7] == [
        "vramguard release on cpu: 50.0 ms",
        "                allocated    reserved",
        "──────────────────────────────────────",
        " before         228.0 MiB   310.0 MiB",
        " after          164.0 MiB   214.0 MiB",
        "",
        " freed           64.0 MiB    96.0 MiB",
    ]
    assert lines[-2:] == [
        "dropped: Pipeline.model (Linear)",
        "still alive elsewhere: Pipeline.model (Linear): still referenced (1 other reference(s))",
    ]


def test_unreadable_figures_print_na_and_flags_show() -> None:
    report = session_report(
        peak_reserved_bytes=None,
        leaks=(),
        leaked_bytes=None,
        release_steps=(),
        released=False,
        raised="ValueError",
        notes=(),
        concurrent=True,
    )
    lines = rendered(report)
    assert lines[0].startswith("vramguard session 'encode' on cpu: 250.0 ms (concurrent sessions on this device")
    assert " reserved    150.0 MiB         n/a   310.0 MiB   214.0 MiB" in lines
    assert lines[-2:] == ["release was off (release=False)", "the block raised ValueError"]
    assert not any(line.startswith("leaks") for line in lines)


def test_narrow_terminal_still_renders_every_figure() -> None:
    text = "\n".join(rendered(session_report(), width=60))
    for figure in ("100.0 MiB", "300.0 MiB", "64.0 MiB", "96.0 MiB"):
        assert figure in text


def test_devices_table() -> None:
    devices = [
        {
            "index": 0,
            "name": "NVIDIA H100 80GB HBM3",
            "total_bytes": 80 * 1024 * MIB,
            "used_bytes": 20 * 1024 * MIB,
            "processes": [{"pid": 4242, "used_bytes": 19 * 1024 * MIB}, {"pid": 7, "used_bytes": None}],
        }
    ]
    assert rendered(devices) == [
        "GPUs (NVML)",
        " index   name                       total       used       free   processes",
        "─" * 85,
        "     0   NVIDIA H100 80GB HBM3   80.0 GiB   20.0 GiB   60.0 GiB   pid 4242: 19.0 GiB",
        "                                                                  pid 7: n/a",
    ]


def test_no_devices_is_one_clear_line() -> None:
    console = Console(width=40, file=StringIO(), color_system=None)
    render_devices([], "NVML not available: NVMLError_LibraryNotFound: NVML Shared Library Not Found", console=console)
    assert isinstance(console.file, StringIO)
    assert console.file.getvalue().splitlines() == [
        "no GPU visible: NVML not available: NVMLError_LibraryNotFound: NVML Shared Library Not Found"
    ]


def test_render_to_a_file_with_a_fixed_width() -> None:
    out = StringIO()
    render(session_report(), file=out, width=100)
    assert out.getvalue().splitlines()[0] == "vramguard session 'encode' on cpu: 250.0 ms"


def test_missing_rich_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rich", None)
    with pytest.raises(MissingDependency, match=r"pip install 'vramguard\[cli\]'"):
        render(session_report(), file=StringIO())


def test_cycles_are_listed_after_the_notes() -> None:
    report = session_report(cycles=("Node -> dict -> Node [2 objects]", "a cycle with [brackets]"))
    assert rendered(report)[-3:] == [
        "note: a note with [brackets]",
        "cycle: Node -> dict -> Node [2 objects]",
        "cycle: a cycle with [brackets]",
    ]
