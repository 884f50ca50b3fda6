"""Park and wake against reloading and keeping resident, side by side in one run.

    .venv/bin/python benchmarks/park.py [--sizes tiny base] [--files 10] [--repeats 3] [--no-pipeline]

For each Whisper size (random weights, built from config by vramguard.asr.testing): the time of
``from_pretrained`` (a reload from disk), of park and wake to ``"cpu"`` and to ``"disk"``, and
the resident memory (RSS) before the load, loaded, and between uses; then the ASR pipeline over
``--files`` copies of the bundled audio in resident, staged and swap mode: time per file and the
peak resident set (the kernel's VmHWM, reset per mode; staged runs first, so later modes start
warm). Prints the ratios the goals are stated in (docs/parking.md). Host figures on a host.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


import vramguard
from vramguard.probes import malloc_trim, read_resident_peak, reset_resident_peak, resident_bytes

MiB = 2**20


def rss() -> int:
    gc.collect()
    malloc_trim()
    reading = resident_bytes()
    return 0 if reading is None else reading[0]


def timed(action: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def whisper_row(size: str, folder: Path, repeats: int) -> dict[str, float]:
    from transformers import WhisperForConditionalGeneration

    start_rss = rss()
    load_s, model = timed(lambda: WhisperForConditionalGeneration.from_pretrained(folder), repeats)
    gc.collect()
    loaded = rss()
    row: dict[str, float] = {"load_s": load_s, "before_mib": start_rss / MiB, "loaded_mib": loaded / MiB}
    for to in ("cpu", "disk"):
        parks, wakes, between = [], [], []
        for _ in range(repeats):
            handle = vramguard.park(model, to=to)  # type: ignore[arg-type]
            assert handle.report is not None
            parks.append(handle.report.duration_s)
            between.append(rss())
            wakes.append(vramguard.wake(handle).duration_s)
        row[f"park_{to}_s"] = statistics.median(parks)
        row[f"wake_{to}_s"] = statistics.median(wakes)
        row[f"between_{to}_mib"] = statistics.median(between) / MiB
    print(
        f"whisper-{size}: from_pretrained {load_s * 1000:.0f} ms | "
        f"park/wake cpu {row['park_cpu_s'] * 1000:.1f}/{row['wake_cpu_s'] * 1000:.1f} ms | "
        f"park/wake disk {row['park_disk_s'] * 1000:.1f}/{row['wake_disk_s'] * 1000:.1f} ms | "
        f"RSS before load {row['before_mib']:.0f} MiB, loaded {row['loaded_mib']:.0f}, between uses: "
        f"resident {row['loaded_mib']:.0f}, cpu {row['between_cpu_mib']:.0f}, disk {row['between_disk_mib']:.0f}"
    )
    print(
        f"  wake from cpu is {load_s / row['wake_cpu_s']:.0f}x faster than from_pretrained (goal >= 10x); "
        f"from disk {load_s / row['wake_disk_s']:.0f}x; RSS between uses with disk is "
        f"{100 * (row['between_disk_mib'] / row['before_mib'] - 1):+.1f}% of before the load (goal within 5%)"
    )
    del model
    return row


def pipeline_rows(folder: Path, files: int) -> dict[str, tuple[float, float]]:
    from vramguard.asr import ASRDiarizationPipeline
    from vramguard.asr.testing import build_tiny_diarizer, sample_audio_path

    diarizer = build_tiny_diarizer(folder / "diarizer", force_speech=True)
    sources = [sample_audio_path()] * files
    found: dict[str, tuple[float, float]] = {}
    for mode in ("staged", "swap", "resident"):
        gc.collect()
        malloc_trim()
        reset_resident_peak()
        pipe = ASRDiarizationPipeline.from_pretrained(
            folder / "whisper-tiny", diarizer, device="cpu", mode=mode,  # type: ignore[arg-type]
            generate_kwargs={"max_new_tokens": 40, "num_beams": 1},
        )
        start = time.perf_counter()
        pipe.map(sources, progress=False)
        per_file = (time.perf_counter() - start) / files
        peak = read_resident_peak().hwm_bytes or 0
        pipe.release_resources()
        found[mode] = (per_file, peak / MiB)
        print(f"pipeline {mode:<8}: {per_file:.2f} s per file, peak RSS {peak / MiB:.0f} MiB")
    (swap_s, swap_peak), (res_s, _), (_, staged_peak) = found["swap"], found["resident"], found["staged"]
    print(
        f"  swap time per file {swap_s / res_s:.2f}x resident (goal <= 1.2x); "
        f"swap peak {swap_peak / staged_peak:.2f}x staged (goal <= 1.1x)"
    )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "base"], choices=["tiny", "base"])
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-pipeline", action="store_true")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    from vramguard.asr.testing import build_tiny_whisper

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for size in args.sizes:
            whisper_row(size, build_tiny_whisper(folder / f"whisper-{size}", size=size), args.repeats)  # type: ignore[arg-type]
        if not args.no_pipeline:
            if "tiny" not in args.sizes:
                build_tiny_whisper(folder / "whisper-tiny")
            pipeline_rows(folder, args.files)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
