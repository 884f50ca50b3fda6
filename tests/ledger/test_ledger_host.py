"""The host ledger on real allocations: planted holders found with their exact bytes, and the
lines adding up to the resident set with the residual stated."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
import torch

import vramguard
from vramguard.ledger._records import MemoryLedger

HELD: Any = None
OPTIMIZER: Any = None
MODEL: Any = None
CLOSURE: Any = None
MAPPED: Any = None


def _bytes(*tensors: torch.Tensor) -> int:
    return sum({t.untyped_storage()._cdata: t.untyped_storage().nbytes() for t in tensors}.values())


def _one(ledger: MemoryLedger, holder: str) -> vramguard.LedgerLine:
    found = [line for line in ledger.lines if line.holder == holder]
    assert len(found) == 1, (holder, [line.holder for line in ledger.lines])
    return found[0]


@functools.lru_cache(maxsize=4)
def cached_table(n: int) -> torch.Tensor:
    return torch.full((n,), 3.0)


def _closure(n: int) -> Any:
    weights = torch.ones(n)
    return lambda: weights.sum()


def test_lines_add_up_to_the_resident_set_with_the_residual_last() -> None:
    ledger = vramguard.explain("cpu")
    assert ledger.device == "cpu"
    assert sum(line.nbytes for line in ledger.lines) == ledger.total_bytes
    assert ledger.lines[-1].category == "residual"
    assert ledger.residual_bytes == ledger.lines[-1].nbytes
    categories = {line.category for line in ledger.lines}
    assert {"code", "malloc in use", "malloc free", "Python objects"} <= categories
    assert ledger.residual_fraction is not None and ledger.residual_fraction <= 0.05, ledger.lines


def test_a_global_a_closure_and_an_lru_cache_are_found_with_their_exact_bytes() -> None:
    global HELD, CLOSURE
    HELD = torch.ones(300_001)
    CLOSURE = _closure(200_003)
    cached = cached_table(100_007)
    expected_cache = _bytes(cached)
    del cached
    try:
        ledger = vramguard.explain("cpu")
        assert _one(ledger, f"global {__name__}.HELD").nbytes == 300_001 * 4
        closure = [line for line in ledger.lines if line.category == "tensors" and "CLOSURE" in line.holder]
        assert len(closure) == 1 and closure[0].nbytes == 200_003 * 4, closure
        assert "del the global" in closure[0].returned_by
        cache = [line for line in ledger.lines if line.category == "tensors" and "cached_table" in line.holder]
        assert len(cache) == 1 and cache[0].nbytes == expected_cache, [x.holder for x in ledger.lines]
        assert sum(line.nbytes for line in ledger.lines) == ledger.total_bytes
    finally:
        HELD = CLOSURE = None
        cached_table.cache_clear()


def test_a_model_and_its_adamw_state_are_two_lines_split_by_role() -> None:
    global MODEL, OPTIMIZER
    MODEL = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.LayerNorm(256), torch.nn.Linear(256, 8))
    MODEL.register_buffer("scale", torch.ones(1000))
    OPTIMIZER = torch.optim.AdamW(MODEL.parameters())
    MODEL(torch.randn(4, 64)).sum().backward()
    OPTIMIZER.step()
    try:
        parameters = list(MODEL.parameters())
        state = [v for s in OPTIMIZER.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
        ledger = vramguard.explain("cpu")
        model = _one(ledger, f"global {__name__}.MODEL")
        assert model.role_bytes("parameters") == _bytes(*parameters)
        assert model.role_bytes("gradients") == _bytes(*(p.grad for p in parameters if p.grad is not None))
        assert model.role_bytes("buffers") == 4000
        assert model.nbytes == model.storage_bytes == sum(n for _, n in model.roles)
        optimizer = _one(ledger, f"global {__name__}.OPTIMIZER")
        assert optimizer.roles == (("optimizer state", _bytes(*state)),)
        assert "AdamW" in (optimizer.detail or "")
    finally:
        MODEL = OPTIMIZER = None


@pytest.mark.parametrize("how", ["safetensors", "torch.load"])
def test_a_memory_mapped_checkpoint_is_a_mapped_file_line_held_by_its_global(tmp_path: Path, how: str) -> None:
    global MAPPED
    weights = {"a": torch.arange(262_144, dtype=torch.float32), "b": torch.ones(65_536, dtype=torch.float64)}
    if how == "safetensors":
        safetensors_torch = pytest.importorskip("safetensors.torch")
        path = tmp_path / "model.safetensors"
        safetensors_torch.save_file(weights, str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            MAPPED = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    else:
        path = tmp_path / "model.pt"
        torch.save(weights, path)
        MAPPED = torch.load(path, mmap=True)
    try:
        assert sum(float(t.sum()) for t in MAPPED.values()) > 0  # touch every page
        ledger = vramguard.explain("cpu")
        lines = [line for line in ledger.lines if line.category == "mapped file" and line.detail == str(path)]
        assert len(lines) == 1, [(x.category, x.detail) for x in ledger.lines]
        line = lines[0]
        assert line.storage_bytes == 262_144 * 4 + 65_536 * 8
        assert line.storage_bytes <= line.nbytes <= path.stat().st_size + 4096
        assert f"global {__name__}.MAPPED" in line.holder
        assert not [x for x in ledger.lines if x.category == "tensors" and "MAPPED" in x.holder], "counted twice"
    finally:
        MAPPED = None


def test_json_round_trip_and_text() -> None:
    from vramguard.report.ledger_text import ledger_text

    ledger = vramguard.explain("cpu")
    again = vramguard.MemoryLedger.from_dict(json.loads(json.dumps(ledger.to_dict())))
    assert again == ledger
    text = ledger_text(ledger)
    assert text.splitlines()[0].startswith("vramguard explain: cpu, ")
    assert text.splitlines()[-1 - len(ledger.notes)].startswith("residual")


def test_a_bad_document_and_a_bad_device_are_refused() -> None:
    with pytest.raises(vramguard.ReportFormatError):
        vramguard.MemoryLedger.from_dict({"format": "something else"})
    with pytest.raises(vramguard.InvalidArgument):
        vramguard.explain("tpu")
    with pytest.raises(vramguard.InvalidArgument):
        vramguard.mark("")
