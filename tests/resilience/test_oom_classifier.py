"""Which errors are out-of-memory: by type where torch gives one (``torch.OutOfMemoryError``,
``MemoryError``, ``torch.AcceleratorError`` with CUDA's out-of-memory code), and by a CUDA
library's allocation-failure status name only in a plain ``RuntimeError`` (cuBLAS, cuSOLVER
and cuDNN failures, whose texts come from aten/src/ATen/cuda/Exceptions.h)."""

from __future__ import annotations

import pytest
import torch

import vramguard
from vramguard.resilience import is_out_of_memory

CUBLAS = "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"
CUSOLVER = "cusolver error: CUSOLVER_STATUS_ALLOC_FAILED, when calling `cusolverDnCreate(handle)`. If you keep ..."
CUDNN = "cuDNN error: CUDNN_STATUS_ALLOC_FAILED"


def accelerator_error(code: int) -> BaseException:
    error = torch.AcceleratorError("CUDA error: out of memory")
    error.error_code = code  # type: ignore[attr-defined]  # set by torch::detail::_new_accelerator_error_object
    return error


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        torch.cuda.OutOfMemoryError("the same class"),
        MemoryError(),
        vramguard.BudgetExceeded("hard budget", budget_bytes=1, requested_bytes=2, in_use_bytes=0),
        RuntimeError(CUBLAS),
        RuntimeError(CUSOLVER),
        RuntimeError(CUDNN),
        accelerator_error(2),
    ],
    ids=["torch-oom", "cuda-oom-alias", "memory-error", "budget", "cublas", "cusolver", "cudnn", "accelerator-oom"],
)
def test_out_of_memory(error: BaseException) -> None:
    assert is_out_of_memory(error)


class MyError(RuntimeError):
    pass


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),  # the allocator's text without its type
        RuntimeError("CUDA error: CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasSgemm(...)`"),
        RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory"),
        MyError(CUBLAS),  # a user's subclass: its own type decides
        ValueError(CUBLAS),
        accelerator_error(700),  # cudaErrorIllegalAddress: the context is lost, no retry helps
        KeyboardInterrupt(),
    ],
    ids=["allocator-text", "cublas-other", "cpu-allocator", "subclass", "value-error", "illegal-address", "ctrl-c"],
)
def test_not_out_of_memory(error: BaseException) -> None:
    assert not is_out_of_memory(error)


def test_adaptive_batch_retries_a_cublas_allocation_failure() -> None:
    calls: list[int] = []

    @vramguard.adaptive_batch(start=64, device="cpu")
    def step(batch_size: int) -> int:
        calls.append(batch_size)
        if batch_size > 16:
            raise RuntimeError(CUBLAS)
        return batch_size

    assert step() == 16
    assert calls == [64, 32, 16]
