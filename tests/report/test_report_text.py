"""The rich renderers, compared line by line at a fixed terminal width."""

from __future__ import annotations

import sys
from dataclasses import replace
from io import StringIO
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from report_factories import CACHE_LEAK, MODEL, model_leaks, release_report, session_report
from rich.console import Console

from vramguard import Leak, Leaks, MissingDependency, SessionReport
from vramguard.cli import build_parser, main
from vramguard.core._records import NO_HOLDER
from vramguard.report import render, render_devices, save_report

MIB = 2**20


def rendered(report: object, width: int = 100, *, verbose: bool = False) -> list[str]:
    console = Console(width=width, file=StringIO(), color_system=None)
    if isinstance(report, list):
        render_devices(report, None, console=console)
    else:
        render(report, console=console, verbose=verbose)  # type: ignore[arg-type]
    assert isinstance(console.file, StringIO)
    return [line.rstrip() for line in console.file.getvalue().splitlines()]


def test_session_report_tables() -> None:
    assert rendered(session_report()) == [
        "vramguard session 'encode' on cpu: 250.0 ms",
        "                    before        peak     at exit       after",
        "───────────────────────────────────────────────────────────────",
        " malloc in use   100.0 MiB   300.0 MiB   228.0 MiB   164.0 MiB",
        " resident        150.0 MiB   350.0 MiB   310.0 MiB   214.0 MiB",
        "",
        " peak above start   reclaimed   resident beyond malloc   kept     leaked",
        "─────────────────────────────────────────────────────────────────────────",
        "        200.0 MiB    96.0 MiB                 50.0 MiB    0 B   64.0 MiB",
        "",
        "host: malloc in use = malloc's in-use bytes; resident = anonymous resident memory; resident beyond",
        "malloc = freed heap pages still resident plus memory malloc never sees (Python's arenas), not a",
        "cache",
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
    assert lines[:8] == [
        "vramguard release on cpu: 50.0 ms",
        "                          malloc in use    resident",
        "────────────────────────────────────────────────────",
        " before                       228.0 MiB   310.0 MiB",
        " after                        164.0 MiB   214.0 MiB",
        "",
        " freed                         64.0 MiB    96.0 MiB",
        " resident beyond malloc                    50.0 MiB",
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
    assert " resident        150.0 MiB         n/a   310.0 MiB   214.0 MiB" in lines
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


# -- leaks grouped by holder -----------------------------------------------------------------
def grouped_report() -> SessionReport:
    """Three parameters and a head of PIPE.model (the head also held by a local), and a cache."""
    head = Leak(MIB, "float32[512, 512] cpu", None, (f"{MODEL}.head.weight", "local w in main"), MODEL)
    return session_report(leaks=(*model_leaks(3), head, CACHE_LEAK), leaked_bytes=3 * MIB + 3 * MIB // 4)


def test_leaks_table_has_one_row_per_holding_module() -> None:
    lines = rendered(grouped_report())
    assert lines[lines.index("leaks: 3.75 MiB") :] == [
        "leaks: 3.75 MiB",
        "     size   tensor                  created at   held by",
        "───────────────────────────────────────────────────────────────────────────────",
        " 2.75 MiB   4 tensors                            global __main__.PIPE.model",
        "                                                 also local w in main",
        " 1.00 MiB   float32[512, 512] cpu   cache.py:7   global __main__.CACHE['k'][0]",
        "",
        "note: a note with [brackets]",
    ]


def test_verbose_leaks_table_lists_the_tensors_under_their_group() -> None:
    lines = rendered(grouped_report(), width=140, verbose=True)
    assert lines[lines.index("leaks: 3.75 MiB") + 1 :] == [
        "      size   tensor                          created at   held by",
        "─" * 106,
        "  2.75 MiB   4 tensors                                    global __main__.PIPE.model",
        "                                                          also local w in main",
        "  1.50 MiB     Parameter float32[768, 512]                global __main__.PIPE.model.embed_tokens.weight",
        "  1.00 MiB     float32[512, 512] cpu                      global __main__.PIPE.model.head.weight",
        "                                                          local w in main",
        " 128.0 KiB     Parameter float32[256, 128]                global __main__.PIPE.model.layers[0].fc1.weight",
        " 128.0 KiB     Parameter float32[256, 128]                global __main__.PIPE.model.layers[1].fc1.weight",
        "  1.00 MiB   float32[512, 512] cpu           cache.py:7   global __main__.CACHE['k'][0]",
        "",
        "note: a note with [brackets]",
    ]


def test_str_of_a_report_has_one_line_per_group() -> None:
    lines = str(grouped_report()).splitlines()
    assert lines[-4:] == [
        "  leak: 2.75 MiB in 4 tensors held by global __main__.PIPE.model",
        "      also held by local w in main",
        "  leak: 1.00 MiB float32[512, 512] cpu created at cache.py:7 — held by global __main__.CACHE['k'][0]",
        "  note: a note with [brackets]",
    ]


def test_str_of_the_leaks_lists_each_tensor_under_its_group() -> None:
    assert str(grouped_report().leaks).splitlines() == [
        "leak: 2.75 MiB in 4 tensors held by global __main__.PIPE.model",
        "    also held by local w in main",
        "    1.50 MiB Parameter float32[768, 512] — held by global __main__.PIPE.model.embed_tokens.weight",
        "    1.00 MiB float32[512, 512] cpu — held by global __main__.PIPE.model.head.weight; local w in main",
        "    128.0 KiB Parameter float32[256, 128] — held by global __main__.PIPE.model.layers[0].fc1.weight",
        "    128.0 KiB Parameter float32[256, 128] — held by global __main__.PIPE.model.layers[1].fc1.weight",
        "leak: 1.00 MiB float32[512, 512] cpu created at cache.py:7 — held by global __main__.CACHE['k'][0]",
    ]


def test_117_leaked_parameters_of_one_model_are_one_line() -> None:
    report = session_report(leaks=model_leaks(117), leaked_bytes=16 * MIB)
    lines = str(report).splitlines()
    assert [line for line in lines if "leak:" in line] == [
        "  leak: 16.0 MiB in 117 tensors held by global __main__.PIPE.model"
    ]
    table = rendered(report, width=140)
    # No leak has a creation site: no empty column, a line saying how to record them.
    assert table[table.index("leaks: 16.0 MiB") :] == [
        "leaks: 16.0 MiB",
        "     size   tensor        held by",
        "─" * 53,
        " 16.0 MiB   117 tensors   global __main__.PIPE.model",
        "",
        "created at: not recorded (VRAMGUARD_CENSUS_SITES=1 records where each tensor was made)",
        "note: a note with [brackets]",
    ]
    assert len(rendered(report, width=140, verbose=True)) == len(table) + 117
    assert len(str(report.leaks).splitlines()) == 1 + 117


def test_leaks_without_a_group_go_by_their_first_holder_then_holder_not_found() -> None:
    leaks = (
        Leak(300, "float32[75] cpu", None, ("local x in f", "global m.X")),
        Leak(100, "float32[25] cpu", None, ("local x in f",)),
        Leak(10, "float32[2] cpu", None, ()),
        Leak(20, "float32[5] cpu", None, ()),
    )
    report = session_report(leaks=leaks, notes=())
    groups = report.leak_groups
    assert [(g.holder, g.nbytes, g.count) for g in groups] == [("local x in f", 400, 2), (NO_HOLDER, 30, 2)]
    assert groups[1].leaks == (leaks[3], leaks[2])  # largest first
    assert str(report).splitlines()[-3:] == [
        "  leak: 400 B in 2 tensors held by local x in f",
        "      also held by global m.X",
        "  leak: 30 B in 2 tensors — holder not found",
    ]


def test_groups_tie_by_holder_and_other_holders_skip_paths_inside_the_group() -> None:
    leaks = (
        Leak(8, "a", None, ("global m.B.x",), "global m.B"),
        Leak(
            8,
            "b",
            None,
            ("global m.A['k']", "saved for backward by MulBackward0 of global m.A", "global m.AB"),
            "global m.A",
        ),
    )
    groups = Leaks(leaks).groups
    assert [g.holder for g in groups] == ["global m.A", "global m.B"]
    assert groups[0].other_holders == ("global m.AB",)
    assert groups[1].other_holders == ()


def kv_cache_report() -> SessionReport:
    """A KV cache of 24 layers (48 tensors of 32 MiB) kept in a global, also held by a local."""
    pkv = "global __main__.PKV"
    leaks = tuple(
        Leak(32 * MIB, "float16[1, 8, 2048, 1024] cpu", None, (f"{pkv}.layers[{i // 2}].{kv}",), pkv, KV)
        for i, kv in zip(range(48), ("keys", "values") * 24, strict=True)
    )
    first = replace(leaks[0], holders=(*leaks[0].holders, "local cache in main"))
    return session_report(leaks=(first, *leaks[1:]), leaked_bytes=48 * 32 * MIB, notes=())


KV = "KV cache, 24 layers"


def test_a_named_owners_line_says_what_it_is_then_its_size_then_its_holder() -> None:
    report = kv_cache_report()
    (group,) = report.leak_groups
    assert (group.holder, group.owner_kind, group.count) == ("global __main__.PKV", KV, 48)
    assert group.other_holders == ("local cache in main",)  # the layers' own paths are inside the group
    assert str(report).splitlines()[-2:] == [
        "  leak: KV cache, 24 layers, 1.50 GiB, held by global __main__.PKV",
        "      also held by local cache in main",
    ]
    assert str(report.leaks).splitlines()[2] == (
        "    32.0 MiB float16[1, 8, 2048, 1024] cpu — held by global __main__.PKV.layers[0].keys; local cache in main"
    )
    table = rendered(report)
    assert table[table.index("leaks: 1.50 GiB") + 3 :][:2] == [
        " 1.50 GiB   KV cache, 24 layers (48 tensors)   global __main__.PKV",
        "                                               also local cache in main",
    ]


def test_a_lone_tensor_with_an_owner_kind_says_it_too() -> None:
    leak = Leak(256, "float32[64] cpu", None, ("global m.ONE.inputs",), "global m.ONE", "dataclass Batch")
    assert Leaks((leak,)).lines() == ["leak: dataclass Batch, 256 B, held by global m.ONE"]
    assert Leaks((replace(leak, owner_kind=None),)).lines() == [f"leak: {replace(leak, owner_kind=None)}"]


def test_leaks_is_a_tuple_and_reports_take_plain_tuples() -> None:
    leaks = model_leaks(2)
    report = session_report(leaks=leaks)
    assert isinstance(report.leaks, Leaks)
    assert report.leaks == leaks and Leaks(leaks) == leaks and report == session_report(leaks=Leaks(leaks))
    assert report.leaks[0] is leaks[0] and len(report.leaks) == 2
    assert session_report(leaks=()).leaks == () and str(session_report(leaks=()).leaks) == ""
    assert repr(Leaks(leaks)) == repr(leaks)


leak_strategy = st.builds(
    Leak,
    nbytes=st.integers(min_value=0, max_value=2**40),
    description=st.sampled_from(["float32[2] cpu", "Parameter bfloat16[8, 8] cuda:0"]),
    created_at=st.none() | st.just("x.py:1"),
    holders=st.lists(
        st.sampled_from(["global m.A.w", "global m.A.b", "local x in f", "global m.C[0]"]), max_size=3
    ).map(tuple),
    group=st.none() | st.sampled_from(["global m.A", "global m.C", ""]),
)


@given(st.lists(leak_strategy, max_size=40))
def test_grouping_keeps_every_leak_and_every_byte(leaks: list[Leak]) -> None:
    report = session_report(leaks=tuple(leaks), leaked_bytes=sum(leak.nbytes for leak in leaks))
    groups = report.leak_groups
    assert sum(g.nbytes for g in groups) == report.leaked_bytes
    assert sum(g.count for g in groups) == len(leaks)
    assert sorted(map(repr, (leak for g in groups for leak in g.leaks))) == sorted(map(repr, leaks))
    for group in groups:
        assert group.count == len(group.leaks) and group.nbytes == sum(leak.nbytes for leak in group.leaks)
        assert {leak.group_holder for leak in group.leaks} == {group.holder}
    assert len({g.holder for g in groups}) == len(groups)
    assert [(-g.nbytes, g.holder) for g in groups] == sorted((-g.nbytes, g.holder) for g in groups)
    assert len([line for line in str(report).splitlines() if line.startswith("  leak: ")]) == len(groups)
    saved = report.to_dict()["leak_groups"]
    assert sum(g["nbytes"] for g in saved) == report.leaked_bytes
    assert sum(len(g["tensors"]) for g in saved) == sum(g["count"] for g in saved) == len(leaks)


# -- the command line's -v -------------------------------------------------------------------
def test_vramguard_report_verbose_lists_the_tensors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "160")  # rich's width: each holder path on one line
    saved = save_report(session_report(leaks=model_leaks(117), leaked_bytes=16 * MIB), tmp_path / "r.json")
    assert main(["report", str(saved)]) == 0
    plain = [line.rstrip() for line in capsys.readouterr().out.splitlines()]
    assert plain[plain.index("leaks: 16.0 MiB") + 3 :] == [
        " 16.0 MiB   117 tensors   global __main__.PIPE.model",
        "",
        "created at: not recorded (VRAMGUARD_CENSUS_SITES=1 records where each tensor was made)",
        "note: a note with [brackets]",
    ]
    assert main(["report", "-v", str(saved)]) == 0
    verbose = [line.rstrip() for line in capsys.readouterr().out.splitlines()]
    rows = verbose[verbose.index("leaks: 16.0 MiB") + 3 : -3]
    assert len(rows) == 1 + 117
    assert rows[:3] == [
        "  16.0 MiB   117 tensors                     global __main__.PIPE.model",
        "  1.50 MiB     Parameter float32[768, 512]   global __main__.PIPE.model.embed_tokens.weight",
        " 128.0 KiB     Parameter float32[256, 128]   global __main__.PIPE.model.layers[0].fc1.weight",
    ]
    assert main(["report", "--verbose", str(saved)]) == 0
    assert [line.rstrip() for line in capsys.readouterr().out.splitlines()] == verbose


def test_vramguard_run_takes_verbose_before_the_script() -> None:
    parser = build_parser()
    assert parser.parse_args(["run", "-v", "job.py", "-v"]).verbose is True
    assert parser.parse_args(["run", "job.py", "-v"]).args == ["-v"]
    assert parser.parse_args(["run", "job.py"]).verbose is False
