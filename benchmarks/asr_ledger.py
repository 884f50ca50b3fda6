"""The ASR + diarization pipeline's memory as three ledgers (``vramguard.explain``), on the host:
loaded and run once, after ``release_resources()``, and after a reference leaked on purpose.

    .venv/bin/python benchmarks/asr_ledger.py [--size tiny|base] [--plot docs/img/asr-ledger-cpu.png]

One process: the models are vramguard.asr.testing's random-weight builds (written to a
temporary folder), the pipeline is loaded on the CPU and run once on the bundled 8.8 s WAV
(greedy, 8 tokens, one temperature: Whisper's mapped weights are then resident, as in a server
that has served), and the ledger is taken; ``release_resources()``, and the ledger again; then a
second pipeline is loaded and run, its Whisper model kept in the module's global ``LEAKED`` (the
server's mistake) before ``release_resources()``, and the third ledger shows who holds it. The
release's own ``survivors`` stay empty there: it watches the two pipeline objects it dropped, not
a model inside one. The leak is dropped before :func:`take_ledgers` returns.

Prints the three ledgers as text; ``--plot`` draws them as three bars (``plot_ledgers``). Figures
from the host say nothing about a GPU; ``--device cuda`` is not offered, the CUDA ledger has its
own gpu tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

import vramguard
from vramguard.report.ledger_text import ledger_text

STAGES = ("loaded, run once", "after release_resources()", "a reference leaked")
LEAKED: dict[str, Any] = {}
"""Where the third stage keeps the Whisper model, as a server's module-level cache would."""
GENERATE = {"max_new_tokens": 8, "num_beams": 1, "temperature": 0.0}
"""Greedy, capped, one temperature: random weights would otherwise run to 448 tokens and fall back."""


@dataclass(frozen=True)
class PipelineLedgers:
    """The three ledgers, and what the leak held: its holder as the ledger names it and the exact
    storage bytes of the leaked model's tensors (counted from the model, not from the ledger)."""

    loaded: vramguard.MemoryLedger
    released: vramguard.MemoryLedger
    leaked: vramguard.MemoryLedger
    leaked_holder: str
    leaked_storage_bytes: int

    def stages(self) -> Iterator[tuple[str, vramguard.MemoryLedger]]:
        yield from zip(STAGES, (self.loaded, self.released, self.leaked), strict=True)


def storage_bytes(module: torch.nn.Module) -> int:
    """The bytes of the storages under ``module``'s parameters and buffers, each storage once."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum({t.untyped_storage()._cdata: t.untyped_storage().nbytes() for t in tensors}.values())


def _load_and_run(models: Path, audio: Path) -> Any:
    from vramguard.asr import ASRDiarizationPipeline

    pipe = ASRDiarizationPipeline.from_pretrained(
        models / "whisper", models / "diarizer", device="cpu", generate_kwargs=GENERATE
    )
    pipe(audio)
    return pipe


def take_ledgers(models: Path, *, size: Literal["tiny", "base"] = "tiny") -> PipelineLedgers:
    """Build the models under ``models``, then take the three ledgers in this process."""
    from vramguard.asr.testing import build_tiny_diarizer, build_tiny_whisper, sample_audio_path

    build_tiny_whisper(models / "whisper", size=size)
    build_tiny_diarizer(models / "diarizer", size=size)
    audio = sample_audio_path()
    pipe = _load_and_run(models, audio)
    loaded = vramguard.explain("cpu")
    pipe.release_resources()
    released = vramguard.explain("cpu")
    pipe = _load_and_run(models, audio)
    LEAKED["whisper"] = pipe.asr_pipeline.model
    pipe.release_resources()
    try:
        leaked = vramguard.explain("cpu")
        held = storage_bytes(LEAKED["whisper"])
    finally:
        LEAKED.clear()
        del pipe
        gc.collect()
    return PipelineLedgers(loaded, released, leaked, f"global {__name__}.LEAKED['whisper']", held)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size", choices=("tiny", "base"), default="tiny", help="the models' size (default: tiny)")
    parser.add_argument("--plot", type=Path, help="draw the three ledgers as three bars into this PNG")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="asr-ledger-") as scratch:
        result = take_ledgers(Path(scratch), size=args.size)
    for stage, ledger in result.stages():
        print(f"--- {stage} ---")
        print(ledger_text(ledger))
    print(f"the leaked Whisper: {result.leaked_storage_bytes} B of tensors, held by {result.leaked_holder}")
    if args.plot is not None:
        from vramguard.report.ledger_plot import plot_ledgers

        # plot_ledgers names each bar by its ledger's device: all three are the host here.
        bars = [dataclasses.replace(ledger, device=f"cpu: {stage}") for stage, ledger in result.stages()]
        print(f"wrote {plot_ledgers(bars, args.plot)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
