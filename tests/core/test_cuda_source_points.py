"""Issue 24's points on the core and the probes, each read against torch's own sources: a CPU
test of the logic where it can be separated from the device, and a ``gpu`` test that shows it on
a GPU (named ``test_gpu_pointNN_*``; scripts/gpu-check.sh maps them to the points).

The gpu tests that depend on a process's first CUDA use (the first matmul, CUDA not yet
initialised, a fork after the probes ran) run in a fresh interpreter."""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys
import textwrap
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import vramguard
from vramguard import gpu_session
from vramguard.core import _history, _release
from vramguard.core._leak_figure import HOST_NOISE_FLOOR_BYTES, judge
from vramguard.probes import _blocks, _workspaces
from vramguard.probes._blocks import live_blocks, parse_snapshot, stranded
from vramguard.probes._workspaces import cublas_workspace_bytes, cublaslt_workspace_bytes

MIB = 2**20
ROOT = pathlib.Path(__file__).resolve().parents[2]


def _fresh(code: str) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; it prints one JSON object last."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=False, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return loaded


# --- 1. the small pool: a kept block strands the rest of its 2 MiB segment -------------------

# A segment list as torch.cuda.memory_snapshot() gives it (the fields vramguard reads): a 2 MiB
# small-pool segment holding one live 1 MiB block, a fully free 20 MiB segment, and a 20 MiB
# segment with a live 8 MiB block and a free 12 MiB tail; one segment of another device.
SEGMENTS: list[dict[str, Any]] = [
    {
        "device": 0,
        "address": 0x1000000,
        "total_size": 2 * MIB,
        "blocks": [
            {"size": MIB, "requested_size": MIB, "state": "active_allocated"},
            {"size": MIB, "requested_size": 0, "state": "inactive"},
        ],
    },
    {"device": 0, "address": 0x4000000, "total_size": 20 * MIB, "blocks": [{"size": 20 * MIB, "state": "inactive"}]},
    {
        "device": 0,
        "address": 0x8000000,
        "total_size": 20 * MIB,
        "blocks": [
            {"size": 8 * MIB, "requested_size": 8 * MIB - 4, "state": "active_allocated"},
            {"size": 12 * MIB, "requested_size": 0, "state": "inactive"},
        ],
    },
    {"device": 1, "address": 0x1000000, "total_size": 2 * MIB, "blocks": [{"size": 2 * MIB, "state": "inactive"}]},
]


def test_point01_stranded_is_the_free_space_of_segments_that_hold_a_live_block() -> None:
    # The fully free 20 MiB segment is what empty_cache() returns; the rest stays.
    assert stranded(SEGMENTS, 0) == (2, 13 * MIB)
    assert stranded(SEGMENTS, 1) == (0, 0)


def test_point01_parse_snapshot_keeps_the_requested_size() -> None:
    blocks = parse_snapshot(SEGMENTS, 0)
    assert sorted((b.address, b.size_bytes, b.requested_bytes) for b in blocks.values()) == [
        (0x1000000, MIB, MIB),
        (0x8000000, 8 * MIB, 8 * MIB - 4),
    ]


@pytest.mark.gpu
def test_gpu_point01_a_kept_small_block_strands_its_segment_and_the_report_says_so() -> None:
    dev = torch.device("cuda", torch.cuda.current_device())
    with gpu_session(device=dev, leaks="raise") as s:
        s.own(torch.ones(64 * MIB // 4, device=dev))
        kept = s.keep(torch.ones(MIB // 4, device=dev))  # 1 MiB: served from a 2 MiB small-pool segment
    report = s.report
    assert report is not None and report.leaked_bytes == 0
    _count, free = stranded(torch.cuda.memory_snapshot(), dev.index)  # type: ignore[no-untyped-call]
    # Everything still cached after the release is free space in segments with a live block.
    assert report.cached_bytes_after == free
    segment = next(
        seg
        for seg in torch.cuda.memory_snapshot()  # type: ignore[no-untyped-call]
        if seg["address"] <= kept.data_ptr() < seg["address"] + seg["total_size"]
    )
    assert segment["segment_type"] == "small" and segment["total_size"] == 2 * MIB
    empty = next(step for step in report.release_steps if step.name == "empty_cache")
    if free:
        assert "still hold live blocks" in empty.detail, empty.detail
    del kept


# --- 2. the leak figure: requested bytes, and the cuBLAS workspace apart -----------------------


def test_point02_a_kept_scalar_is_no_leak_by_requested_bytes() -> None:
    # allocated grew by 512 B (one block), requested by 4 B; the kept scalar is 4 B.
    assert judge(growth=4, kept_bytes=4, workspace_bytes=0, host=False).leaked_bytes == 0


def test_point02_the_workspace_is_its_own_item_not_a_leak() -> None:
    figure = judge(growth=32 * MIB, kept_bytes=0, workspace_bytes=32 * MIB, host=False)
    assert figure.leaked_bytes == 0
    assert any("cuBLAS workspace" in note and "32.0 MiB" in note for note in figure.notes)
    # A real leak beside the workspace is still counted, whole.
    beside = judge(growth=40 * MIB, kept_bytes=0, workspace_bytes=32 * MIB, host=False)
    assert beside.leaked_bytes == 8 * MIB


@given(
    growth=st.integers(-(2**34), 2**34),
    kept=st.integers(0, 2**33),
    workspace=st.integers(0, 2**27),
    host=st.booleans(),
)
def test_point02_the_leak_figure_is_never_negative_and_never_above_the_growth(
    growth: int, kept: int, workspace: int, host: bool
) -> None:
    figure = judge(growth, kept, workspace, host)
    assert figure.leaked_bytes is not None
    assert 0 <= figure.leaked_bytes <= max(0, growth - kept)
    if figure.leaked_bytes:
        assert figure.leaked_bytes >= growth - kept - workspace
        assert not host or figure.leaked_bytes >= HOST_NOISE_FLOOR_BYTES


def test_point02_unknown_growth_is_unknown() -> None:
    assert judge(None, 0, 0, host=False).leaked_bytes is None


def test_point02_workspace_sizes_follow_torchs_parser() -> None:
    # CublasHandlePool.cpp, parseChosenWorkspaceSize: 32 MiB on sm90, ":4096:2:16:8" elsewhere.
    assert cublas_workspace_bytes(None, (9, 0)) == 32 * MIB
    assert cublas_workspace_bytes(None, (8, 0)) == 4096 * 1024 * 2 + 16 * 1024 * 8
    assert cublas_workspace_bytes(":4096:8", (8, 6)) == 32 * MIB
    assert cublas_workspace_bytes(":16:8", (9, 0)) == 16 * 1024 * 8
    assert cublas_workspace_bytes("nonsense", (9, 0)) == 32 * MIB  # torch warns and keeps its default
    assert cublaslt_workspace_bytes(None, 32 * MIB) == MIB
    assert cublaslt_workspace_bytes("4096", 2 * MIB) == 2 * MIB  # capped by the unified workspace
    assert cublaslt_workspace_bytes("x", 32 * MIB) == MIB


def test_point02_new_workspaces_are_those_not_seen_at_the_last_look(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry's logic, with the block list and the sizes given (no CUDA here)."""
    dev = torch.device("cuda", 7)
    ws = _blocks.Block(0x10, 32 * MIB, None, 32 * MIB)
    tensor = _blocks.Block(0x20, 64 * MIB, None, 64 * MIB)
    later = _blocks.Block(0x30, 32 * MIB, None, 32 * MIB)
    live: dict[int, _blocks.Block] = {}
    monkeypatch.setattr(_workspaces, "live_blocks", lambda device: dict(live))
    monkeypatch.setattr(_workspaces, "workspace_sizes", lambda device: frozenset({32 * MIB, MIB}))
    monkeypatch.setattr(_workspaces, "_known", {})
    _workspaces.seed_workspaces(dev)  # nothing live yet: the first matmul is still to come
    live.update({ws.address: ws, tensor.address: tensor})
    assert _workspaces.new_workspaces(dev) == [ws]
    assert _workspaces.new_workspaces(dev) == []  # seen: an older workspace is never counted again
    live[later.address] = later
    assert _workspaces.new_workspaces(dev) == [later]


FIRST_MATMUL = """
    import json, torch, vramguard
    dev = torch.device("cuda", 0)
    torch.zeros(1, device=dev)  # CUDA initialised; no matmul yet
    results = {}
    for census in (False, True):
        # A new stream for each run: cuBLAS keeps one workspace per (handle, stream), so each
        # block's first matmul allocates one (CublasHandlePool.cpp, setWorkspaceForHandle).
        with torch.cuda.stream(torch.cuda.Stream(dev)):
            with vramguard.gpu_session(device=dev, census=census, leaks="ignore") as s:
                a = torch.randn(512, 512, device=dev)
                b = a @ a
                s.keep(b.sum())  # a 4-byte scalar kept
                del a, b
        results[str(census)] = [s.report.leaked_bytes, list(s.report.notes)]
    print(json.dumps(results))
"""


@pytest.mark.gpu
def test_gpu_point02_the_first_matmul_and_a_kept_scalar_are_no_leak() -> None:
    results = _fresh(FIRST_MATMUL)
    leaked, notes = results["False"]
    assert leaked == 0, notes
    assert any("cuBLAS workspace" in note for note in notes), notes
    leaked, notes = results["True"]
    assert leaked == 0, notes


# --- 3. the block diff before CUDA is initialised ----------------------------------------------


def test_point03_before_initialisation_the_entry_state_is_no_blocks() -> None:
    if torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        pytest.skip("CUDA is initialised in this process; the gpu test covers it")
    assert live_blocks(torch.device("cuda", 0)) == {}
    assert live_blocks(torch.device("cpu")) is None
    assert not torch.cuda.is_initialized()  # type: ignore[no-untyped-call]


@pytest.mark.gpu
def test_gpu_point03_a_session_around_the_first_to_cuda_sees_the_blocks() -> None:
    results = _fresh(
        """
        import json, torch, vramguard
        MODEL = torch.nn.Linear(1024, 1024)  # built on the host, before CUDA is initialised
        assert not torch.cuda.is_initialized()
        with vramguard.gpu_session(device="cuda:0", leaks="ignore") as s:
            MODEL.to("cuda:0")  # older Python objects given new CUDA storage
        print(json.dumps([s.report.leaked_bytes, [str(leak) for leak in s.report.leaks]]))
        """
    )
    leaked, leaks = results
    assert leaked >= 1024 * 1024 * 4, leaks
    assert any("MODEL" in line for line in leaks), leaks


# --- 8. memory history: Python frames only; no traces for the block list -----------------------


def test_point08_history_records_python_frames_only() -> None:
    assert _history.HISTORY_OPTIONS["stacks"] == "python"
    assert _history.HISTORY_OPTIONS["enabled"] == "all"


def test_point08_the_block_list_reads_no_traces(monkeypatch: pytest.MonkeyPatch) -> None:
    """At the one edge that cannot run here (the CUDA allocator), the call vramguard makes."""
    calls: list[dict[str, Any]] = []

    def snapshot(mempool_id: Any = None, include_traces: bool = True) -> list[dict[str, Any]]:
        calls.append({"include_traces": include_traces})
        return SEGMENTS

    monkeypatch.setattr(torch.cuda, "memory_snapshot", snapshot)
    monkeypatch.setattr(_blocks, "_TAKES_INCLUDE_TRACES", True)
    monkeypatch.setattr(_blocks, "cuda_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_allocator_backend", lambda: "native")
    assert set(live_blocks(torch.device("cuda", 0)) or ()) == {0x1000000, 0x8000000}
    assert calls == [{"include_traces": False}]


@pytest.mark.gpu
def test_gpu_point08_creation_sites_are_python_frames() -> None:
    dev = torch.device("cuda", torch.cuda.current_device())
    with gpu_session(device=dev, record_history=True, leaks="ignore") as s:
        HELD.append(torch.ones(4 * MIB // 4, device=dev))
    try:
        history = s.report.memory_history if s.report is not None else None
        assert history is not None
        frames = [
            frame for segment in history["segments"] for block in segment["blocks"] for frame in block.get("frames", ())
        ]
        assert frames, "the history recorded no frames"
        assert not [f for f in frames if str(f.get("filename", "")).startswith("??") or ".so" in str(f["filename"])]
        assert any(str(f["filename"]).endswith("test_cuda_source_points.py") for f in frames)
    finally:
        HELD.clear()


HELD: list[torch.Tensor] = []


# --- 11. availability without cuInit ------------------------------------------------------------


def test_point11_no_module_calls_is_available() -> None:
    """``torch.cuda.is_available()`` runs cuInit (torch/cuda/__init__.py:166-187); vramguard asks
    NVML through probes.cuda_available() instead."""
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "vramguard").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"(?<!`)torch\.cuda\.is_available\(", line) and not line.lstrip().startswith("#")
    ]
    assert offenders == []


def test_point11_the_session_path_never_asks_is_available(monkeypatch: pytest.MonkeyPatch) -> None:
    def cu_init() -> bool:
        raise AssertionError("torch.cuda.is_available() initialises the driver")

    monkeypatch.setattr(torch.cuda, "is_available", cu_init)
    vramguard.resolve_device("auto")
    vramguard.snapshot("auto")
    with gpu_session(device="auto"):
        pass
    with gpu_session(device="cpu", census=False):
        pass


@pytest.mark.gpu
def test_gpu_point11_a_fork_after_the_probes_can_still_use_cuda() -> None:
    results = _fresh(
        """
        import json, os, torch, vramguard
        vramguard.resolve_device("auto")
        vramguard.snapshot("auto")
        with vramguard.gpu_session(device="cpu"):
            pass
        pid = os.fork()
        if pid == 0:
            try:
                ok = float(torch.ones(4, device="cuda").sum().item()) == 4.0
            except Exception:
                ok = False
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"child": os.waitstatus_to_exitcode(status), "initialised": torch.cuda.is_initialized()}))
        """
    )
    assert results == {"child": 0, "initialised": False}


# --- 12. NVML's v2 memory struct (the CPU tests are in test_probes.py) --------------------------


@pytest.mark.gpu
def test_gpu_point12_device_used_is_the_v2_figure() -> None:
    pynvml = pytest.importorskip("pynvml")
    from vramguard.probes import read_nvml

    reading = read_nvml(torch.cuda.current_device())
    if reading.device_used_bytes is None:
        pytest.skip(f"NVML unreadable here: {reading.reason}")
    assert reading.driver_reserved_bytes is not None, reading.reason
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    v1 = pynvml.nvmlDeviceGetMemoryInfo(handle)
    # v1's used counts the driver's reserved memory; v2's does not (other processes may move it).
    assert reading.device_used_bytes <= int(v1.used)
    assert reading.driver_reserved_bytes > 0


# --- 13. cuBLAS workspaces are in reserved, not in the context ---------------------------------


def test_point13_the_snapshot_docs_put_workspaces_in_reserved() -> None:
    doc = vramguard.MemorySnapshot.__doc__ or ""
    context = doc[doc.index("context_bytes") :]
    assert "cuBLAS/cuBLASLt workspaces are not here" in context
    memory_model = (ROOT / "docs" / "memory-model.md").read_text()
    assert "workspace" in memory_model and "reserved" in memory_model


@pytest.mark.gpu
def test_gpu_point13_the_first_matmul_grows_reserved_not_the_context() -> None:
    """The workspace is a block of torch's caching allocator, so it is in reserved_bytes. (The
    context may grow too at the first matmul, as the driver loads cuBLAS's kernels: that is the
    context's own growth, which is why the test does not bound it.)"""
    results = _fresh(
        """
        import json, torch, vramguard
        from vramguard.probes import live_blocks, workspace_sizes
        dev = torch.device("cuda", 0)
        torch.zeros(1, device=dev)
        first, entry = vramguard.snapshot(dev), live_blocks(dev)
        a = torch.randn(64, 64, device=dev)
        (a @ a).sum().item()
        del a
        second, now = vramguard.snapshot(dev), live_blocks(dev)
        sizes = workspace_sizes(dev)
        new = [b.requested_bytes for a, b in now.items() if a not in entry and b.requested_bytes in sizes]
        print(json.dumps({
            "reserved": second.reserved_bytes - first.reserved_bytes,
            "workspaces": new,
            "largest": max(sizes),
        }))
        """
    )
    assert results["workspaces"], results
    assert results["reserved"] >= max(results["workspaces"]), results


# --- the release policy on CUDA -----------------------------------------------------------------


def test_cuda_policy_keeps_the_cache_a_loop_reuses() -> None:
    floor = _release.CUDA_EMPTY_FLOOR_BYTES
    reason = _release.cuda_empty_skip(cached_bytes=300 * MIB, entry_cached_bytes=290 * MIB, floor_bytes=floor)
    assert reason is not None and reason.startswith("skipped:") and "10.0 MiB" in reason
    assert _release.cuda_empty_skip(cached_bytes=floor + 5, entry_cached_bytes=5, floor_bytes=floor) is None
    assert _release.cuda_empty_skip(cached_bytes=10, entry_cached_bytes=0, floor_bytes=0) is None  # owned
    assert _release.cuda_empty_skip(cached_bytes=None, entry_cached_bytes=0, floor_bytes=floor) is None


@given(cached=st.integers(0, 2**40), entry=st.integers(0, 2**40), floor=st.integers(0, 2**32))
def test_cuda_policy_empties_exactly_past_the_floor(cached: int, entry: int, floor: int) -> None:
    kept = _release.cuda_empty_skip(cached, entry, floor) is not None
    assert kept == (floor > 0 and cached - entry < floor)


@pytest.mark.gpu
def test_gpu_release_policy_a_step_keeps_the_cache_and_an_owning_session_empties_it() -> None:
    dev = torch.device("cuda", torch.cuda.current_device())
    with gpu_session(device=dev) as step:
        x = torch.ones(16 * MIB // 4, device=dev) * 2  # transient: freed into the cache
        del x
    assert step.report is not None
    empty = next(s for s in step.report.release_steps if s.name == "empty_cache")
    assert empty.detail.startswith("skipped:"), empty.detail
    with gpu_session(device=dev) as owning:
        owning.own(torch.ones(16 * MIB // 4, device=dev))
    assert owning.report is not None
    empty = next(s for s in owning.report.release_steps if s.name == "empty_cache")
    assert not empty.detail.startswith("skipped:"), empty.detail
