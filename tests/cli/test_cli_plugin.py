"""The pytest plugin, through pytester: write a test file, run pytest on it, read the outcome."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest_plugins = ["pytester"]

HEADER = """
import pytest
import torch

MIB = 2**20
_HELD = []
"""


def mentions_vramguard(result: pytest.RunResult) -> bool:
    """Whether the plugin said anything (the header line naming the loaded plugins aside)."""
    return any("vramguard" in line for line in result.outlines if not line.startswith("plugins:"))


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """pytest in-process on the written file; hypothesis's plugin off (re-importing it costs 1 s)."""
    return pytester.runpytest("-p", "no:hypothesispytest", *args)


def make(pytester: pytest.Pytester, body: str) -> None:
    pytester.makepyfile(test_vram=HEADER + body)


def test_limit_passes_under_and_fails_over(pytester: pytest.Pytester) -> None:
    make(
        pytester,
        """
@pytest.mark.vram_limit(max_peak="100 MiB", device="cpu")
def test_small():
    x = torch.ones(4 * MIB)  # 16 MiB
    assert float(x.sum()) > 0

@pytest.mark.vram_limit(max_peak="100 MiB", device="cpu")
def test_big():
    x = torch.ones(64 * MIB)  # 256 MiB, kept alive for a few ops so the sampler sees it
    for _ in range(4):
        x.mul_(1.0001)
""",
    )
    result = run(pytester, "--strict-markers")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_big _*",
            "Test was limited to 100.0 MiB but peaked at 2??.? MiB",
            "*- vramguard vram_limit -*",
            "vramguard session 'test_vram.py::test_big' on cpu:*",
            "VRAM LIMIT test_vram.py::test_big - Test was limited to 100.0 MiB but peaked*",
        ]
    )


def test_limit_fails_a_spike_shorter_than_the_sampling_interval(pytester: pytest.Pytester) -> None:
    """The host peak is the kernel's resident high-water mark, reset at the test's entry: a block
    touched and freed between two samples still counts."""
    from vramguard.probes import reset_resident_peak, resident_peak_reset_unavailable

    if not reset_resident_peak():
        pytest.skip(f"VmHWM cannot be reset here: {resident_peak_reset_unavailable()}")
    make(
        pytester,
        """
@pytest.mark.vram_limit(max_peak="1 MiB", device="cpu")
def test_spike():
    x = torch.ones(8 * MIB)  # 32 MiB, touched and freed at once
    del x
""",
    )
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["Test was limited to 1.00 MiB but peaked at 3?.? MiB"])


def test_leaks_fail_with_the_leak_listed(pytester: pytest.Pytester) -> None:
    make(
        pytester,
        """
@pytest.mark.vram_leaks(max_leak="0 B", device="cpu")
def test_leaks():
    _HELD.append(torch.ones(16 * MIB))  # 64 MiB kept by the module

@pytest.mark.vram_leaks(device="cpu")
def test_clean():
    x = torch.ones(16 * MIB)
    assert float(x.sum()) > 0

@pytest.mark.vram_leaks(max_leak="100 MiB", device="cpu")
def test_tolerated():
    _HELD.append(torch.ones(16 * MIB))
""",
    )
    result = run(pytester, "-v")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "test_vram.py::test_leaks VRAM LEAK*",
            "test_vram.py::test_clean PASSED*",
            "Test was limited to leaking 0 B but leaked 64.? MiB",
            "*- vramguard vram_leaks -*",
            "Leaked 64.? MiB on cpu (limit 0 B):",
        ]
    )
    section = result.stdout.str()
    assert "_HELD" in section or "no tensor census here" in section, "the census names the holder"


def test_a_failing_test_stays_a_plain_failure(pytester: pytest.Pytester) -> None:
    make(
        pytester,
        """
@pytest.mark.vram_leaks(device="cpu")
def test_fails():
    _HELD.append(torch.ones(16 * MIB))
    assert 1 == 2
""",
    )
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E       assert 1 == 2"])
    assert not mentions_vramguard(result)


def test_bad_marker_arguments_fail_the_test(pytester: pytest.Pytester) -> None:
    make(
        pytester,
        """
@pytest.mark.vram_limit(max_peak="lots", device="cpu")
def test_bad():
    pass
""",
    )
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["vram_limit: invalid max_peak='lots'; accepted: *"])


def test_a_bad_device_in_a_marker_is_one_line_not_a_traceback(pytester: pytest.Pytester) -> None:
    make(
        pytester,
        """
@pytest.mark.vram_limit("1 GiB", device="tpu")
def test_bad():
    pass
""",
    )
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*vram_limit: invalid device='tpu'; accepted: *"])
    assert "pytest_plugin.py" not in result.stdout.str()
    assert "Traceback" not in result.stdout.str()


def test_markers_are_registered_with_their_help(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--markers")
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.vram_limit(max_peak, device): Fail the test when its memory peak rises*",
            "@pytest.mark.vram_leaks(max_leak, device): Fail the test when memory it allocated outlives it*",
        ]
    )


def test_fixture_yields_a_started_session(pytester: pytest.Pytester) -> None:
    make(
        pytester,
        """
SESSIONS = []

def test_uses_it(gpu_session):
    SESSIONS.append(gpu_session)
    assert gpu_session.device.type == "cpu"
    assert gpu_session.report is None
    gpu_session.keep(torch.ones(MIB))

def test_report_after():
    report = SESSIONS[0].report
    assert report is not None and report.name == "test_uses_it"
    assert report.kept_bytes == 4 * MIB
""",
    )
    result = run(pytester, "--vram-device", "cpu")
    result.assert_outcomes(passed=2)


def test_what_the_fixture_owns_is_no_leak_and_vramguard_is_never_a_holder(pytester: pytest.Pytester) -> None:
    make(
        pytester,
        """
SESSIONS = []

@pytest.mark.vram_leaks
def test_owns_under_the_marker(gpu_session):
    SESSIONS.append(gpu_session)
    gpu_session.own(torch.nn.Linear(512, 512))

def test_owns_without_a_marker(gpu_session):
    SESSIONS.append(gpu_session)
    gpu_session.own(torch.nn.Linear(512, 512))

def test_reports_after():
    for session in SESSIONS:
        report = session.report
        assert report is not None and report.leaked_bytes == 0, str(report)
        assert "vramguard.core" not in str(report) and "_measure_and_release" not in str(report), str(report)
""",
    )
    result = run(pytester, "--vram-device", "cpu")
    result.assert_outcomes(passed=3)


def test_vram_option_prints_a_table(pytester: pytest.Pytester) -> None:
    make(
        pytester,
        """
def test_one():
    x = torch.ones(4 * MIB)
    assert float(x.sum()) > 0

def test_two():
    pass
""",
    )
    result = run(pytester, "--vram", "--vram-device", "cpu")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*= vramguard report =*",
            "test *device *peak *reclaimed *leaked",
            "test_vram.py::test_one *cpu *MiB*",
            "test_vram.py::test_two *cpu *",
        ]
    )


def test_inert_without_markers_options_or_fixture(pytester: pytest.Pytester) -> None:
    make(
        pytester,
        """
def test_plain():
    _HELD.append(torch.ones(16 * MIB))
""",
    )
    result = run(pytester)
    result.assert_outcomes(passed=1)
    assert not mentions_vramguard(result)


def test_loaded_by_its_entry_point_in_a_fresh_process(pytester: pytest.Pytester) -> None:
    make(
        pytester,
        """
@pytest.mark.vram_leaks(device="cpu")
def test_leaks():
    _HELD.append(torch.ones(16 * MIB))
""",
    )
    result = pytester.runpytest_subprocess("--strict-markers", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["Test was limited to leaking 0 B but leaked 64.? MiB"])


def test_an_error_from_the_session_exit_fails_the_test_and_keeps_the_report(pytester: pytest.Pytester) -> None:
    make(
        pytester,
        """
import vramguard

@pytest.mark.vram_limit(max_peak="1 GiB", device="cpu")
def test_order():
    x = torch.ones(MIB)
    vramguard.empty_cache("cpu")  # before the reference is dropped: a ReleaseOrderWarning at exit
    del x
""",
    )
    result = run(pytester, "--vram", "--vram-device", "cpu", "-W", "error::vramguard.ReleaseOrderWarning")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "E   *ReleaseOrderWarning: session 'test_vram.py::test_order': *",
            "*= vramguard report =*",
            "test_vram.py::test_order *cpu *",
        ]
    )


class _Session:
    """Stands in for a GpuSession whose exit may raise."""

    def __init__(self, exited: list[str], name: str, error: Exception | None = None) -> None:
        self.exited, self.name, self.error = exited, name, error

    def __exit__(self, *exc: object) -> None:
        assert exc == (None, None, None), "sessions exit without the test's exception"
        self.exited.append(self.name)
        if self.error is not None:
            raise self.error


def test_every_session_is_exited_and_the_first_exit_error_returned() -> None:
    from vramguard.pytest_plugin import _exit_all

    exited: list[str] = []
    first, second = LookupError("cuda"), ValueError("cpu")
    sessions = [_Session(exited, "a"), _Session(exited, "b", second), _Session(exited, "c", first)]
    assert _exit_all(sessions) is first  # type: ignore[arg-type]
    assert exited == ["c", "b", "a"], "the last entered exits first, and every one exits"
    assert _exit_all([_Session(exited, "d")]) is None  # type: ignore[list-item]


def test_importing_the_plugin_imports_no_torch() -> None:
    """pytest loads the plugin in every run in the environment: it must not cost a torch import."""
    code = "import sys, vramguard.pytest_plugin; assert 'torch' not in sys.modules, 'torch imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


def test_a_run_without_measured_tests_imports_no_torch(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_plain="""
import sys

def test_plain():
    assert "torch" not in sys.modules
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:hypothesispytest")
    result.assert_outcomes(passed=1)
