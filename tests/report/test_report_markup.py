"""Every string a user or their program chose (session and step names, devices, holders, tensor
descriptions, notes, owner kinds) is printed as written: rich markup in it is text, never markup."""

from __future__ import annotations

import dataclasses
from io import StringIO

from hypothesis import given, settings
from hypothesis import strategies as st
from report_factories import MIB, STEPS, release_report, session_report
from rich.console import Console

from vramguard import Leak, MultiDeviceReport, ReleaseStep
from vramguard.distributed._cluster import ClusterReport
from vramguard.report import render

MARKUP = ("[/]", "[bold]", "[red]x[/red]", "[/bold]", "[link=x]", "\\[", "[", "]", ":smile:")
"""Text rich would read as markup (a closing tag with nothing open raises MarkupError) or as an emoji code."""

texts = st.lists(st.sampled_from(MARKUP) | st.text(alphabet="ab [/]:", max_size=6), min_size=1, max_size=4).map("".join)


def printed(report: object) -> str:
    console = Console(width=400, file=StringIO(), color_system=None, emoji=False)
    render(report, console=console, verbose=True)  # type: ignore[arg-type]
    assert isinstance(console.file, StringIO)
    return console.file.getvalue()


def _marked(text: str) -> object:
    steps = (*STEPS, ReleaseStep(f"step {text}", 0.001, MIB, 0, f"detail {text}"))
    leak = Leak(MIB, f"tensor {text}", f"made {text}", (f"held {text}",), f"group {text}", f"kind {text}")
    return session_report(
        name=f"name {text}",
        release_steps=steps,
        leaks=(leak,),
        leaked_bytes=MIB,
        notes=(f"note {text}",),
        evicted=(f"evicted {text}",),
        cycles=(f"cycle {text}",),
        raised=f"raised {text}",
    )


@settings(max_examples=60, deadline=None)
@given(texts)
def test_markup_in_any_user_string_is_printed_as_written(text: str) -> None:
    report = _marked(text)
    out = printed(report)
    for field in ("step", "detail", "tensor", "made", "held", "kind", "note", "evicted", "cycle", "raised"):
        assert f"{field} {text}" in out, field
    assert repr(f"name {text}") in out
    cluster = ClusterReport(f"run {text}", (0, 1), (report, dataclasses.replace(report, device=f"cpu {text}")))
    assert f"held {text}" in printed(cluster)
    multi = MultiDeviceReport(f"multi {text}", (report,), 0.1)
    assert f"step {text}" in printed(multi)


def test_a_release_step_named_with_a_closing_tag_renders() -> None:
    """The issue's case: a step named "[/]" raised rich's MarkupError."""
    report = dataclasses.replace(release_report(), steps=(ReleaseStep("[/]", 0.001, 0, 0, ""),))
    assert "[/]" in printed(report)
    assert "[bold]" in printed(session_report(name="[bold]", release_steps=(ReleaseStep("[/]", 0.0, 0, 0, ""),)))
