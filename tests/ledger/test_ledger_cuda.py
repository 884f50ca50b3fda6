"""The CUDA ledger: its arithmetic on recorded readings (CPU), and the real thing (gpu)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import vramguard
from vramguard.ledger._attribute import Attribution, Owner, Storage
from vramguard.ledger._cuda import cuda_lines
from vramguard.probes import Block

MIB = 1024 * 1024
HELD: Any = None


def _attribution() -> Attribution:
    owners = (Owner("global m.MODEL", "Linear (nn.Module)", "del the global m.MODEL"),)
    storages = (Storage(0, "parameters", 4 * MIB - 100, 0x1000_0000), Storage(0, "gradients", 1000, 0x2000_0000))
    return Attribution(owners, storages, 0, 0)


def test_cuda_lines_split_allocated_and_reserved_exactly() -> None:
    blocks = {
        0x1000_0000: Block(0x1000_0000, 4 * MIB, requested_bytes=4 * MIB - 100),
        0x2000_0000: Block(0x2000_0000, 1024, requested_bytes=1000),
        0x3000_0000: Block(0x3000_0000, 32 * MIB, requested_bytes=32 * MIB),  # a workspace
        0x4000_0000: Block(0x4000_0000, 512, requested_bytes=8),  # held by C++ only
    }
    allocated = sum(b.size_bytes for b in blocks.values())
    total, source, lines, notes = cuda_lines(
        _attribution(),
        blocks,
        allocated=allocated,
        reserved=allocated + 10 * MIB,
        stranded=(1, 2 * MIB),
        workspace_sizes=frozenset({32 * MIB}),
        process_used=allocated + 10 * MIB + 500 * MIB,
        context=480 * MIB,
    )
    by = {(line.category, line.holder): line for line in lines}
    tensors = [line for line in lines if line.category == "tensors"]
    assert len(tensors) == 1 and tensors[0].nbytes == 4 * MIB + 1024 and tensors[0].storage_bytes == 4 * MIB + 900
    assert tensors[0].roles == (("parameters", 4 * MIB), ("gradients", 1024))
    assert [line.nbytes for line in lines if line.category == "workspace"] == [32 * MIB]
    assert [line.nbytes for line in lines if line.category == "uncovered blocks"] == [512]
    assert (
        sum(line.nbytes for line in lines if line.category in ("tensors", "workspace", "uncovered blocks")) == allocated
    )
    cached = [line.nbytes for line in lines if line.category == "cached free"]
    assert cached == [2 * MIB, 8 * MIB]
    assert by["context", lines[-3].holder].nbytes == 480 * MIB
    assert lines[-2].category == "outside torch" and lines[-2].nbytes == 20 * MIB
    assert lines[-1].category == "residual" and lines[-1].nbytes == 0
    assert total == sum(line.nbytes for line in lines) and source.startswith("NVML")
    assert notes == []


def test_cuda_lines_without_nvml_total_reserved_and_say_so() -> None:
    total, source, lines, notes = cuda_lines(
        _attribution(), None, allocated=5 * MIB, reserved=8 * MIB, stranded=None,
        workspace_sizes=frozenset(), process_used=None, context=None,
    )  # fmt: skip
    assert total == 8 * MIB and "reserved" in source
    assert sum(line.nbytes for line in lines) == total
    assert any("NVML" in note for note in notes) and any("block list" in note for note in notes)


@pytest.mark.gpu
def test_gpu_ledger_tensors_equal_allocated_less_workspaces_and_reserved_splits_exactly() -> None:
    global HELD
    device = torch.device("cuda", torch.cuda.current_device())
    HELD = torch.ones(3_000_001, device=device)
    a = torch.randn(256, 256, device=device)
    (a @ a).sum().item()  # a cuBLAS workspace
    del a
    try:
        ledger = vramguard.explain(device)
        allocated = torch.cuda.memory_allocated(device)
        reserved = torch.cuda.memory_reserved(device)
        held = [line for line in ledger.lines if line.holder == f"global {__name__}.HELD"]
        assert len(held) == 1 and held[0].storage_bytes == 3_000_001 * 4, ledger.lines
        in_blocks = ("tensors", "workspace", "uncovered blocks")
        assert sum(line.nbytes for line in ledger.lines if line.category in in_blocks) == allocated
        assert sum(line.nbytes for line in ledger.lines if line.category == "cached free") == reserved - allocated
        assert ledger.lines_of("workspace"), ledger.lines
        assert sum(line.nbytes for line in ledger.lines) == ledger.total_bytes
        if ledger.total_source.startswith("NVML"):
            assert ledger.lines_of("context") and ledger.residual_bytes == 0, ledger.lines
    finally:
        HELD = None


@pytest.mark.gpu
def test_gpu_ledger_creates_no_context_in_a_fresh_process(tmp_path: Any) -> None:
    import subprocess
    import sys

    code = (
        "import torch, vramguard\n"
        "ledger = vramguard.explain('cuda')\n"
        "assert not torch.cuda.is_initialized()\n"
        "assert not ledger.lines_of('tensors')\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
