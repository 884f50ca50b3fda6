"""Faults found in the session's own code (issue 15), each tried as an attacker would: every test
here failed before its fix. The rest of the list: test_faults_threads.py, test_faults_keep.py."""

from __future__ import annotations

import gc
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

import vramguard
from vramguard import InvalidArgument, LeakWarning, SessionError, gpu_session
from vramguard.census import _cycles, _epoch
from vramguard.core import _hooks, _run
from vramguard.core._sampler import SAMPLER

MIB = 2**20


def _registry_is_clean() -> bool:
    return all(not runs for runs in _run._active.values()) and not _hooks.empty_cache_listeners


@pytest.fixture
def sigint() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt (Python's default handler), restored afterwards."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
    _hooks.take_interrupt()


# -- Ctrl-C inside the census's gc callbacks ------------------------------------------------------
def test_ctrl_c_in_the_epochs_gc_callback_propagates(monkeypatch: pytest.MonkeyPatch, sigint: None) -> None:
    original = _epoch.heap_tensors

    def interrupted() -> list[torch.Tensor]:
        # The signal handler runs here, inside the epoch's gc callback (it thaws at a full
        # collection's start): deterministic, where a real Ctrl-C lands there by chance.
        signal.raise_signal(signal.SIGINT)
        return original()

    monkeypatch.setattr(_epoch, "heap_tensors", interrupted)
    with pytest.raises(KeyboardInterrupt), gpu_session(device="cpu", leaks="ignore"):
        gc.collect()  # a full collection: the epoch's callback thaws the heap
    monkeypatch.undo()
    assert _registry_is_clean() and not _epoch.EPOCH.open
    assert _hooks.take_interrupt() is None


def test_ctrl_c_in_the_cycle_watchers_gc_callback_propagates(monkeypatch: pytest.MonkeyPatch, sigint: None) -> None:
    def interrupted(self: Any) -> None:
        signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(_cycles.GcWatch, "_name_referrers", interrupted)

    class Node:
        pass

    with pytest.raises(KeyboardInterrupt), gpu_session(device="cpu", leaks="ignore"):
        node = Node()
        node.self = node  # type: ignore[attr-defined]
        node.tensor = torch.ones(MIB)  # type: ignore[attr-defined]
        del node  # only a cycle holds it: the release's collection frees it, watched by GcWatch
    assert _registry_is_clean() and _cycles.GcWatch._on_gc not in gc.callbacks


def test_ctrl_c_during_a_failed_blocks_exit_is_not_turned_into_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    from vramguard.core import _release

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(_release, "run_release", interrupted)
    with pytest.raises(KeyboardInterrupt), gpu_session(device="cpu"):
        raise ValueError("the block failed, then Ctrl-C during the release")
    assert _registry_is_clean()


# -- the user's exception comes through unchanged ------------------------------------------------
class NotesNotAList(Exception):
    pass


class AddNoteRaises(Exception):
    def add_note(self, note: str) -> None:
        raise RuntimeError("add_note refused")


@pytest.mark.parametrize("census", [True, False])
def test_an_exception_that_cannot_take_a_note_comes_through_unchanged(census: bool) -> None:
    odd = NotesNotAList("odd notes")
    odd.__notes__ = "not a list"  # type: ignore[assignment]
    for error in (odd, AddNoteRaises("refuses notes")):
        with pytest.raises(type(error)) as caught, gpu_session(device="cpu", census=census):
            raise error
        assert caught.value is error
        assert caught.value.__context__ is None
    assert odd.__notes__ == "not a list"  # type: ignore[comparison-overlap]
    assert _registry_is_clean()


# -- one session object, two threads ---------------------------------------------------------------
def _race(session: vramguard.GpuSession) -> list[str]:
    """Two threads enter ``session`` at the same instant; what each saw. The one inside waits
    (bounded) until the other has answered, so "entered" twice means both were inside at once."""
    barrier = threading.Barrier(2)
    answered = threading.Event()
    outcomes: list[str] = []
    lock = threading.Lock()

    def enter() -> None:
        barrier.wait()
        try:
            with session:
                with lock:
                    outcomes.append("entered")
                answered.wait(timeout=5)
        except SessionError:
            with lock:
                outcomes.append("refused")
        answered.set()

    threads = [threading.Thread(target=enter) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_one_session_entered_by_two_threads_at_once_admits_exactly_one() -> None:
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: the race's window is short
    try:
        for _ in range(40):
            session = gpu_session(device="cpu", leaks="ignore")
            outcomes = _race(session)
            assert sorted(outcomes) == ["entered", "refused"]
            assert _registry_is_clean() and not session.active
    finally:
        sys.setswitchinterval(interval)


# -- the warning registry does not grow ----------------------------------------------------------
HELD: dict[str, torch.Tensor] = {}


def test_leak_warnings_are_stable_so_the_warning_registry_stays_flat() -> None:
    registry = globals().setdefault("__warningregistry__", {})
    with warnings.catch_warnings():
        warnings.simplefilter("default", LeakWarning)  # once per distinct text, as in a service
        messages = set()
        for _ in range(60):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", LeakWarning)
                with gpu_session("same", device="cpu"):
                    HELD["x"] = torch.ones(MIB)
            messages |= {str(w.message) for w in caught}
        registry.clear()
        warnings.showwarning = lambda *args, **kwargs: None  # restored by catch_warnings
        for _ in range(60):
            with gpu_session("same", device="cpu"):
                HELD["x"] = torch.ones(MIB)
        entries = [key for key in registry if key != "version"]
    HELD.clear()
    assert len(messages) == 1, messages
    assert len(entries) == 1
    (message,) = messages
    assert "leaked 4.00 MiB" in message and "HELD['x']" in message and " ms" not in message


# -- arguments checked before anything changes ---------------------------------------------------
def test_release_attrs_must_be_names() -> None:
    with pytest.raises(InvalidArgument, match="attrs=5"):
        vramguard.release(object(), attrs=5, device="cpu")  # type: ignore[arg-type]


class Holder:
    def __init__(self) -> None:
        self.x: Any = torch.ones(4)


class ReadOnly:
    @property
    def x(self) -> torch.Tensor:
        return torch.ones(4)


@dataclass(frozen=True)
class Frozen:
    x: Any


def test_release_checks_every_object_before_changing_any() -> None:
    for second in (ReadOnly(), Frozen(torch.ones(4))):
        first = Holder()
        with pytest.raises(InvalidArgument, match="attrs") as caught:
            vramguard.release(first, second, attrs="x", device="cpu")
        assert first.x is not None, "the first object was changed before the second was checked"
        assert type(second).__name__ in str(caught.value)


class RefusesWrites:
    x: Any = None

    def __init__(self) -> None:
        object.__setattr__(self, "x", torch.ones(4))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{name} is read-only")


def test_a_setattr_that_refuses_puts_back_what_was_set() -> None:
    first, second = Holder(), RefusesWrites()
    value = first.x
    with pytest.raises(InvalidArgument, match="read-only"):
        vramguard.release(first, second, attrs="x", device="cpu")
    assert first.x is value


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda: vramguard.parse_size("9" * 5000), "size"),
        (lambda: vramguard.parse_size("9" * 50 + " GiB"), "size"),
        (lambda: vramguard.parse_size(10**400), "size"),
        (lambda: vramguard.format_size(10**400), "nbytes"),
        (lambda: vramguard.format_size(float("nan")), "nbytes"),
        (lambda: vramguard.format_size(float("inf")), "nbytes"),
        (lambda: vramguard.format_size("1 GiB"), "nbytes"),  # type: ignore[arg-type]
        (lambda: gpu_session(device="cpu", leaks=np.array(["warn", "raise"])), "leaks"),  # type: ignore[arg-type]
        (lambda: vramguard.snapshot("cpu", nvml=torch.ones(3)), "nvml"),  # type: ignore[arg-type]
        (lambda: vramguard.snapshot("cpu", uss=np.array([1, 0])), "uss"),  # type: ignore[arg-type]
        (lambda: vramguard.resolve_device("cuda:" + "9" * 5000), "device"),
    ],
)
def test_bad_arguments_are_named(call: Any, argument: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        call()
    assert caught.value.argument == argument
    assert len(str(caught.value)) < 600


def test_big_but_valid_sizes_still_work() -> None:
    assert vramguard.parse_size("1" + "0" * 20 + " B") == 10**20
    assert vramguard.format_size(2**70) == "1048576.0 PiB"
    assert vramguard.format_size(np.int64(2048)) == "2.00 KiB"  # type: ignore[arg-type]


def test_nothing_is_left_behind_by_the_tests_above() -> None:
    assert _registry_is_clean() and not SAMPLER._subs and not _epoch.EPOCH.open
