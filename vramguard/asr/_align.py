"""Giving each transcribed chunk a speaker: the speaker whose turns overlap it most.

whisper-plus gives each diarization turn the chunks up to the one whose end is nearest the
turn's end (an argmin); a chunk that straddles a turn change goes to whichever turn happens to
end near it, a last chunk whose end is None crashes it, and an empty diarization raises
IndexError. Here each chunk is scored by interval overlap with every speaker's turns (as
whisperX does), so every chunk is assigned exactly once, to a speaker the diarization found.
A chunk no turn touches goes to the nearest turn's speaker; with no turns at all, everything
is "SPEAKER_00". Timestamps are clamped to the audio, because Whisper's (random-weight models'
in particular) can run past the end.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

DEFAULT_SPEAKER = "SPEAKER_00"


class Turn(NamedTuple):
    """A stretch of time in which ``speaker`` speaks, in seconds."""

    start: float
    end: float
    speaker: str


class Chunk(NamedTuple):
    """A transcribed piece of text; ``end`` None means "to the end of the audio"."""

    text: str
    start: float | None
    end: float | None


Segment = dict[str, Any]
"""``{"speaker": str, "text": str, "timestamp": (start_s, end_s)}``, whisper-plus's output shape."""


def clamp(value: float | None, duration_s: float, default: float) -> float:
    """``value`` limited to ``[0, duration_s]``; ``default`` where it is None or not finite."""
    if value is None or not math.isfinite(value):
        value = default
    return min(max(float(value), 0.0), duration_s)


def chunks_from_asr(output: dict[str, Any]) -> list[Chunk]:
    """The ``chunks`` of a transformers ASR result (``return_timestamps=True``), as :class:`Chunk`."""
    chunks = output.get("chunks")
    if chunks is None:
        text = str(output.get("text", "")).strip()
        return [Chunk(text, 0.0, None)] if text else []
    return [Chunk(str(c.get("text", "")), *tuple(c.get("timestamp", (None, None)))[:2]) for c in chunks]


def _span(chunk: Chunk, duration_s: float, previous_end: float) -> tuple[float, float]:
    start = clamp(chunk.start, duration_s, previous_end)
    end = clamp(chunk.end, duration_s, duration_s)
    return start, max(start, end)


def _distance(start: float, end: float, turn: Turn) -> float:
    return max(0.0, turn.start - end, start - turn.end)


def speaker_for(start: float, end: float, turns: Sequence[Turn]) -> str:
    """The speaker whose turns overlap ``[start, end]`` most; ties and no overlap go to the
    earliest turn, then to the nearest turn; ``DEFAULT_SPEAKER`` when there are no turns."""
    if not turns:
        return DEFAULT_SPEAKER
    overlap: dict[str, float] = {}
    for turn in turns:
        shared = min(end, turn.end) - max(start, turn.start)
        if shared > 0:
            overlap[turn.speaker] = overlap.get(turn.speaker, 0.0) + shared
    if overlap:
        # max() keeps the first of equal values: the speaker whose turn came first.
        return max(overlap, key=overlap.__getitem__)
    return min(turns, key=lambda turn: _distance(start, end, turn)).speaker


def assign_speakers(chunks: Iterable[Chunk], turns: Iterable[Turn], duration_s: float) -> list[Segment]:
    """One segment per chunk, with its clamped timestamp and its speaker.

    A chunk without a start begins where the previous one ended; a chunk without an end (the
    last chunk of a chunked Whisper run) ends at ``duration_s``.
    """
    if not math.isfinite(duration_s) or duration_s < 0:
        raise ValueError(f"duration_s must be a finite number >= 0, got {duration_s!r}")
    ordered = sorted(
        (Turn(clamp(t.start, duration_s, 0.0), clamp(t.end, duration_s, duration_s), t.speaker) for t in turns),
        key=lambda turn: (turn.start, turn.end),
    )
    ordered = [turn for turn in ordered if turn.end > turn.start] or ordered
    segments: list[Segment] = []
    previous_end = 0.0
    for chunk in chunks:
        start, end = _span(chunk, duration_s, previous_end)
        previous_end = end
        segments.append({"speaker": speaker_for(start, end, ordered), "text": chunk.text, "timestamp": (start, end)})
    return segments


def strip_texts(segments: Iterable[Segment]) -> list[Segment]:
    """Copies of the segments with their texts stripped (Whisper's chunks start with a space)."""
    return [dict(segment, text=str(segment["text"]).strip()) for segment in segments]


def group_by_speaker(segments: Iterable[Segment]) -> list[Segment]:
    """Merge consecutive segments of one speaker (texts joined as Whisper spaces them)."""
    grouped: list[Segment] = []
    for segment in segments:
        last = grouped[-1] if grouped else None
        if last is not None and last["speaker"] == segment["speaker"]:
            last["text"] += segment["text"]
            last["timestamp"] = (last["timestamp"][0], max(last["timestamp"][1], segment["timestamp"][1]))
        else:
            grouped.append(dict(segment))
    for segment in grouped:
        segment["text"] = segment["text"].strip()
    return grouped
