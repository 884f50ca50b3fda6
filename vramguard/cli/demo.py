"""``vramguard demo``: a small transformer run twice, with a bare ``del`` and inside a session."""

from __future__ import annotations

import argparse

import torch

from vramguard._records import SessionReport
from vramguard._session import gpu_session
from vramguard._sizes import format_size
from vramguard.probes import resolve_device

HELP = "run a small transformer twice (bare del, then a vramguard session) and show what came back"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help='"auto", "cpu", "cuda" or "cuda:N" (default: auto)')
    parser.add_argument("--layers", type=int, default=6, help="encoder layers (default: 6)")
    parser.add_argument("--steps", type=int, default=3, help="forward passes per run (default: 3)")


def build_model(layers: int, device: torch.device) -> torch.nn.Module:
    """A small transformer encoder (d_model 512, 8 heads, ffn 2048), built locally."""
    layer = torch.nn.TransformerEncoderLayer(d_model=512, nhead=8, dim_feedforward=2048, batch_first=True)
    return torch.nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False).to(device)


def workload(model: torch.nn.Module, device: torch.device, steps: int) -> torch.Tensor:
    """A few inference passes over random token embeddings."""
    out = torch.empty(0)
    with torch.inference_mode():
        for _ in range(steps):
            x = torch.randn(8, 128, 512, device=device)
            out = model(x)
    return out


def run_bare(layers: int, device: torch.device, steps: int) -> SessionReport:
    """What users do today: ``del model, out`` and nothing else (measured, not released)."""
    with gpu_session("bare del", device=device, release=False, leaks="ignore", census=False) as session:
        model = build_model(layers, device)
        out = workload(model, device, steps)
        del model, out
    assert session.report is not None
    return session.report


def run_guarded(layers: int, device: torch.device, steps: int) -> SessionReport:
    """The same work inside a session that owns the model and releases it in order."""
    with gpu_session("vramguard", device=device, leaks="warn") as session:
        model = session.own(build_model(layers, device))
        out = workload(model, device, steps)
        del model, out
    assert session.report is not None
    return session.report


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    bare = run_bare(args.layers, device, args.steps)
    guarded = run_guarded(args.layers, device, args.steps)
    print(bare)
    print()
    print(guarded)
    print()
    print(
        f"after a bare del, {format_size(bare.cached_bytes_after)} stayed cached "
        f"({format_size(bare.after.reserved_bytes)} reserved); after the session, "
        f"{format_size(guarded.cached_bytes_after)} ({format_size(guarded.after.reserved_bytes)} reserved)."
    )
    return 0
