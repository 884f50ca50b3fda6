"""The ASR + diarization pipeline's memory with whisper-base-sized models, in one run:
resident vs staged peak, and three ways to release a resident pipeline side by side.

    .venv/bin/python benchmarks/asr_memory.py [--device cpu|cuda] [--size base|tiny] [--json out.json]
    .venv/bin/python benchmarks/asr_memory.py --files 10 [--size tiny] [--clip-s 3] [--plot docs/img/asr-memory.png]
    .venv/bin/python benchmarks/asr_memory.py --quick [--plot out.png] [--json out.json]

``--files N`` runs the many-files comparison instead: N files through each way users run the
pipeline, each way in a fresh child process after a warm-up cycle, memory sampled over time
(every 20 ms, on a thread) and drawn for every way on one figure, a panel each (growth against
sawtooth), with the peak and the time per file of each:

- whisper-plus as users write it: the pipeline built again for every file, never released
  (``pipe = Pipeline(...)`` in the loop; the previous one goes only when the name is rebound);
- resident: loaded once, every file through it, released at the end;
- staged: ``mode="staged"`` (each stage's model loaded and released in turn);
- swap: ``mode="swap"`` (the idle model parked on the host), where the pipeline accepts it;
- resident with release between files: load, run, ``release_resources()`` for every file.

Each file is the first ``--clip-s`` seconds (default 3) of the bundled WAV, greedy decoding capped
at ``--max-new-tokens`` (default 8 here): the memory behaviour across files (growth against
sawtooth) is the point, not transcription. Where one file's time goes (measured, tiny models, CPU):
pyannote's embedding step (WeSpeaker ResNet34 over three 10 s windows, padded however short the
file: about 1.5 s), then Whisper's decoding; a cap of 4 tokens is slower than 8, because Whisper
then never reaches an end timestamp and its long-form loop decodes 27 short segments.

``--quick`` (for CI): two files of a 2 s clip, tiny models, 8 tokens at temperature 0 (no
fallback), a 2 s diarization window (``build_tiny_diarizer(window_s=2)``), the two ways the assertion
compares (whisper-plus's reload per file and resident), their child processes run side by side
(memory is per process; the seconds are not comparable with a full run's).

The models are vramguard.asr.testing's random-weight builds (``size="base"``: whisper-base's
architecture, 74M parameters, and pyannote speaker-diarization-3.1's), run on the bundled 8.8 s
two-voice WAV. Every measurement is a fresh child process that first runs one warm-up
load+run+release cycle, so modules and caches loaded once per process are not counted (see
shared/host-memory.md). Releases compared:

- vramguard: ``pipe.release_resources()`` (``vramguard.release(self, attrs=...)``);
- whisper-plus: the order its maintainer gave in whisper-plus issue #68, ``empty_cache()`` first,
  then ``asr_pipeline = None`` and ``diarization_pipeline = None`` (run as if its
  ``self.device == "cuda"`` guard passed; the class never sets that attribute, so as written
  it does nothing at all);
- bare del: ``del pipe``, which a user reported "does not seem to work" in the same issue.

On the host, "empty_cache" is malloc_trim (``vramguard.empty_cache("cpu")``), allocated is malloc's
in-use bytes and reserved is resident anonymous memory. Figures from a CPU run say nothing about
a GPU; the device is printed with every table.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, cast

import torch
from asr_memory_plot import above_start, plot_files

import vramguard

Mode = Literal["resident", "staged"]
MODES: tuple[Mode, ...] = ("resident", "staged")
RELEASES = ("vramguard", "whisper-plus", "bare del")
MiB = 2**20


def _generate(args: argparse.Namespace) -> dict[str, int | float]:
    options: dict[str, int | float] = {"max_new_tokens": args.max_new_tokens, "num_beams": args.num_beams}
    if args.temperature is not None:  # one temperature: no fallback (random weights always fall back)
        options["temperature"] = args.temperature
    return options


def _load(args: argparse.Namespace, mode: Mode) -> Any:
    from vramguard.asr import ASRDiarizationPipeline

    models = Path(args.models)
    return ASRDiarizationPipeline.from_pretrained(
        models / "whisper", models / "diarizer", device=args.device, mode=mode, generate_kwargs=_generate(args)
    )


def _warm_up(args: argparse.Namespace, audio: Path, mode: Mode) -> None:
    pipe = _load(args, mode)
    pipe(audio)
    pipe.release_resources()
    del pipe
    gc.collect()
    vramguard.empty_cache(args.device)


def _figures(snapshot: vramguard.MemorySnapshot) -> dict[str, int | None]:
    return {
        "allocated_bytes": snapshot.allocated_bytes,
        "reserved_bytes": snapshot.reserved_bytes,
        "rss_bytes": snapshot.rss_bytes,
        "process_used_bytes": snapshot.process_used_bytes,
    }


@contextmanager
def _rss_peak(interval_s: float = 0.002) -> Iterator[dict[str, int]]:
    """The peak of the whole resident set, sampled on a thread. On the host, transformers maps
    safetensors weights from the file (zero-copy): RSS sees them, malloc and anonymous memory
    (vramguard's host figures) do not."""
    start = vramguard.snapshot("cpu", nvml=False, uss=False).rss_bytes or 0
    result = {"start": start, "peak": start}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(interval_s):
            rss = vramguard.snapshot("cpu", nvml=False, uss=False).rss_bytes or 0
            result["peak"] = max(result["peak"], rss)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()


def child_peak(args: argparse.Namespace, mode: Mode) -> dict[str, Any]:
    """Load, run and release in ``mode`` inside one session: its peak above the start."""
    from vramguard.asr.testing import sample_audio_path

    audio = sample_audio_path()
    _warm_up(args, audio, mode)
    began = time.perf_counter()
    with (
        _rss_peak() as rss,
        vramguard.gpu_session(mode, device=args.device, census=False, leaks="ignore") as session,
    ):
        pipe = _load(args, mode)
        pipe(audio)
        stages = {r.name: r.peak_increase_bytes for r in (*pipe.load_reports, *pipe.last_reports)}
        pipe.release_resources()
        del pipe
    report = session.report
    assert report is not None
    return {
        "rss_peak_increase_bytes": rss["peak"] - rss["start"],
        "peak_increase_bytes": report.peak_increase_bytes,
        "peak_reserved_bytes": report.peak_reserved_bytes,
        "before_reserved_bytes": report.before.reserved_bytes,
        "stages": stages,
        "duration_s": time.perf_counter() - began,
    }


def child_release(args: argparse.Namespace, how: str) -> dict[str, Any]:
    """Load and run a resident pipeline, release it ``how``, and measure what stays."""
    from vramguard.asr.testing import sample_audio_path

    audio = sample_audio_path()
    device = vramguard.resolve_device(args.device)
    _warm_up(args, audio, "resident")
    before = vramguard.snapshot(device)
    pipe = _load(args, "resident")
    pipe(audio)
    loaded = vramguard.snapshot(device)
    began = time.perf_counter()
    if how == "vramguard":
        pipe.release_resources()
    elif how == "whisper-plus":
        torch.cuda.empty_cache() if device.type == "cuda" else vramguard.empty_cache(device)
        pipe.asr_pipeline = None
        pipe.diarization_pipeline = None
    del pipe
    took = time.perf_counter() - began
    after = vramguard.snapshot(device)
    gc.collect()
    later = vramguard.snapshot(device)
    return {
        "before": _figures(before),
        "loaded": _figures(loaded),
        "after": _figures(after),
        "after_later_gc": _figures(later),
        "release_s": took,
    }


FILE_WAYS = (
    "whisper-plus (reload per file)",
    "resident",
    "staged",
    "swap",
    "resident, release between files",
)


def _swap_accepted() -> bool:
    from vramguard.asr import _pipeline

    return "swap" in getattr(_pipeline, "MODES", ())


QUICK_FILE_WAYS = ("whisper-plus (reload per file)", "resident")


def write_clip(path: Path, seconds: float) -> Path:
    """The first ``seconds`` of the bundled WAV, written to ``path`` (a file, as users pass them)."""
    import wave

    from vramguard.asr.testing import sample_audio_path

    with wave.open(str(sample_audio_path()), "rb") as source:
        frames = source.readframes(min(source.getnframes(), round(seconds * source.getframerate())))
        params = source.getparams()
    with wave.open(str(path), "wb") as clip:
        clip.setparams(params)
        clip.writeframes(frames)
    return path


def _reserved(device: torch.device) -> int | None:
    """Reserved bytes (on the host: resident anonymous memory), without USS: reading USS walks
    /proc/self/smaps (about 24 ms with the models' libraries mapped), and at one sample every
    20 ms that sampler thread held the GIL most of the time (33 s per file instead of about 2)."""
    return vramguard.snapshot(device, nvml=False, uss=False).reserved_bytes


def child_files(args: argparse.Namespace, way: str) -> dict[str, Any]:
    """N files through the pipeline ``way``, memory sampled over time; the peak and time per file."""
    audio = Path(args.audio)
    device = vramguard.resolve_device(args.device)
    mode: Any = {"staged": "staged", "swap": "swap"}.get(way, "resident")
    _warm_up(args, audio, mode)
    samples: list[tuple[float, int | None]] = []
    stop = threading.Event()
    origin = time.perf_counter()

    def sample() -> None:
        while True:
            samples.append((time.perf_counter() - origin, _reserved(device)))
            if stop.wait(0.02):
                return

    thread = threading.Thread(target=sample, daemon=True)
    before = _reserved(device)
    thread.start()
    per_file: list[float] = []
    file_ends: list[tuple[float, int | None]] = []  # (seconds, memory) as each file is done: the floor
    pipe: Any = None
    if way in ("resident", "staged", "swap"):
        pipe = _load(args, mode)
    for _ in range(args.files):
        began = time.perf_counter()
        if way == "whisper-plus (reload per file)":
            pipe = _load(args, "resident")  # the previous pipeline goes when the name is rebound
        elif way == "resident, release between files":
            pipe = _load(args, "resident")
        pipe(audio)
        if way == "resident, release between files":
            pipe.release_resources()
            pipe = None
        per_file.append(time.perf_counter() - began)
        file_ends.append((time.perf_counter() - origin, _reserved(device)))
    if pipe is not None and way != "whisper-plus (reload per file)":
        pipe.release_resources()
    del pipe
    stop.set()
    thread.join()
    end = _reserved(device)
    samples.append((time.perf_counter() - origin, end))  # the line ends at the figure the table gives
    present = [v for _, v in samples if v is not None]
    return {
        "before_reserved_bytes": before,
        "end_reserved_bytes": end,
        "peak_reserved_bytes": max(present) if present else None,
        "per_file_s": per_file,
        "file_ends": file_ends,
        "samples": samples,
    }


def _clip_label(args: argparse.Namespace) -> str:
    return f"{args.clip_s:g} s clip"


def files_main(args: argparse.Namespace, device: torch.device) -> int:
    ways = [w for w in (QUICK_FILE_WAYS if args.quick else FILE_WAYS) if w != "swap" or _swap_accepted()]
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="vramguard-asr-bench-") as scratch:
        if args.models is None:
            from vramguard.asr.testing import build_tiny_diarizer, build_tiny_whisper

            args.models = scratch
            build_tiny_whisper(Path(scratch) / "whisper", size=args.size)
            build_tiny_diarizer(Path(scratch) / "diarizer", size=args.size, window_s=args.window_s)
        args.audio = str(write_clip(Path(scratch) / "clip.wav", args.clip_s))
        if args.quick:
            # Side by side: each child measures its own process, so only the seconds are shared.
            children = {way: _start_child(args, "files", way) for way in ways}
            results = {way: _finish_child(child, "files", way) for way, child in children.items()}
        else:
            for way in ways:
                results[way] = _run_child(args, "files", way)
                print(f"  {way}: done", flush=True)
    label = _device_label(device)
    print(f"device: {label}")
    print(
        f"{args.files} files ({_clip_label(args)} of the bundled WAV), models size={args.size}, "
        f"max_new_tokens={args.max_new_tokens}; memory: reserved (host: resident anonymous)"
    )
    print(f"  {'way':<34} {'peak above start':>17} {'held at the end':>16} {'s per file (median, min-max)':>30}")
    options = f"--files {args.files} --size {args.size} --clip-s {args.clip_s:g} --max-new-tokens {args.max_new_tokens}"
    lines = [
        f"Device: {label}. Date: {time.strftime('%Y-%m-%d')}. Command: "
        f"`.venv/bin/python benchmarks/asr_memory.py "
        + ("--quick" if args.quick else options)
        + "`.",
        "",
        "| way | peak above the start | held at the end | seconds per file (median, min–max) |",
        "|---|---|---|---|",
    ]
    for way, r in results.items():
        peak, end = above_start(r, "peak_reserved_bytes"), above_start(r, "end_reserved_bytes")
        times = r["per_file_s"]
        spread = f"{statistics.median(times):.2f} ({min(times):.2f}–{max(times):.2f})"
        print(f"  {way:<34} {_size(peak):>17} {_size(end):>16} {spread:>30}")
        lines.append(f"| {way} | {_size(peak)} | {_size(end)} | {spread} |")
    if args.markdown:
        Path(args.markdown).write_text("\n".join(lines) + "\n")
    if args.plot:
        where = label.split(",")[0]
        title = f"{args.files} files ({_clip_label(args)}, size={args.size}), {where}: memory above the start"
        plot_files(results, args.plot, title)
        print(f"plot written to {args.plot}")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": label, "files": results}, indent=2))
    return 0


def _start_child(args: argparse.Namespace, kind: str, variant: str) -> subprocess.Popen[str]:
    command = [
        sys.executable, __file__, "--child", kind, variant, "--models", str(args.models), "--device", args.device,
        "--max-new-tokens", str(args.max_new_tokens), "--num-beams", str(args.num_beams),
        *([] if args.temperature is None else ["--temperature", str(args.temperature)]),
        "--files", str(args.files or 0), "--audio", str(getattr(args, "audio", "") or ""),
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish_child(child: subprocess.Popen[str], kind: str, variant: str) -> dict[str, Any]:
    stdout, stderr = child.communicate()
    if child.returncode != 0:
        raise SystemExit(f"child {kind} {variant!r} failed:\n{stderr[-4000:]}")
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return result


def _run_child(args: argparse.Namespace, kind: str, variant: str) -> dict[str, Any]:
    return _finish_child(_start_child(args, kind, variant), kind, variant)


def _size(value: int | None) -> str:
    return vramguard.format_size(value)


def _delta(result: dict[str, Any], field: str, key: str = "after") -> int | None:
    before, after = result["before"][field], result[key][field]
    return None if before is None or after is None else after - before


def _device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} ({device}), torch {torch.__version__}"
    return f"host (cpu), no GPU: {torch.get_num_threads()} threads, torch {torch.__version__}; no GPU claim follows"


def _ratio(a: int | None, b: int | None) -> str:
    if a is None or b is None or b <= 0:
        return "n/a"
    return f"{a / b:.1f}x"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--device", default="auto", help='"auto", "cpu" or "cuda" (default: auto)')
    parser.add_argument("--size", choices=("base", "tiny"), default="base", help="model sizes (default: base)")
    parser.add_argument("--models", help="a folder with whisper/ and diarizer/ already built (default: build them)")
    parser.add_argument(
        "--max-new-tokens", type=int, help="Whisper's cap per chunk (default: 40; 8 with --files)"
    )
    parser.add_argument(
        "--clip-s", type=float, default=3.0, help="with --files: seconds of the bundled WAV per file (default: 3)"
    )
    parser.add_argument("--audio", help=argparse.SUPPRESS)
    parser.add_argument("--num-beams", type=int, default=1, help="Whisper's beams (default: 1, greedy)")
    parser.add_argument(
        "--temperature", type=float,
        help="one decoding temperature, no fallback (default: Whisper's fallback schedule; 0 with --quick)",
    )  # fmt: skip
    parser.add_argument(
        "--window-s", type=float, default=10.0,
        help="the diarizer's window in seconds (default: pyannote's 10; 2 with --quick)",
    )  # fmt: skip
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--files", type=int, default=0, help="run the many-files comparison over this many files")
    parser.add_argument(
        "--quick", action="store_true", help="the many-files comparison reduced for CI: two files, two ways"
    )
    parser.add_argument("--plot", help="with --files: draw memory over time for every way into this PNG")
    parser.add_argument("--markdown", help="with --files: write the table to this file")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    device = vramguard.resolve_device(args.device)
    args.device = str(device)
    if args.quick:
        args.files, args.size, args.max_new_tokens, args.clip_s = 2, "tiny", 8, 2.0
        args.temperature, args.window_s = 0.0, 2.0  # a 2 s window for a 2 s clip, no fallback: seconds
    if args.max_new_tokens is None:
        args.max_new_tokens = 8 if args.files else 40
    if args.child:
        kind, variant = args.child
        if kind == "files":
            result = child_files(args, variant)
        elif kind == "peak":
            result = child_peak(args, cast(Mode, variant))
        else:
            result = child_release(args, variant)
        print(json.dumps(result))
        return 0
    if args.files:
        return files_main(args, device)
    with tempfile.TemporaryDirectory(prefix="vramguard-asr-bench-") as scratch:
        if args.models is None:
            from vramguard.asr.testing import build_tiny_diarizer, build_tiny_whisper

            args.models = scratch
            build_tiny_whisper(Path(scratch) / "whisper", size=args.size)
            build_tiny_diarizer(Path(scratch) / "diarizer", size=args.size, window_s=args.window_s)
        peaks = {mode: _run_child(args, "peak", mode) for mode in MODES}
        releases = {how: _run_child(args, "release", how) for how in RELEASES}
    print(f"device: {_device_label(device)}")
    print(f"models: size={args.size}; generation: max_new_tokens={args.max_new_tokens}, num_beams={args.num_beams}")
    measure = "allocated (malloc in use)" if device.type == "cpu" else "allocated (torch's caching allocator)"
    print(f"\npeak above the start (load + run + release, after a warm-up cycle): {measure}, and RSS")
    for mode, result in peaks.items():
        stages = ", ".join(f"{name} +{_size(peak)}" for name, peak in result["stages"].items())
        print(
            f"  {mode:<9} +{_size(result['peak_increase_bytes']):>10}"
            f"  RSS +{_size(result['rss_peak_increase_bytes']):>10}  ({result['duration_s']:.1f} s; stages: {stages})"
        )
    for key, label in (("peak_increase_bytes", "allocated"), ("rss_peak_increase_bytes", "RSS")):
        resident, staged = (peaks[m][key] for m in MODES)
        print(
            f"  resident / staged peak, {label}: {_ratio(resident, staged)} (staged saves {_size(resident - staged)})"
        )
    print("\nheld after the release, against the level before loading (a later gc.collect() in brackets)")
    print(f"  {'release':<14} {'allocated':>14} {'reserved':>14} {'RSS':>14} {'took':>8}")
    for how, result in releases.items():
        cells = [
            f"{_size(_delta(result, f)):>9} [{_size(_delta(result, f, 'after_later_gc'))}]" if f == "allocated_bytes"
            else f"{_size(_delta(result, f)):>14}"
            for f in ("allocated_bytes", "reserved_bytes", "rss_bytes")
        ]  # fmt: skip
        print(f"  {how:<14} {' '.join(cells)} {result['release_s'] * 1000:6.0f} ms")
    ours = _delta(releases["vramguard"], "reserved_bytes")
    loaded = _delta(releases["vramguard"], "reserved_bytes", "loaded")
    print(f"  loading and one run added {_size(loaded)} reserved")
    for how in RELEASES[1:]:
        held = _delta(releases[how], "reserved_bytes")
        extra = None if held is None or ours is None else held - ours
        print(f"  {how} holds {_size(extra)} more reserved than vramguard ({_ratio(held, ours)} of it)")
    if args.json:
        data = {"device": _device_label(device), "peaks": peaks, "releases": releases}
        Path(args.json).write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
