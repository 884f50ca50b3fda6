"""Writing a transcript (the pipeline's list of segments) as SRT, WebVTT, JSON, RTTM or text.

Each function takes the segments ``[{"speaker", "text", "timestamp": (start_s, end_s)}, ...]``
and returns the file's text. Cue texts are put on one line (Whisper's text can hold newlines
and control characters, and a blank line would end an SRT cue early); WebVTT's reserved
characters are escaped and the speaker goes into a voice tag.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import vramguard

Segment = dict[str, Any]
_NON_TOKEN = re.compile(r"\s+")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _span(segment: Segment) -> tuple[int, int]:
    """(start, end) in whole milliseconds, end never before start."""
    start, end = segment["timestamp"]
    start_ms = max(0, round(float(start) * 1000))
    end_ms = start_ms if end is None else max(start_ms, round(float(end) * 1000))
    return start_ms, end_ms


def _clock(ms: int, separator: str) -> str:
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{millis:03d}"


def to_srt(segments: Iterable[Segment]) -> str:
    """SubRip: numbered cues ``HH:MM:SS,mmm --> HH:MM:SS,mmm`` and ``SPEAKER: text``."""
    cues = []
    for index, segment in enumerate(segments, start=1):
        start, end = _span(segment)
        text = _one_line(f"{segment['speaker']}: {segment['text']}")
        cues.append(f"{index}\n{_clock(start, ',')} --> {_clock(end, ',')}\n{text}\n")
    return "\n".join(cues)


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(segments: Iterable[Segment]) -> str:
    """WebVTT: a ``WEBVTT`` header and cues with the speaker in a voice tag ``<v SPEAKER>``."""
    cues = ["WEBVTT\n"]
    for segment in segments:
        start, end = _span(segment)
        speaker = _vtt_escape(_one_line(str(segment["speaker"])))
        text = _vtt_escape(_one_line(segment["text"]))
        cues.append(f"{_clock(start, '.')} --> {_clock(end, '.')}\n<v {speaker}>{text}\n")
    return "\n".join(cues)


def to_json(segments: Iterable[Segment], *, indent: int | None = 2) -> str:
    """The segments as a JSON list; timestamps become ``[start, end]`` lists."""
    data = [{"speaker": s["speaker"], "text": s["text"], "timestamp": list(s["timestamp"])} for s in segments]
    return json.dumps(data, indent=indent, ensure_ascii=False)


def to_rttm(segments: Iterable[Segment], *, file_id: str = "audio") -> str:
    """RTTM, the diarization exchange format: one ``SPEAKER`` line per segment (10 fields)."""
    file_id = _NON_TOKEN.sub("_", file_id.strip()) or "audio"
    lines = []
    for segment in segments:
        start, end = _span(segment)
        speaker = _NON_TOKEN.sub("_", str(segment["speaker"]).strip()) or "unknown"
        lines.append(f"SPEAKER {file_id} 1 {start / 1000:.3f} {(end - start) / 1000:.3f} <NA> <NA> {speaker} <NA> <NA>")
    return "".join(f"{line}\n" for line in lines)


def to_text(segments: Iterable[Segment]) -> str:
    """Plain text: ``[start - end] SPEAKER: text`` per line."""
    lines = []
    for segment in segments:
        start, end = _span(segment)
        text = _one_line(f"{segment['speaker']}: {segment['text']}")
        lines.append(f"[{_clock(start, '.')} - {_clock(end, '.')}] {text}")
    return "".join(f"{line}\n" for line in lines)


_WRITERS: dict[str, Callable[[Sequence[Segment], str], str]] = {
    "srt": lambda segments, name: to_srt(segments),
    "vtt": lambda segments, name: to_vtt(segments),
    "json": lambda segments, name: to_json(segments),
    "txt": lambda segments, name: to_text(segments),
    "rttm": lambda segments, name: to_rttm(segments, file_id=name),
}
FORMATS = tuple(_WRITERS)
"""The names :func:`export` accepts, which are also the files' suffixes."""


def export(segments: Sequence[Segment], format: str, *, name: str = "audio") -> str:
    """The segments in ``format`` (one of :data:`FORMATS`); ``name`` is RTTM's file id."""
    writer = _WRITERS.get(format)
    if writer is None:
        raise vramguard.InvalidArgument("format", format, FORMATS)
    return writer(segments, name)
