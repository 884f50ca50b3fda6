"""The plain data the pipeline, its modes and its device workers share: a file's outcome
(:class:`FileResult`), what loading and running need (``Settings``) and a file in flight."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

import vramguard
from vramguard.asr import _align
from vramguard.asr._align import Chunk, Segment
from vramguard.asr._audio import Audio

ErrorPolicy = Literal["raise", "collect"]


@dataclass(frozen=True)
class FileResult:
    """One file's outcome in :meth:`ASRDiarizationPipeline.map`.

    ``segments`` is None when the file failed (``error`` says why, with ``errors="collect"``);
    ``reports`` are the file's own sessions (transcribe, diarize), in order.
    """

    source: str
    segments: list[Segment] | None
    reports: tuple[vramguard.SessionReport, ...] = ()
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Settings:
    """What loading and running need; kept so staged mode can load the models again."""

    asr_model: str | None
    diarizer_model: str | None
    device: torch.device
    dtype: torch.dtype
    token: str | None
    chunk_length_s: float
    batch_size: int
    generate_kwargs: dict[str, Any] = field(default_factory=dict)
    sample_every: float | None = None


@dataclass(frozen=True)
class Request:
    """What one :meth:`ASRDiarizationPipeline.map` call asks of every file, checked."""

    counts: dict[str, int | None]  # num_speakers, min_speakers, max_speakers: pyannote's keywords
    group_by_speaker: bool
    errors: ErrorPolicy
    progress: bool
    on_result: Callable[[FileResult], None] | None = None  # each file's result once it is done


@dataclass
class Work:
    """A file in flight through :meth:`ASRDiarizationPipeline.map`."""

    source: object
    label: str
    audio: Audio | None = None
    chunks: list[Chunk] | None = None
    reports: list[vramguard.SessionReport] = field(default_factory=list)
    segments: list[Segment] | None = None
    error: Exception | None = None

    def result(self, group: bool) -> FileResult:
        segments = self.segments
        if segments is not None:
            segments = _align.group_by_speaker(segments) if group else _align.strip_texts(segments)
        return FileResult(self.label, segments, tuple(self.reports), self.error)


def label(source: object) -> str:
    """The name a file's result and sessions carry: its path, or the decoded audio's name."""
    if isinstance(source, Audio):
        return source.name
    return str(source) if isinstance(source, str) or hasattr(source, "__fspath__") else type(source).__name__
