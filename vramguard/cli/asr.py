"""``vramguard asr``: transcribe and diarize audio files (Whisper + pyannote), stage by stage.

Transcripts go to stdout, or to ``--out DIR`` as one file per input; the memory of each stage
goes to stderr, like ``vramguard run``'s report, so stdout stays the transcript. Each file's
transcript is written once it is done: Ctrl-C or SIGTERM keeps the files finished (file by
file in resident and swap modes, in the diarizer stage in staged mode; in isolated mode all
files finish together, when the child returns), prints the memory of the stages run, and exits
130 or 143.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import vramguard
from vramguard.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, _signals
from vramguard.cli._durations import FORMS, duration
from vramguard.cli._paths import check_output_folder, check_plot_file

if TYPE_CHECKING:
    from vramguard.asr import FileResult

HELP = "transcribe and diarize audio files (Whisper + pyannote.audio), with each stage's memory"
FORMATS = ("txt", "srt", "vtt", "json", "rttm")
PLOT_SAMPLE_EVERY_S = 0.01


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("audio", nargs="+", help="audio files (wav, flac, ogg; mp3, m4a and others with ffmpeg)")
    parser.add_argument("--asr-model", default="openai/whisper-large-v3", help="hub id or local folder")
    parser.add_argument(
        "--diarizer-model", default="pyannote/speaker-diarization-3.1", help="hub id, local folder or config.yaml"
    )
    from vramguard.asr import MODES  # each mode's name and line, written once, with the mode

    parser.add_argument(
        "--mode",
        choices=tuple(MODES),
        default="resident",
        help="; ".join(f"{mode.name}: {mode.summary}" for mode in MODES.values()) + " (default: resident)",
    )
    parser.add_argument("--format", choices=FORMATS, default="txt", help="output format (default: txt)")
    parser.add_argument("--out", type=Path, help="write one file per input into this folder instead of stdout")
    parser.add_argument("--plot", type=Path, help="draw each stage's memory timeline into this image (.png, .svg...)")
    parser.add_argument("--device", default="auto", help='"auto", "cpu", "cuda" or "cuda:N" (default: auto)')
    parser.add_argument("--dtype", choices=("float16", "bfloat16", "float32"), help="Whisper's dtype")
    parser.add_argument("--num-speakers", type=int, help="exact number of speakers, if known")
    parser.add_argument("--min-speakers", type=int, help="at least this many speakers")
    parser.add_argument("--max-speakers", type=int, help="at most this many speakers")
    parser.add_argument("--batch-size", type=int, default=8, help="ASR chunks per batch (default: 8)")
    parser.add_argument(
        "--chunk-length",
        type=duration("a chunk length", 0.1, 3600.0),
        default=30.0,
        metavar="DURATION",
        help=f"ASR chunk length ({FORMS}; default: 30s)",
    )
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


def _check_counts(args: argparse.Namespace) -> None:
    """The speaker counts, before any model loads (the pipeline would refuse them only after)."""
    for flag in ("--num-speakers", "--min-speakers", "--max-speakers"):
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None and value <= 0:
            raise vramguard.InvalidArgument(flag, value, "a positive int")
    low, high = args.min_speakers, args.max_speakers
    if low is not None and high is not None and low > high:
        raise vramguard.InvalidArgument("--min-speakers", low, f"at most --max-speakers ({high})")


def _out_paths(sources: list[str], folder: Path, suffix: str) -> list[Path]:
    """One output path per input, named after it; repeated names get -2, -3, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    taken: dict[str, int] = {}
    paths = []
    for source in sources:
        stem = Path(source).stem or "audio"
        taken[stem] = taken.get(stem, 0) + 1
        name = stem if taken[stem] == 1 else f"{stem}-{taken[stem]}"
        paths.append(folder / f"{name}.{suffix}")
    return paths


def _memory_lines(reports: list[tuple[str, vramguard.SessionReport]]) -> list[str]:
    size = vramguard.format_size
    width = max([28, *(len(name) for name, _ in reports)])
    return [
        f"  {name:<{width}} peak +{size(r.peak_increase_bytes):>10}  reclaimed {size(r.reclaimed_bytes):>10}  "
        f"{r.duration_s:6.2f} s"
        for name, r in reports
    ]


class _Batch:
    """The files in flight: each result written (or printed) as soon as its file is done, so a
    Ctrl-C or SIGTERM keeps every file already finished; the reports of the stages run so far."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.outputs = _out_paths(args.audio, args.out, args.format) if args.out is not None else None
        self.results: list[FileResult] = []
        self.written: list[str] = []
        self.reports: list[tuple[str, vramguard.SessionReport]] = []
        self.device: str | None = None

    def run(self) -> None:
        from vramguard.asr import ASRDiarizationPipeline

        args = self.args
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
            self.device = str(pipe.device)
            self.reports += [(r.name, r) for r in pipe.load_reports]
            try:
                # Each file kept as soon as the pipeline is done with it (on_result), so an
                # interrupted call keeps the files finished and the stages ended.
                pipe.map(
                    args.audio,
                    num_speakers=args.num_speakers,
                    min_speakers=args.min_speakers,
                    max_speakers=args.max_speakers,
                    progress=not args.no_progress,
                    errors="collect",
                    on_result=self._keep,
                )
            finally:
                self.reports += [(r.name, r) for r in pipe.last_reports]

    def _keep(self, result: FileResult) -> None:
        from vramguard.asr import export

        index = len(self.results)
        self.results.append(result)
        if result.segments is None:
            return
        text = export(result.segments, self.args.format, name=Path(result.source).stem)
        if self.outputs is not None:
            self.outputs[index].write_text(text, encoding="utf-8")
            self.written.append(str(self.outputs[index]))
        else:
            # One write, header and text: a signal between two writes would split a file's output.
            header = f"==> {result.source} <==\n" if len(self.args.audio) > 1 else ""
            sys.stdout.write(header + (text if text.endswith("\n") or not text else f"{text}\n"))
            sys.stdout.flush()


def _plot(reports: list[vramguard.SessionReport], path: Path) -> None:
    """Draw the reports on one figure with the report layer."""
    print(f"vramguard asr: memory plot written to {vramguard.plot_reports(reports, path)}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    # Before any model loads: a typo or a bad path should cost nothing.
    _check_counts(args)
    _generate_kwargs(args)
    check_plot_file("--plot", args.plot)
    check_output_folder("--out", args.out)
    missing = [source for source in args.audio if not Path(source).is_file()]
    if missing:
        raise vramguard.InvalidArgument("AUDIO", ", ".join(missing), "existing audio files")
    batch = _Batch(args)
    stopped: KeyboardInterrupt | None = None
    try:
        with _signals.terminate_as_interrupt():
            batch.run()
    except KeyboardInterrupt as interrupt:
        stopped = interrupt
    if batch.reports:
        print(f"vramguard asr: memory on {batch.device} ({args.mode} mode):", file=sys.stderr)
        print("\n".join(_memory_lines(batch.reports)), file=sys.stderr)
    if args.out is not None:
        print(f"vramguard asr: wrote {', '.join(batch.written) or 'nothing'}", file=sys.stderr)
    if args.plot is not None and batch.reports:
        _plot([r for _, r in batch.reports], args.plot)
    failures = [r for r in batch.results if r.error is not None]
    for failure in failures:
        print(f"vramguard asr: error: {failure.source}: {failure.error}", file=sys.stderr)
    if stopped is not None:
        done = sum(r.segments is not None for r in batch.results)
        print(
            f"vramguard asr: stopped by {_signals.describe(stopped)}; {done} of {len(args.audio)} file(s) done",
            file=sys.stderr,
        )
        return _signals.exit_code(stopped)
    if not failures:
        return EXIT_OK
    # Bad input (a missing or undecodable file) is a usage error; anything else a failure.
    return EXIT_USAGE if all(isinstance(f.error, vramguard.VramGuardError) for f in failures) else EXIT_FAILED
