"""vramguard's pytest plugin: limit a test's peak and its leaks, on the GPU or the host.

Loaded through the ``pytest11`` entry point, and inert unless used: only tests marked
``vram_limit`` / ``vram_leaks``, tests using the ``gpu_session`` fixture, or every test under
``--vram`` are measured. Modelled on pytest-memray: a registry of marker functions (their
docstrings are the markers' help), each returning None or a failure; one ``makereport`` hook
wrapper turns failures into a failed test with a report section::

    @pytest.mark.vram_limit(max_peak="1 GiB", device="cuda")
    @pytest.mark.vram_leaks(max_leak="0 B")
    def test_transcribe(): ...

The test's call is measured inside a ``gpu_session`` (``gc.collect()`` first, so earlier tests'
garbage does not count); the plugin keeps only the figures of each report, never a tensor.

pytest imports this module in every run in the environment, so it imports only pytest and the
standard library at the top: vramguard's core (and torch) is imported inside the hooks, and only
for a test that is measured.
"""

from __future__ import annotations

import gc
import inspect
import os
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from vramguard.core._records import SessionReport
    from vramguard.core._session import GpuSession
    from vramguard.core._sizes import SizeLike
    from vramguard.probes import DeviceLike

SECTION = "vramguard"


@dataclass(frozen=True)
class Failure:
    """What one marker found wrong: a headline for the failure and a report section."""

    headline: str
    section: str


def _leak_lines(report: SessionReport) -> list[str]:
    if report.leaks:
        return [f"  {line}" for group in report.leak_groups for line in group.lines(verbose=True)]
    return ["  (no tensor census here: allocated bytes after the release minus before)"]


def vram_limit(max_peak: SizeLike, *, device: DeviceLike | None = None, _report: SessionReport) -> Failure | None:
    """Fail the test when its memory peak rises more than max_peak (a size: "1 GiB", "512 MiB",
    bytes) above where it started; device: "cpu", "cuda", "cuda:N" (default: --vram-device)."""
    from vramguard.core._sizes import format_size, parse_size

    limit = parse_size(max_peak, argument="max_peak")
    peak = _report.peak_increase_bytes
    if peak is None or peak <= limit:
        return None
    return Failure(
        f"Test was limited to {format_size(limit)} but peaked at {format_size(peak)}",
        f"{_report}",
    )


def vram_leaks(
    max_leak: SizeLike = "0 B", *, device: DeviceLike | None = None, _report: SessionReport
) -> Failure | None:
    """Fail the test when memory it allocated outlives it by more than max_leak (a size,
    default "0 B"), after gc.collect() and the release; the report names who holds it."""
    from vramguard.core._sizes import format_size, parse_size

    limit = parse_size(max_leak, argument="max_leak")
    leaked = _report.leaked_bytes
    if leaked is None or leaked <= limit:
        return None
    lines = [f"Leaked {format_size(leaked)} on {_report.device} (limit {format_size(limit)}):"]
    lines += _leak_lines(_report)
    return Failure(
        f"Test was limited to leaking {format_size(limit)} but leaked {format_size(leaked)}",
        "\n".join([*lines, "", str(_report)]),
    )


MarkerFunction = Callable[..., Failure | None]
MARKERS: dict[str, MarkerFunction] = {"vram_limit": vram_limit, "vram_leaks": vram_leaks}
VERDICTS: dict[str, str] = {"vram_limit": "VRAM LIMIT", "vram_leaks": "VRAM LEAK"}
"""The word a failed test shows in verbose output, by the marker that failed it."""


@dataclass(frozen=True)
class _Result:
    """The figures kept for one test (no tensors, no frames)."""

    device: str
    peak_increase_bytes: int | None
    reclaimed_bytes: int | None
    leaked_bytes: int | None
    worker: str | None = None
    """The pytest-xdist worker that ran the test ("gw0"), None without xdist."""


NOTHING_RECLAIMED = "—"
"""The reclaimed column of a test whose release gave nothing back (the memory grew while it ran)."""

RESULT_PROPERTY = "vramguard"
"""The ``user_properties`` key that carries a test's figures on its report: under pytest-xdist the
report travels from the worker that measured it to the controller, which prints the table."""


class _State:
    """Per-run state, kept on the config's stash (in-process pytester runs share the module)."""

    def __init__(self, config: pytest.Config) -> None:
        self.enabled: bool = bool(config.getoption("vram"))
        self.device: str = str(config.getoption("vram_device"))
        self.reports: dict[str, dict[str, SessionReport]] = {}
        self.results: dict[str, _Result] = {}

    @staticmethod
    def figures(report: SessionReport) -> dict[str, Any]:
        """A test's figures as plain data (it crosses the xdist channel on the test's report)."""
        return {
            "device": report.device,
            "peak_increase_bytes": report.peak_increase_bytes,
            "reclaimed_bytes": report.reclaimed_bytes,
            "leaked_bytes": report.leaked_bytes,
            "worker": os.environ.get("PYTEST_XDIST_WORKER"),
        }

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Keep the figures a call report carries: this process's own, or (on the xdist
        controller) a worker's, each under its test, from the worker that ran it."""
        if report.when != "call":
            return
        for name, value in report.user_properties:
            if name == RESULT_PROPERTY and isinstance(value, dict):
                self.results[report.nodeid] = _Result(**value)


_STATE = pytest.StashKey[_State]()
_FIXTURE = pytest.StashKey["GpuSession"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vramguard", "GPU and host memory limits (vramguard)")
    group.addoption(
        "--vram",
        action="store_true",
        default=False,
        help="measure every test's memory and print a table of peak, reclaimed and leaked bytes",
    )
    group.addoption(
        "--vram-device",
        default="auto",
        help='device for --vram, the markers and the gpu_session fixture: "auto" (default), "cpu", "cuda:N"',
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_STATE] = state = _State(config)
    config.pluginmanager.register(state, f"vramguard-results-{id(config)}")
    for name, function in MARKERS.items():
        params = [p for p in inspect.signature(function).parameters if not p.startswith("_")]
        doc = " ".join((function.__doc__ or "").split())
        config.addinivalue_line("markers", f"{name}({', '.join(params)}): {doc}")


def _markers(item: pytest.Item) -> list[pytest.Mark]:
    return [mark for mark in item.iter_markers() if mark.name in MARKERS]


def _device_of(mark: pytest.Mark | None, default: str) -> DeviceLike:
    device = mark.kwargs.get("device") if mark is not None else None
    return default if device is None else device


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Run the test's call inside one session per device its markers (or --vram) name."""
    state = item.config.stash.get(_STATE, None)
    marks = _markers(item)
    if state is None or not (marks or state.enabled):
        yield
        return
    from vramguard.core._errors import InvalidArgument
    from vramguard.core._session import GpuSession
    from vramguard.probes import resolve_device

    devices: dict[str, GpuSession] = {}
    # The gpu_session fixture's session, when the test uses it, is the session of its device:
    # exited here, before the markers judge, so what the test gave it to own() is dropped
    # first and its registry entry never shows up as a holder in another session's report.
    fixture = item.stash.get(_FIXTURE, None)
    wanted: list[pytest.Mark | None] = [*marks] or [None]
    for mark in wanted:
        try:
            device = resolve_device(_device_of(mark, state.device))
        except InvalidArgument as bad:
            # A bad device is a usage error in the marker: one line, as every other bad
            # marker argument gives, not a traceback through this hook.
            name = mark.name if mark is not None else "--vram-device"
            pytest.fail(f"{name}: {bad}", pytrace=False)
        if str(device) in devices:
            continue
        if fixture is not None and fixture.device == device:
            devices[str(device)] = fixture
        else:
            devices[str(device)] = GpuSession(item.nodeid, device=device, leaks="ignore")
    gc.collect()  # garbage from earlier tests is not this test's
    if any(device.startswith("cpu") for device in devices):
        from vramguard.probes import malloc_trim

        # Free pages earlier tests left resident would take this test's allocations without
        # raising the resident high-water mark that is the host's peak.
        malloc_trim()
    entered: list[GpuSession] = [s for s in devices.values() if s is fixture]
    raised = True
    try:
        for session in devices.values():
            if session is not fixture:
                session.__enter__()
                entered.append(session)
        yield
        raised = False
    finally:
        error = _exit_all(entered)
        state.reports[item.nodeid] = {key: s.report for key, s in devices.items() if s.report is not None}
        del entered, devices
        if error is not None and not raised:
            raise error  # the test's own exception, when it raised, stays its outcome


def _exit_all(sessions: list[GpuSession]) -> Exception | None:
    """Exit every session, the last entered first, even when one's exit raises (a LeakError, a
    warning turned into an error); returns the first error. Each exits without the test's
    exception: a failed test is reported as it failed, without the session's note on its
    traceback, and limits are only checked on tests that passed."""
    first: Exception | None = None
    for session in reversed(sessions):
        try:
            session.__exit__(None, None, None)
        except Exception as error:
            if first is None:
                first = error
    return first


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Turn the marker functions' failures into a failed test with one section each."""
    report: pytest.TestReport = yield
    state = item.config.stash.get(_STATE, None)
    if state is None or call.when != "call":
        return report
    reports = state.reports.pop(item.nodeid, {})
    if not reports:
        return report
    from vramguard.probes import resolve_device

    failures: list[tuple[str, Failure]] = []
    if report.passed:
        for mark in _markers(item):
            try:
                device = str(resolve_device(_device_of(mark, state.device)))
                failure = MARKERS[mark.name](*mark.args, **mark.kwargs, _report=reports[device])
            except Exception as error:  # a bad marker argument fails the test, with the reason
                failure = Failure(f"{mark.name}: {error}", f"{type(error).__name__}: {error}")
            if failure is not None:
                failures.append((mark.name, failure))
    if state.enabled:
        report.user_properties.append((RESULT_PROPERTY, state.figures(next(iter(reports.values())))))
    if failures:
        report.outcome = "failed"
        report.longrepr = "\n".join(f.headline for _, f in failures)
        report.sections.extend((f"{SECTION} {name}", f.section) for name, f in failures)
    return report


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> Generator[None, Any, Any]:
    """Failures of a vramguard marker read "VRAM LIMIT" (the peak) or "VRAM LEAK" in verbose
    output, "V" otherwise."""
    status = yield
    if report.when != "call" or not report.failed:
        return status
    failed = [name.removeprefix(f"{SECTION} ") for name, _ in report.sections if name.startswith(f"{SECTION} ")]
    verdicts = [VERDICTS.get(name, "VRAM") for name in failed]
    if verdicts:
        return ("failed", "V", " and ".join(dict.fromkeys(verdicts)))
    return status


@pytest.fixture
def gpu_session(request: pytest.FixtureRequest) -> Generator[GpuSession, None, None]:
    """A started vramguard session around the test (device: the test's vram marker's, else
    --vram-device); its report is on the session once the test is done. Leaks are not
    enforced here: use the vram_leaks marker for that."""
    from vramguard.core._session import GpuSession

    state = request.config.stash.get(_STATE, None)
    default = state.device if state is not None else "auto"
    marks = _markers(request.node)
    device = _device_of(marks[0] if marks else None, default)
    session = GpuSession(request.node.name, device=device, leaks="ignore")
    gc.collect()
    session.__enter__()
    request.node.stash[_FIXTURE] = session
    try:
        yield session
    finally:
        del request.node.stash[_FIXTURE]
        if session.active:  # not exited by the call phase (markers and --vram off)
            session.__exit__(None, None, None)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Under --vram: a table of every measured test's peak, reclaimed and leaked bytes."""
    state = config.stash.get(_STATE, None)
    if state is None or not state.enabled:
        return
    from vramguard.core._sizes import format_size

    terminalreporter.write_sep("=", "vramguard report")
    if not state.results:
        terminalreporter.write_line("no test was measured")
        return
    width = max(len("test"), *(len(nodeid) for nodeid in state.results))
    # Under pytest-xdist, the worker that measured each test (its sessions ran in that process).
    workers = any(result.worker for result in state.results.values())
    worker_column = "worker  " if workers else ""
    header = f"{'test':<{width}}  {worker_column}{'device':<7} {'peak':>11} {'reclaimed':>11} {'leaked':>11}"
    terminalreporter.write_line(header)
    grew = False
    for nodeid, result in sorted(state.results.items()) if workers else state.results.items():
        worker = f"{result.worker or '':<8}" if workers else ""
        reclaimed = result.reclaimed_bytes
        # A release during which the memory grew (the host's collector and census allocate) gave
        # nothing back: a negative "reclaimed" would read as a reclaim.
        grew = grew or (reclaimed is not None and reclaimed < 0)
        shown = NOTHING_RECLAIMED if reclaimed is not None and reclaimed < 0 else format_size(reclaimed)
        terminalreporter.write_line(
            f"{nodeid:<{width}}  {worker}{result.device:<7} {format_size(result.peak_increase_bytes):>11} "
            f"{shown:>11} {format_size(result.leaked_bytes):>11}"
        )
    if grew:
        terminalreporter.write_line(
            f"reclaimed {NOTHING_RECLAIMED}: the release gave nothing back (the memory grew while it ran)"
        )
