"""``vramguard.isolated`` and ``gpu_session(isolate=True)``: the call runs in a spawned child,
its value, report and exception come back, and a child that dies is named, never waited for.

Each test starts a real child process (an interpreter importing torch: seconds each)."""

from __future__ import annotations

import ctypes
import os
import signal
import threading

import pytest
import torch

import vramguard

pytestmark = pytest.mark.slow


def make_tensor(n: int) -> torch.Tensor:
    """A result to send back: built in the child."""
    return torch.arange(n, dtype=torch.float32)


def child_pid() -> int:
    return os.getpid()


class Boom(ValueError):
    pass


def fail(message: str) -> None:
    raise Boom(message)


def kill_self(signum: int) -> None:
    os.kill(os.getpid(), signum)


def segfault() -> None:
    ctypes.string_at(0)


def exit_quietly() -> None:
    os._exit(3)


def returns_a_lock() -> object:
    return threading.Lock()


@vramguard.gpu_session(device="cpu", isolate=True, leaks="ignore")
def decorated(n: int) -> float:
    return float(torch.ones(n).sum())


@vramguard.gpu_session(device="cpu", isolate=True, hard=True, max_peak="64 MiB", leaks="ignore")
def decorated_with_a_budget(n: int) -> float:
    return float(torch.ones(n).sum())


def test_an_isolated_call_with_a_hard_budget_runs_it_in_the_child() -> None:
    # The budget goes with the options: the child's session is the budgeted one.
    assert decorated_with_a_budget(1000) == 1000.0
    report = decorated_with_a_budget.vram_report  # type: ignore[attr-defined]
    assert report is not None and report.device == "cpu"


def test_value_and_report_come_back_from_another_process() -> None:
    outcome = vramguard.isolated(make_tensor, 1000, device="cpu")
    assert torch.equal(outcome.value, torch.arange(1000, dtype=torch.float32))
    assert outcome.pid != os.getpid() and outcome.pid > 0
    assert vramguard.isolated(child_pid, device="cpu").value != os.getpid()
    assert outcome.report is not None and outcome.report.device == "cpu"
    assert outcome.result_nbytes >= 4000
    assert 0 < outcome.start_s < outcome.total_s and outcome.run_s >= 0 and outcome.transfer_s >= 0
    assert outcome.exit_s >= 0


def test_the_childs_exception_is_raised_here_with_its_traceback() -> None:
    with pytest.raises(Boom, match="bad input") as caught:
        vramguard.isolated(fail, "bad input", device="cpu")
    notes = "\n".join(getattr(caught.value, "__notes__", []))
    assert "raised in the isolated child process" in notes
    # The child's own frames, with their source lines: the call in the child and the raise.
    assert "in fail\n    raise Boom(message)" in notes and "_child" in notes


@pytest.mark.parametrize(
    ("target", "args", "name"), [(kill_self, (signal.SIGKILL,), "SIGKILL"), (segfault, (), "SIGSEGV")]
)
def test_a_killed_or_crashed_child_is_named_not_waited_for(target: object, args: tuple[object, ...], name: str) -> None:
    with pytest.raises(vramguard.ChildCrashed, match=name) as caught:
        vramguard.isolated(target, *args, device="cpu")  # type: ignore[arg-type]
    assert caught.value.signal_name == name
    assert caught.value.exitcode == -getattr(signal, name)


def test_a_child_exiting_without_answering_gives_its_status() -> None:
    with pytest.raises(vramguard.ChildCrashed, match="status 3") as caught:
        vramguard.isolated(exit_quietly, device="cpu")
    assert caught.value.signal_name is None and caught.value.exitcode == 3


def test_what_cannot_cross_the_process_boundary_says_so() -> None:
    # Checked before any process starts: a nested function and an unpicklable argument.
    def nested() -> None:
        pass

    with pytest.raises(vramguard.NotPicklable, match="function"):
        vramguard.isolated(nested, device="cpu")
    with pytest.raises(vramguard.NotPicklable, match="arguments"):
        vramguard.isolated(make_tensor, threading.Lock(), device="cpu")
    with pytest.raises(vramguard.NotPicklable, match="result") as caught:
        vramguard.isolated(returns_a_lock, device="cpu")
    assert caught.value.what == "result"


def test_isolate_true_decorates_a_function_that_runs_in_a_child() -> None:
    assert decorated(10) == 10.0
    report = decorated.vram_report  # type: ignore[attr-defined]
    assert report is not None and report.name.endswith("decorated")


def test_isolate_checks_its_arguments() -> None:
    with pytest.raises(vramguard.InvalidArgument, match="isolate"):
        vramguard.gpu_session(device="cpu", isolate="yes")
    with pytest.raises(vramguard.InvalidArgument, match="decorated function"), vramguard.gpu_session(
        device="cpu", isolate=True
    ):
        pass
    with pytest.raises(vramguard.InvalidArgument, match="timeout_s"):
        vramguard.isolated(make_tensor, 1, device="cpu", timeout_s=0)
