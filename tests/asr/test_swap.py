"""Swap mode: both models loaded once, the idle one parked per file; results as resident mode's."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.asr.conftest import GENERATE
from vramguard.asr import ASRDiarizationPipeline

pytestmark = pytest.mark.slow


def test_swap_maps_files_like_resident_and_parks_between_uses(
    tiny_whisper: Path, tiny_diarizer: Path, sample_audio: Path
) -> None:
    with ASRDiarizationPipeline.from_pretrained(
        tiny_whisper, tiny_diarizer, device="cpu", mode="swap", generate_kwargs=GENERATE
    ) as swap:
        # After loading, both models are parked: their weights hold no memory.
        assert set(swap._parked) == {"asr", "diarizer"}
        assert all(p.numel() == 0 for p in swap.asr_pipeline.model.parameters())
        results = swap.map([sample_audio, sample_audio], progress=False)
        run = swap.last_reports[-1]
        assert set(swap._parked) == {"asr", "diarizer"}  # parked again between calls
        # Inference only reads the weights: each model woken from its file parks again onto it,
        # writing nothing (vramguard/parking/_reuse.py checks the pages, not a promise).
        assert all("wrote nothing" in " ".join(h.report.notes) for h in swap._parked.values())
        single = swap(sample_audio)
    with ASRDiarizationPipeline.from_pretrained(
        tiny_whisper, tiny_diarizer, device="cpu", generate_kwargs=GENERATE
    ) as resident:
        expected = resident(sample_audio)
    assert [r.ok for r in results] == [True, True]
    assert results[0].segments == expected and single == expected
    marks = [n for n in run.notes if n.startswith(("park ", "wake "))]
    # Per file: wake asr, park asr + wake diarizer; at the end the diarizer is parked again.
    assert sum(n.startswith("wake ") for n in marks) == 4
    assert all("-> disk" in n or "disk " in n for n in marks)


def test_swap_over_devices_runs_swap_in_each_worker(
    tiny_whisper: Path, tiny_diarizer: Path, sample_audio: Path
) -> None:
    """A worker of ``map(devices=...)`` runs the pipeline's mode: swap, not staged in its place."""
    with ASRDiarizationPipeline.from_pretrained(
        tiny_whisper, tiny_diarizer, device="cpu", mode="swap", generate_kwargs=GENERATE
    ) as swap:
        [result] = swap.map([sample_audio], devices=["cpu"], progress=False)
        names = [r.name for r in swap.last_reports]
    assert result.ok and result.segments
    assert names == ["load asr", "load diarizer", "swap run"], names


def test_the_cli_runs_swap_mode_a_call_per_file(
    tiny_whisper: Path, tiny_diarizer: Path, sample_audio: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vramguard.cli import main

    models = ["--asr-model", str(tiny_whisper), "--diarizer-model", str(tiny_diarizer)]
    fast = ["--max-new-tokens", "20", "--num-beams", "1", "--device", "cpu", "--no-progress"]
    assert main(["asr", str(sample_audio), str(sample_audio), *models, *fast, "--mode", "swap"]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("==> ") == 2 and "SPEAKER_00:" in captured.out
    assert "memory on cpu (swap mode):" in captured.err
    assert "swap run" in captured.err and "load diarizer" in captured.err
