"""A report's own text speaks the device's words (issue 30): on the host "malloc in use",
"resident" and "resident beyond malloc", never "still cached"; a release during which memory grew
is never a negative reclaim."""

from __future__ import annotations

from dataclasses import replace

import torch

import vramguard


def test_a_host_reports_text_uses_host_words() -> None:
    with vramguard.gpu_session(device="cpu", leaks="ignore") as s:
        x = torch.ones(1000)
    del x
    assert s.report is not None
    text = str(s.report)
    assert "malloc in use" in text and "resident beyond malloc" in text
    assert "still cached" not in text and " allocated " not in text


def test_memory_that_grew_during_the_release_is_not_a_negative_reclaim() -> None:
    with vramguard.gpu_session(device="cpu", leaks="ignore") as s:
        pass
    report = s.report
    assert report is not None and report.at_exit.reserved_bytes is not None
    grown = replace(report, after=replace(report.after, reserved_bytes=report.at_exit.reserved_bytes + 104 * 1024))
    assert grown.reclaimed_bytes == -104 * 1024
    text = str(grown)
    assert "reclaimed — (grew 104.0 KiB during the release)" in text
    assert "reclaimed -" not in text
