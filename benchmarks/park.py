"""Park and wake against reloading and keeping resident, side by side in one run.

    .venv/bin/python benchmarks/park.py [--sizes tiny base] [--files 10] [--repeats 3] [--rounds 3] [--no-pipeline]

For each Whisper size (random weights, built from config by vramguard.asr.testing): the time of
``from_pretrained`` (a reload from disk), of park and wake to ``"cpu"`` and to ``"disk"``, and
the resident memory (RSS) before the load, loaded, and between uses; then the ASR pipeline over
``--files`` copies of the bundled audio in resident, staged and swap mode: time per file and the
peak resident set above the level before loading (the kernel's VmHWM), each mode in a fresh
process after one warm-up file, ``--rounds`` times, the modes interleaved; the medians. Prints
the ratios the goals are stated in (docs/parking.md). Host figures on a host.
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
        # From disk, only the first park writes; the later ones find the file their wake mapped
        # unwritten and keep it (vramguard/parking/_reuse.py).
        row[f"park_{to}_first_s"] = parks[0]
        row[f"wake_{to}_s"] = statistics.median(wakes)
        row[f"between_{to}_mib"] = statistics.median(between) / MiB
    print(
        f"whisper-{size}: from_pretrained {load_s * 1000:.0f} ms | "
        f"park/wake cpu {row['park_cpu_s'] * 1000:.1f}/{row['wake_cpu_s'] * 1000:.1f} ms | "
        f"park/wake disk {row['park_disk_first_s'] * 1000:.1f} (first: a write), "
        f"{row['park_disk_s'] * 1000:.1f} (median)/{row['wake_disk_s'] * 1000:.1f} ms | "
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


def pipeline_child(folder: Path, mode: str, files: int) -> None:
    """One mode in this (fresh) process: load, one unmeasured warm-up file, then ``files`` files
    timed; prints one JSON line (seconds per file, peak RSS above the level before loading)."""
    import json

    from vramguard.asr import ASRDiarizationPipeline
    from vramguard.asr.testing import sample_audio_path

    gc.collect()
    malloc_trim()
    start_rss = rss()
    pipe = ASRDiarizationPipeline.from_pretrained(
        folder / "whisper-tiny", folder / "diarizer", device="cpu", mode=mode,  # type: ignore[arg-type]
        generate_kwargs={"max_new_tokens": 40, "num_beams": 1},
    )  # fmt: skip
    pipe.map([sample_audio_path()], progress=False)  # lazy one-time work is no mode's cost
    reset_resident_peak()
    start = time.perf_counter()
    pipe.map([sample_audio_path()] * files, progress=False)
    per_file = (time.perf_counter() - start) / files
    peak = read_resident_peak().hwm_bytes or 0
    pipe.release_resources()
    print(json.dumps({"per_file_s": per_file, "peak_mib": (peak - start_rss) / MiB}))


def pipeline_rows(folder: Path, files: int, rounds: int) -> dict[str, tuple[float, float]]:
    """Each mode in a fresh process per round, the modes interleaved round by round (so a drift
    of the machine's load touches all alike): the median time per file and peak of each."""
    import json
    import subprocess
    import sys

    from vramguard.asr.testing import build_tiny_diarizer

    build_tiny_diarizer(folder / "diarizer", force_speech=True)
    runs: dict[str, list[tuple[float, float]]] = {mode: [] for mode in ("staged", "swap", "resident")}
    for _ in range(rounds):
        for mode, found in runs.items():
            command = [sys.executable, __file__, "--pipeline-child", mode, "--folder", str(folder)]
            command += ["--files", str(files)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            found.append((row["per_file_s"], row["peak_mib"]))
    medians: dict[str, tuple[float, float]] = {}
    for mode, found in runs.items():
        times = [t for t, _ in found]
        medians[mode] = (statistics.median(times), statistics.median(p for _, p in found))
        spread = f" ({min(times):.2f}-{max(times):.2f})" if len(times) > 1 else ""
        print(f"pipeline {mode:<8}: {medians[mode][0]:.2f} s per file{spread}, peak RSS +{medians[mode][1]:.0f} MiB")
    (swap_s, swap_peak), (res_s, _), (_, staged_peak) = medians["swap"], medians["resident"], medians["staged"]
    print(
        f"  swap time per file {swap_s / res_s:.2f}x resident (goal <= 1.2x); "
        f"swap peak {swap_peak / staged_peak:.2f}x staged (goal <= 1.1x); "
        f"median of {rounds} fresh process(es) per mode, {files} files each after a warm-up file"
    )
    return medians


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "base"], choices=["tiny", "base"])
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-pipeline", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="fresh processes per pipeline mode (default: 3)")
    parser.add_argument("--pipeline-child", choices=["staged", "swap", "resident"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    if args.pipeline_child:
        pipeline_child(args.folder, args.pipeline_child, args.files)
        return 0
    from vramguard.asr.testing import build_tiny_whisper

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for size in args.sizes:
            whisper_row(size, build_tiny_whisper(folder / f"whisper-{size}", size=size), args.repeats)  # type: ignore[arg-type]
        if not args.no_pipeline:
            if "tiny" not in args.sizes:
                build_tiny_whisper(folder / "whisper-tiny")
            pipeline_rows(folder, args.files, args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
