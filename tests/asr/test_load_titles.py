"""Loading a model is not a leak: the pipeline's load stages keep what they loaded, count only
tensors as leaks, and their plot titles say what they hold ("kept ..."), never "leaked ..."."""

from __future__ import annotations

from typing import Any

from vramguard import format_size
from vramguard.report.plot import render_figure


def test_load_stages_keep_what_they_loaded_and_are_titled_by_it(resident_pipe: Any) -> None:
    loads = resident_pipe.load_reports
    assert [r.name for r in loads] == ["load asr", "load diarizer"]
    figure = render_figure(list(loads), 1000, 900, 100)
    for report, ax in zip(loads, figure.axes, strict=True):
        assert report.kept_bytes > 0, report.name
        # Without the census the leak figure was every byte the loader took beyond the tensors
        # (14-46 MiB of imports and tokenizers on the host): "leaked 44 MiB" for a load.
        assert report.leaked_bytes == 0, (report.name, report.leaks)
        title = ax.get_title(loc="left")
        assert f"kept {format_size(report.kept_bytes)}" in title and "leaked" not in title, title
