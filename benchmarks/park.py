"""Park and wake against reloading and keeping resident, side by side in one run.

    .venv/bin/python benchmarks/park.py [--device cpu|cuda] [--sizes tiny base] [--files 10] [--repeats 3]
        [--rounds 3] [--no-pipeline] [--quick] [--json out.json] [--markdown out.md]

For each Whisper size (random weights, built from config by vramguard.asr.testing): the time of
``from_pretrained`` (a reload from disk; on CUDA followed by ``.to(device)`` and a synchronize,
since a reload must copy every byte there), of park and wake to ``"cpu"`` and to ``"disk"``, and
the memory before the load, loaded, and between uses: the resident set (RSS) on the host; on
CUDA torch's reserved bytes and NVML's figure for this process (``process_used_bytes``). On
CUDA each model's bytes are also copied by hand, a plain ``copy_`` of one pinned host buffer of
the same size to the device and back (``torch.cuda.synchronize()`` after each), so that park's
and wake's bandwidths stand beside the device's pinned bandwidth measured in the same run.
Then the ASR pipeline over ``--files`` copies of the bundled audio in resident, staged and
swap mode: time per file and the peak above the level before loading (the kernel's VmHWM on the
host, torch's peak reserved bytes on CUDA), each mode in a fresh process after one warm-up
file, ``--rounds`` times, the modes interleaved; the medians. The pipeline's diarizer needs
pyannote.audio: without it the pipeline is skipped with a line saying so. Prints the ratios the
goals are stated in (docs/parking.md). Host figures on a host.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib.util
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

import torch
from bench_env import environment, label, resolve, write

import vramguard
from vramguard.probes import malloc_trim, read_resident_peak, reset_resident_peak, resident_bytes

MiB = 2**20
GB = 1e9
CPU = torch.device("cpu")


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


def _device_mib(device: torch.device) -> dict[str, float | None]:
    """Reserved (torch) and this process's (NVML) device memory, in MiB."""
    gc.collect()
    reading = vramguard.snapshot(device, uss=False)
    return {
        key: None if value is None else value / MiB
        for key, value in (("reserved", reading.reserved_bytes), ("process", reading.process_used_bytes))
    }


def pinned_copy(nbytes: int, device: torch.device, repeats: int) -> dict[str, float]:
    """Seconds of a plain ``copy_`` of ``nbytes`` between one pinned host buffer and the device,
    each way (the median of ``repeats`` after one untimed copy), and the bandwidths."""
    host = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    on_device = torch.empty(nbytes, dtype=torch.uint8, device=device)
    found: dict[str, float] = {}
    for name, target, source in (("h2d", on_device, host), ("d2h", host, on_device)):
        times = []
        for _ in range(repeats + 1):
            torch.cuda.synchronize(device)
            start = time.perf_counter()
            target.copy_(source, non_blocking=True)
            torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
        found[f"{name}_s"] = statistics.median(times[1:])
        found[f"{name}_bytes_per_s"] = nbytes / found[f"{name}_s"]
    del host, on_device
    torch.cuda.empty_cache()
    return found


def whisper_row(size: str, folder: Path, repeats: int, device: torch.device = CPU) -> dict[str, Any]:
    from transformers import WhisperForConditionalGeneration

    cuda = device.type == "cuda"

    def load() -> Any:
        model = WhisperForConditionalGeneration.from_pretrained(folder)
        if cuda:
            model = model.to(device)
            torch.cuda.synchronize(device)
        return model

    start_rss = rss()
    start_device = _device_mib(device) if cuda else None
    load_s, model = timed(load, repeats)
    gc.collect()
    loaded = rss()
    row: dict[str, Any] = {"load_s": load_s, "before_mib": start_rss / MiB, "loaded_mib": loaded / MiB}
    if cuda:
        row["device_before_mib"], row["device_loaded_mib"] = start_device, _device_mib(device)
    for to in ("cpu", "disk"):
        parks, wakes, between, between_device = [], [], [], []
        for _ in range(repeats):
            handle = vramguard.park(model, to=to)  # type: ignore[arg-type]
            assert handle.report is not None
            parks.append(handle.report)
            between.append(rss())
            if cuda:
                between_device.append(_device_mib(device))
            wakes.append(vramguard.wake(handle))
        row["nbytes"] = parks[0].nbytes
        row[f"park_{to}_s"] = statistics.median(r.duration_s for r in parks)
        # From disk, only the first park writes; the later ones find the file their wake mapped
        # unwritten and keep it (vramguard/parking/_reuse.py). On CUDA every park copies.
        row[f"park_{to}_first_s"] = parks[0].duration_s
        row[f"wake_{to}_s"] = statistics.median(r.duration_s for r in wakes)
        row[f"between_{to}_mib"] = statistics.median(between) / MiB
        if cuda:
            row[f"between_{to}_device_mib"] = between_device[len(between_device) // 2]
    print(
        f"whisper-{size}: from_pretrained{' + .to(device)' if cuda else ''} {load_s * 1000:.0f} ms | "
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
    if cuda:
        _device_lines(row, device, repeats)
    del model
    return row


def _device_lines(row: dict[str, Any], device: torch.device, repeats: int) -> None:
    """The pinned copy of the model's bytes beside park and wake, and the device memory."""
    pinned = row["pinned"] = pinned_copy(row["nbytes"], device, repeats)
    wake_rate, park_rate = row["nbytes"] / row["wake_cpu_s"], row["nbytes"] / row["park_cpu_s"]
    row["wake_cpu_of_pinned"] = wake_rate / pinned["h2d_bytes_per_s"]
    row["park_cpu_of_pinned"] = park_rate / pinned["d2h_bytes_per_s"]
    print(
        f"  {row['nbytes'] / MiB:.1f} MiB: wake from cpu {wake_rate / GB:.1f} GB/s, a plain pinned copy_ "
        f"host->device {pinned['h2d_bytes_per_s'] / GB:.1f} GB/s ({row['wake_cpu_of_pinned']:.2f} of it); "
        f"park to cpu {park_rate / GB:.1f} GB/s, pinned device->host {pinned['d2h_bytes_per_s'] / GB:.1f} GB/s "
        f"({row['park_cpu_of_pinned']:.2f} of it)"
    )

    def text(reading: dict[str, float | None]) -> str:
        return " / ".join("n/a" if v is None else f"{v:.0f}" for v in (reading["reserved"], reading["process"]))

    print(
        f"  device MiB, reserved (torch) / this process (NVML): before load {text(row['device_before_mib'])}, "
        f"loaded {text(row['device_loaded_mib'])}, parked to cpu {text(row['between_cpu_device_mib'])}, "
        f"to disk {text(row['between_disk_device_mib'])}"
    )


def pyannote_missing() -> str | None:
    """Why the pipeline cannot run here, or None."""
    try:
        found = importlib.util.find_spec("pyannote.audio") is not None
    except ModuleNotFoundError:
        found = False
    return None if found else "pyannote.audio is not installed (the pipeline's diarizer needs it)"


def pipeline_child(folder: Path, mode: str, files: int, device: torch.device = CPU) -> None:
    """One mode in this (fresh) process: load, one unmeasured warm-up file, then ``files`` files
    timed; prints one JSON line (seconds per file, peak above the level before loading)."""
    import json

    from vramguard.asr import ASRDiarizationPipeline
    from vramguard.asr.testing import sample_audio_path

    cuda = device.type == "cuda"
    gc.collect()
    malloc_trim()
    start_rss = rss()
    pipe = ASRDiarizationPipeline.from_pretrained(
        folder / "whisper-tiny", folder / "diarizer", device=device, mode=mode,  # type: ignore[arg-type]
        generate_kwargs={"max_new_tokens": 40, "num_beams": 1},
    )  # fmt: skip
    pipe.map([sample_audio_path()], progress=False)  # lazy one-time work is no mode's cost
    if cuda:
        torch.cuda.synchronize(device)
        start_reserved = torch.cuda.memory_reserved(device)
        torch.cuda.reset_peak_memory_stats(device)
    reset_resident_peak()
    start = time.perf_counter()
    pipe.map([sample_audio_path()] * files, progress=False)
    if cuda:
        torch.cuda.synchronize(device)
    per_file = (time.perf_counter() - start) / files
    if cuda:
        peak = (torch.cuda.max_memory_reserved(device) - start_reserved) / MiB
    else:
        peak = ((read_resident_peak().hwm_bytes or 0) - start_rss) / MiB
    pipe.release_resources()
    print(json.dumps({"per_file_s": per_file, "peak_mib": peak}))


def pipeline_rows(folder: Path, files: int, rounds: int, device: torch.device = CPU) -> dict[str, tuple[float, float]]:
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
            command += ["--files", str(files), "--device", str(device)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            found.append((row["per_file_s"], row["peak_mib"]))
    medians: dict[str, tuple[float, float]] = {}
    peak_name = "peak reserved" if device.type == "cuda" else "peak RSS"
    for mode, found in runs.items():
        times = [t for t, _ in found]
        medians[mode] = (statistics.median(times), statistics.median(p for _, p in found))
        spread = f" ({min(times):.2f}-{max(times):.2f})" if len(times) > 1 else ""
        print(f"pipeline {mode:<8}: {medians[mode][0]:.2f} s per file{spread}, {peak_name} +{medians[mode][1]:.0f} MiB")
    (swap_s, swap_peak), (res_s, _), (_, staged_peak) = medians["swap"], medians["resident"], medians["staged"]
    peaks = f"{swap_peak / staged_peak:.2f}x" if staged_peak > 0 else "n/a (staged peak 0)"
    print(
        f"  swap time per file {swap_s / res_s:.2f}x resident (goal <= 1.2x); "
        f"swap peak {peaks} staged (goal <= 1.1x); "
        f"median of {rounds} fresh process(es) per mode, {files} files each after a warm-up file"
    )
    return medians


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.1f}"


def markdown(data: dict[str, Any]) -> str:
    """The run as Markdown: one row per model, and the pipeline's modes (or why they were skipped)."""
    cuda = data["device"].startswith("cuda")
    lines = [f"Device: {data['device_label']}. Date: {data['date']}. Command: `{data['command']}`.", ""]
    header = (
        "| model | MiB | from_pretrained (ms) | park / wake cpu (ms) | park disk first / again (ms) | wake disk (ms) |"
    )
    if cuda:
        header += " wake cpu GB/s | pinned host→device GB/s | wake / pinned | park cpu GB/s | pinned device→host GB/s |"
        header += " park / pinned |"
    lines += [header, "|" + "---|" * (header.count("|") - 1)]
    for size, row in data["models"].items():
        cells = [
            f"whisper-{size}", f"{row['nbytes'] / MiB:.1f}", _ms(row["load_s"]),
            f"{_ms(row['park_cpu_s'])} / {_ms(row['wake_cpu_s'])}",
            f"{_ms(row['park_disk_first_s'])} / {_ms(row['park_disk_s'])}", _ms(row["wake_disk_s"]),
        ]  # fmt: skip
        if cuda:
            pinned = row["pinned"]
            cells += [
                f"{row['nbytes'] / row['wake_cpu_s'] / GB:.1f}", f"{pinned['h2d_bytes_per_s'] / GB:.1f}",
                f"{row['wake_cpu_of_pinned']:.2f}", f"{row['nbytes'] / row['park_cpu_s'] / GB:.1f}",
                f"{pinned['d2h_bytes_per_s'] / GB:.1f}", f"{row['park_cpu_of_pinned']:.2f}",
            ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    pipeline = data["pipeline"]
    lines.append("")
    if "skipped" in pipeline:
        lines.append(f"Pipeline: skipped: {pipeline['skipped']}.")
    else:
        peak = "peak reserved above the start (MiB)" if cuda else "peak RSS above the start (MiB)"
        lines += [f"| mode | seconds per file | {peak} |", "|---|---|---|"]
        for mode, (seconds, mib) in pipeline["modes"].items():
            lines.append(f"| {mode} | {seconds:.2f} | {mib:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", default="cpu", help='"cpu" or "cuda" (default: cpu)')
    parser.add_argument("--sizes", nargs="+", choices=["tiny", "base"], help="default: tiny base")
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-pipeline", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="fresh processes per pipeline mode (default: 3)")
    parser.add_argument("--quick", action="store_true",
                        help="whisper-tiny (on CUDA also base: tiny's 15 MB is too few bytes for a bandwidth), "
                        "3 repeats, the pipeline with 2 files and 1 round")  # fmt: skip
    parser.add_argument("--json", help="write every figure to this file")
    parser.add_argument("--markdown", help="write the table to this file")
    parser.add_argument("--pipeline-child", choices=["staged", "swap", "resident"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    device = resolve(args.device, "park.py")
    if args.pipeline_child:
        pipeline_child(args.folder, args.pipeline_child, args.files, device)
        return 0
    if args.quick:
        args.sizes = args.sizes or (["tiny", "base"] if device.type == "cuda" else ["tiny"])
        args.files, args.rounds = 2, 1
    args.sizes = args.sizes or ["tiny", "base"]
    env = environment(device)
    print(f"device: {label(env)}", flush=True)
    from vramguard.asr.testing import build_tiny_whisper

    models: dict[str, Any] = {}
    pipeline: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for size in args.sizes:
            built = build_tiny_whisper(folder / f"whisper-{size}", size=size)
            models[size] = whisper_row(size, built, args.repeats, device)
        missing = pyannote_missing()
        if args.no_pipeline:
            pipeline = {"skipped": "--no-pipeline"}
        elif missing is not None:
            pipeline = {"skipped": missing}
            print(f"pipeline: skipped: {missing}")
        else:
            if "tiny" not in args.sizes:
                build_tiny_whisper(folder / "whisper-tiny")
            modes = pipeline_rows(folder, args.files, args.rounds, device)
            pipeline = {"files": args.files, "rounds": args.rounds, "modes": modes}
    shown = f"--device {device.type}" + (" --quick" if args.quick else f" --sizes {' '.join(args.sizes)}")
    if not args.quick:
        shown += f" --files {args.files} --repeats {args.repeats} --rounds {args.rounds}"
    if args.no_pipeline:
        shown += " --no-pipeline"
    data = {
        "device": str(device),
        "device_label": label(env),
        "environment": env,
        "date": datetime.date.today().isoformat(),
        "command": f".venv/bin/python benchmarks/park.py {shown}",
        "repeats": args.repeats,
        "models": models,
        "pipeline": pipeline,
    }
    write(data, markdown(data), args.json, args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
