"""``vramguard asr``: transcribe and diarize audio files (Whisper + pyannote), stage by stage.

Transcripts go to stdout, or to ``--out DIR`` as one file per input; the memory of each stage
goes to stderr, like ``vramguard run``'s report, so stdout stays the transcript.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

import vramguard
from vramguard.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE

HELP = "transcribe and diarize audio files (Whisper + pyannote.audio), with each stage's memory"
FORMATS = ("txt", "srt", "vtt", "json", "rttm")
PLOT_SAMPLE_EVERY_S = 0.01


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("audio", nargs="+", help="audio files (wav, flac, ogg; mp3, m4a and others with ffmpeg)")
    parser.add_argument("--asr-model", default="openai/whisper-large-v3", help="hub id or local folder")
    parser.add_argument(
        "--diarizer-model", default="pyannote/speaker-diarization-3.1", help="hub id, local folder or config.yaml"
    )
    parser.add_argument(
        "--mode",
        choices=("resident", "staged", "isolated"),
        default="resident",
        help="resident: both models loaded together; staged: one at a time, peak = the larger stage",
    )
    parser.add_argument("--format", choices=FORMATS, default="txt", help="output format (default: txt)")
    parser.add_argument("--out", type=Path, help="write one file per input into this folder instead of stdout")
    parser.add_argument("--plot", type=Path, help="draw each stage's memory timeline into this PNG")
    parser.add_argument("--device", default="auto", help='"auto", "cpu", "cuda" or "cuda:N" (default: auto)')
    parser.add_argument("--dtype", choices=("float16", "bfloat16", "float32"), help="Whisper's dtype")
    parser.add_argument("--num-speakers", type=int, help="exact number of speakers, if known")
    parser.add_argument("--min-speakers", type=int, help="at least this many speakers")
    parser.add_argument("--max-speakers", type=int, help="at most this many speakers")
    parser.add_argument("--batch-size", type=int, default=8, help="ASR chunks per batch (default: 8)")
    parser.add_argument("--chunk-length", type=float, default=30, help="ASR chunk length in seconds (default: 30)")
    parser.add_argument("--language", help="Whisper's language code (default: detected)")
    parser.add_argument("--max-new-tokens", type=int, help="cap on Whisper's tokens per chunk")
    parser.add_argument("--num-beams", type=int, help="Whisper's beam width (transformers' default: 5)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _generate_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.language:
        options["language"] = args.language
    for flag, key in (("--max-new-tokens", "max_new_tokens"), ("--num-beams", "num_beams")):
        value = getattr(args, key)
        if value is not None:
            if value <= 0:
                raise vramguard.InvalidArgument(flag, value, "a positive int")
            options[key] = value
    return options


def _out_paths(sources: list[str], folder: Path, suffix: str) -> list[Path]:
    """One output path per input, named after it; repeated names get -2, -3, ..."""
    if folder.exists() and not folder.is_dir():
        raise vramguard.InvalidArgument("--out", str(folder), "a folder (created if missing)")
    folder.mkdir(parents=True, exist_ok=True)
    taken: dict[str, int] = {}
    paths = []
    for source in sources:
        stem = Path(source).stem or "audio"
        taken[stem] = taken.get(stem, 0) + 1
        name = stem if taken[stem] == 1 else f"{stem}-{taken[stem]}"
        paths.append(folder / f"{name}.{suffix}")
    return paths


def _memory_lines(reports: list[vramguard.SessionReport]) -> list[str]:
    size = vramguard.format_size
    return [
        f"  {r.name:<28} peak +{size(r.peak_increase_bytes):>10}  reclaimed {size(r.reclaimed_bytes):>10}  "
        f"{r.duration_s:6.2f} s"
        for r in reports
    ]


def _plot(reports: list[vramguard.SessionReport], path: Path) -> None:
    """Draw the reports on one figure with the report layer."""
    print(f"vramguard asr: memory plot written to {vramguard.plot_reports(reports, path)}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    # Imported here: the other subcommands must not pay for (or need) the ASR layer.
    from vramguard.asr import ASRDiarizationPipeline, export

    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:
        raise vramguard.MissingDependency("matplotlib", "plot", "--plot")
    missing = [source for source in args.audio if not Path(source).is_file()]
    if missing:
        # Before any model is loaded: a typo should cost nothing.
        raise vramguard.InvalidArgument("AUDIO", ", ".join(missing), "existing audio files")
    outputs = _out_paths(args.audio, args.out, args.format) if args.out is not None else None
    with ASRDiarizationPipeline.from_pretrained(
        args.asr_model,
        args.diarizer_model,
        chunk_length_s=args.chunk_length,
        batch_size=args.batch_size,
        device=args.device,
        torch_dtype=args.dtype,
        mode=args.mode,
        generate_kwargs=_generate_kwargs(args),
        sample_every=PLOT_SAMPLE_EVERY_S if args.plot is not None else None,
    ) as pipe:
        results = pipe.map(
            args.audio,
            num_speakers=args.num_speakers,
            min_speakers=args.min_speakers,
            max_speakers=args.max_speakers,
            progress=not args.no_progress,
            errors="collect",
        )
        reports = [*pipe.load_reports, *pipe.last_reports]
    for index, result in enumerate(results):
        if result.segments is None:
            continue
        text = export(result.segments, args.format, name=Path(result.source).stem)
        if outputs is not None:
            outputs[index].write_text(text, encoding="utf-8")
        else:
            if len(results) > 1:
                print(f"==> {result.source} <==")
            sys.stdout.write(text if text.endswith("\n") or not text else f"{text}\n")
    device = str(pipe.device)
    print(f"vramguard asr: memory on {device} ({args.mode} mode):", file=sys.stderr)
    print("\n".join(_memory_lines(reports)), file=sys.stderr)
    if outputs is not None:
        written = [str(outputs[i]) for i, r in enumerate(results) if r.segments is not None]
        print(f"vramguard asr: wrote {', '.join(written) or 'nothing'}", file=sys.stderr)
    if args.plot is not None and reports:
        _plot(reports, args.plot)
    failures = [r for r in results if r.error is not None]
    for failure in failures:
        print(f"vramguard asr: error: {failure.source}: {failure.error}", file=sys.stderr)
    if not failures:
        return EXIT_OK
    # Bad input (a missing or undecodable file) is a usage error; anything else a failure.
    return EXIT_USAGE if all(isinstance(f.error, vramguard.VramGuardError) for f in failures) else EXIT_FAILED
