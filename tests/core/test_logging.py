"""The ``vramguard`` logger (debug: each release step; info: a session's summary; warning: leaks),
silent unless the application configures logging; and ``dir(vramguard)``."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import pytest
import torch

import vramguard

HELD: list[torch.Tensor] = []


def test_each_release_step_at_debug_and_the_summary_at_info(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="vramguard"), vramguard.gpu_session("quiet", device="cpu"):
        torch.ones(2**20).sum()
    ours = [r for r in caplog.records if r.name == "vramguard"]
    debug = [r.getMessage() for r in ours if r.levelno == logging.DEBUG]
    assert [m.split()[1] for m in debug] == ["drop", "gc", "malloc_trim"], debug
    assert all(m.startswith("release ") and " on cpu: " in m for m in debug)
    info = [r.getMessage() for r in ours if r.levelno == logging.INFO]
    assert len(info) == 1
    assert info[0].startswith("session 'quiet' on cpu: peak ")
    assert "leaked 0 B" in info[0]
    assert not [r for r in ours if r.levelno >= logging.WARNING]


def test_a_leak_is_a_warning_naming_its_holder(caplog: pytest.LogCaptureFixture) -> None:
    try:
        with (
            caplog.at_level(logging.INFO, logger="vramguard"),
            pytest.warns(vramguard.LeakWarning),
            vramguard.gpu_session("leaky", device="cpu"),
        ):
            HELD.append(torch.ones(2**18))
    finally:
        HELD.clear()
    warnings = [r.getMessage() for r in caplog.records if r.name == "vramguard" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith("session 'leaky' leaked 1.00 MiB: ")
    assert f"global {__name__}.HELD[0]" in warnings[0]


def test_leaks_ignore_logs_no_warning(caplog: pytest.LogCaptureFixture) -> None:
    try:
        with (
            caplog.at_level(logging.INFO, logger="vramguard"),
            vramguard.gpu_session("x", device="cpu", leaks="ignore"),
        ):
            HELD.append(torch.ones(2**18))
    finally:
        HELD.clear()
    assert [r.levelno for r in caplog.records if r.name == "vramguard"] == [logging.INFO]


def test_silent_unless_configured() -> None:
    """No handler configured: a leak's log warning prints nothing (Python's last-resort handler
    would print warnings of a logger without handlers); LeakWarning is filtered off here."""
    code = textwrap.dedent(
        """
        import logging, warnings, torch, vramguard
        warnings.simplefilter("ignore")
        held = []
        with vramguard.gpu_session("leaky", device="cpu"):
            held.append(torch.ones(2**18))
        assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("vramguard").handlers)
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    assert result.stderr == ""


def test_a_failing_report_listener_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    from vramguard.core import _hooks

    def broken(report: vramguard.SessionReport) -> None:
        raise RuntimeError("listener bug")

    _hooks.report_listeners.append(broken)
    try:
        with caplog.at_level(logging.ERROR, logger="vramguard"), vramguard.gpu_session("s", device="cpu") as s:
            pass
    finally:
        _hooks.report_listeners.remove(broken)
    assert s.report is not None
    assert [r.getMessage() for r in caplog.records] == ["a vramguard report listener failed"]


def test_dir_shows_only_the_public_names() -> None:
    assert dir(vramguard) == sorted(vramguard.__all__)
    assert "importlib" not in dir(vramguard) and "typing" not in dir(vramguard)
