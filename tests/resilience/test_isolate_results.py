"""An isolated call's result comes back without the parent calling into CUDA: the child pickles
it with every CUDA storage moved to the CPU first (a CUDA storage unpickles through
``torch.load`` onto the parent's GPU, creating the context isolation exists to avoid).

CUDA tensors cannot be made here; the pickler takes the device type to move, so its walk (every
storage, however deep and in whatever container) is tested on CPU storages."""

from __future__ import annotations

import collections
import dataclasses
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

from vramguard.resilience._transfer import dumps_result


class ModelOutputLike(collections.OrderedDict[str, Any]):
    """transformers' ``ModelOutput`` is an ``OrderedDict`` subclass with attribute access."""


@dataclasses.dataclass
class Batch:
    logits: torch.Tensor
    extra: dict[str, Any]


def nested_result() -> tuple[Batch, list[Any]]:
    base = torch.arange(12, dtype=torch.float32)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    output = ModelOutputLike(hidden=torch.ones(2, 3), loss=torch.tensor(0.5))
    extra = {"model": model, "output": output, "view": base.view(3, 4)[:, 1], "param": torch.nn.Parameter(base[:2])}
    return Batch(base[4:8], extra), [torch.zeros(5, dtype=torch.int64), ("deep", [{"t": torch.eye(2)}])]


def recording(moved: list[int]) -> Any:
    def move(storage: Any) -> Any:
        untyped = storage._untyped_storage if isinstance(storage, torch.TypedStorage) else storage
        moved.append(untyped.nbytes())
        return storage

    return move


def test_every_storage_of_the_device_type_passes_through_the_move_however_deep() -> None:
    result = nested_result()
    moved: list[int] = []
    back = pickle.loads(dumps_result(result, device_type="cpu", move=recording(moved)))
    # logits and view share `base` (48 bytes) but pickle each tensor's storage on its own, as torch does
    expected = [48, 24, 8, 24, 4, 48, 48, 40, 16]
    assert sorted(moved) == sorted(expected)
    batch, rest = back
    assert torch.equal(batch.logits, result[0].logits)
    assert isinstance(batch.extra["output"], ModelOutputLike)
    assert torch.equal(batch.extra["output"]["hidden"], torch.ones(2, 3))
    assert isinstance(batch.extra["param"], torch.nn.Parameter) and batch.extra["param"].requires_grad
    assert isinstance(batch.extra["model"][0].weight, torch.nn.Parameter)
    assert batch.extra["view"].stride() == (4,) and torch.equal(batch.extra["view"], result[0].extra["view"])
    assert torch.equal(rest[1][1][0]["t"], torch.eye(2))


def test_storages_of_another_device_type_are_left_alone() -> None:
    moved: list[int] = []
    batch, _ = pickle.loads(dumps_result(nested_result(), device_type="cuda", move=recording(moved)))
    assert moved == []
    assert torch.equal(batch.logits, torch.arange(4.0, 8.0))


def test_the_default_move_copies_to_the_cpu_keeping_the_storage_kind() -> None:
    from vramguard.resilience._transfer import _to_cpu

    tensor = torch.arange(4, dtype=torch.float16)
    typed = torch.TypedStorage(wrap_storage=tensor.untyped_storage(), dtype=tensor.dtype, _internal=True)
    copied = _to_cpu(typed)
    assert isinstance(copied, torch.TypedStorage) and copied.dtype == torch.float16
    assert copied._untyped_storage.device.type == "cpu"
    assert isinstance(_to_cpu(tensor.untyped_storage()), torch.UntypedStorage)


PARENT = """
import torch

import vramguard
import result_maker

if __name__ == "__main__":
    outcome = vramguard.isolated(result_maker.make, {n}, device={device!r})
    value = outcome.value
    print(value.device.type, float(value.sum()), torch.cuda.is_initialized(), flush=True)
"""

MAKER = """
import torch


def make(n):
    device = "cuda" if torch.cuda.device_count() else "cpu"
    return torch.ones(n, device=device)
"""


def run_parent(tmp_path: Path, device: str, guard: str = "") -> list[str]:
    """Run a fresh parent interpreter (its CUDA state is its own) calling ``isolated``."""
    (tmp_path / "result_maker.py").write_text(MAKER)
    script = textwrap.dedent(guard) + PARENT.format(n=1000, device=device)
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.split()


@pytest.mark.slow
def test_the_parent_never_calls_into_cuda_to_receive_a_result(tmp_path: Path) -> None:
    """torch's lazy CUDA initialisation is made to fail in the parent: receiving the result,
    the report and the costs never reaches it."""
    guard = """
    import torch.cuda

    def refuse(*args, **kwargs):
        raise AssertionError("the parent called into CUDA")

    torch.cuda._lazy_init = refuse
    """
    assert run_parent(tmp_path, "cpu", guard) == ["cpu", "1000.0", "False"]


@pytest.mark.gpu
@pytest.mark.slow
def test_gpu_point10_a_cuda_result_comes_back_on_the_cpu_and_the_parent_creates_no_context(tmp_path: Path) -> None:
    """The child returns a CUDA tensor. It used to unpickle through ``torch.load`` onto the
    parent's GPU: ``torch.cuda.is_initialized()`` turned True in a parent documented never to
    touch the device."""
    assert run_parent(tmp_path, "cuda") == ["cpu", "1000.0", "False"]
