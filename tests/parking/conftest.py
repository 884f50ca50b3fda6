"""Modules for the park tests: every dtype, tied weights, views, buffers, hooks."""

from __future__ import annotations

import hashlib

import pytest
import torch

DTYPES = (
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.complex64,
    torch.complex128,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.uint8,
    torch.bool,
)


class Zoo(torch.nn.Module):
    """Tied weights, a view buffer into a parameter's storage's sibling, every dtype as a buffer."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.emb = torch.nn.Embedding(16, 8)
        self.head = torch.nn.Linear(8, 16, bias=True)
        self.head.weight = self.emb.weight  # tied
        self.norm = torch.nn.LayerNorm(8)
        self.bn = torch.nn.BatchNorm1d(8)
        base = torch.randn(40, generator=gen)
        self.register_buffer("whole", base)
        self.register_buffer("window", base[8:24].view(4, 4))  # a view: shares the storage
        for dtype in DTYPES:
            raw = torch.randint(0, 100, (3, 5), generator=gen)
            value = raw.to(dtype) if not dtype.is_complex else torch.complex(raw.float(), -raw.float()).to(dtype)
            self.register_buffer(f"b_{str(dtype).removeprefix('torch.')}", value)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.norm(self.emb(ids)))
        return out


def checksum(module: torch.nn.Module) -> dict[str, str]:
    """sha256 of each tensor's bytes, by state-dict name."""
    sums = {}
    for name, tensor in module.state_dict(keep_vars=True).items():
        data = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        sums[name] = hashlib.sha256(data + str(tensor.dtype).encode() + str(tuple(tensor.shape)).encode()).hexdigest()
    return sums


@pytest.fixture
def zoo(device: str) -> Zoo:
    return Zoo().to(device)
