"""Every export format parses back to the segments it was written from."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import vramguard
from vramguard.asr import FORMATS, export, to_json, to_rttm, to_srt, to_text, to_vtt

SEGMENTS: list[dict[str, Any]] = [
    {"speaker": "SPEAKER_00", "text": "Good morning, everyone.", "timestamp": (0.0, 3.93)},
    {"speaker": "SPEAKER_01", "text": "Thanks <all> & welcome -->\n\nnext", "timestamp": (4.43, 8.771)},
    {"speaker": "SPEAKER_00", "text": "", "timestamp": (3723.5, 3725.25)},
]

_SRT_TIME = r"(\d{2}):(\d{2}):(\d{2}),(\d{3})"
_VTT_TIME = r"(\d{2}):(\d{2}):(\d{2})\.(\d{3})"


def _seconds(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def parse_srt(text: str) -> list[tuple[int, float, float, str]]:
    """A strict SubRip reader: blocks of index, time line, one or more text lines."""
    cues = []
    for block in text.strip().split("\n\n"):
        lines = block.split("\n")
        assert len(lines) >= 3, block
        match = re.fullmatch(f"{_SRT_TIME} --> {_SRT_TIME}", lines[1])
        assert match, lines[1]
        groups = match.groups()
        cues.append((int(lines[0]), _seconds(*groups[:4]), _seconds(*groups[4:]), "\n".join(lines[2:])))
    return cues


def parse_vtt(text: str) -> list[tuple[float, float, str, str]]:
    """A WebVTT reader for cues with a voice tag: (start, end, voice, unescaped text)."""
    assert text.startswith("WEBVTT\n\n")
    cues = []
    for block in text[len("WEBVTT\n\n") :].strip().split("\n\n"):
        timing, payload = block.split("\n", 1)
        match = re.fullmatch(f"{_VTT_TIME} --> {_VTT_TIME}", timing)
        assert match, timing
        assert "-->" not in payload and "<" not in payload.removeprefix("<v ").split(">", 1)[1]
        voice = re.fullmatch(r"<v ([^>]+)>(.*)", payload, re.S)
        assert voice, payload
        body = voice.group(2).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
        groups = match.groups()
        cues.append((_seconds(*groups[:4]), _seconds(*groups[4:]), voice.group(1), body))
    return cues


def one_line(text: str) -> str:
    return " ".join(text.split())


def test_srt_round_trip() -> None:
    cues = parse_srt(to_srt(SEGMENTS))
    assert [c[0] for c in cues] == [1, 2, 3]
    for (_, start, end, text), segment in zip(cues, SEGMENTS, strict=True):
        assert (start, end) == pytest.approx(segment["timestamp"], abs=0.001)
        assert text == one_line(f"{segment['speaker']}: {segment['text']}")
    assert cues[2][1] == 3723.5  # hours survive: 01:02:03,500


def test_vtt_round_trip() -> None:
    cues = parse_vtt(to_vtt(SEGMENTS))
    for (start, end, voice, text), segment in zip(cues, SEGMENTS, strict=True):
        assert (start, end) == pytest.approx(segment["timestamp"], abs=0.001)
        assert voice == segment["speaker"]
        assert text == one_line(segment["text"])


def test_json_round_trip() -> None:
    data = json.loads(to_json(SEGMENTS))
    assert data == [dict(s, timestamp=list(s["timestamp"])) for s in SEGMENTS]


def test_rttm_fields() -> None:
    lines = to_rttm(SEGMENTS, file_id="my meeting").splitlines()
    assert len(lines) == len(SEGMENTS)
    for line, segment in zip(lines, SEGMENTS, strict=True):
        fields = line.split(" ")
        assert len(fields) == 10
        kind, file_id, channel, onset, duration, ortho, stype, name, conf, lookahead = fields
        assert (kind, file_id, channel) == ("SPEAKER", "my_meeting", "1")
        assert float(onset) == pytest.approx(segment["timestamp"][0], abs=0.001)
        assert float(onset) + float(duration) == pytest.approx(segment["timestamp"][1], abs=0.002)
        assert name == segment["speaker"]
        assert (ortho, stype, conf, lookahead) == ("<NA>",) * 4


def test_text_has_one_line_per_segment() -> None:
    lines = to_text(SEGMENTS).splitlines()
    assert len(lines) == len(SEGMENTS)
    assert lines[0] == "[00:00:00.000 - 00:00:03.930] SPEAKER_00: Good morning, everyone."


def test_export_dispatches_and_refuses_unknown_formats() -> None:
    assert FORMATS == ("srt", "vtt", "json", "txt", "rttm")
    assert export(SEGMENTS, "srt") == to_srt(SEGMENTS)
    assert export(SEGMENTS, "rttm", name="x") == to_rttm(SEGMENTS, file_id="x")
    with pytest.raises(vramguard.InvalidArgument, match="format"):
        export(SEGMENTS, "docx")


def test_no_segments() -> None:
    assert to_srt([]) == "" and to_rttm([]) == "" and to_text([]) == ""
    assert to_vtt([]) == "WEBVTT\n" and json.loads(to_json([])) == []


texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
spans = st.tuples(st.floats(0, 10_000), st.floats(0, 100)).map(lambda p: (p[0], p[0] + p[1]))
segment_lists = st.lists(
    st.fixed_dictionaries(
        {"speaker": st.sampled_from(["SPEAKER_00", "SPEAKER_01"]), "text": texts, "timestamp": spans}
    ),
    max_size=6,
)


@given(segments=segment_lists)
def test_any_transcript_parses_back(segments: list[dict[str, Any]]) -> None:
    srt = parse_srt(to_srt(segments)) if segments else []
    vtt = parse_vtt(to_vtt(segments)) if segments else []
    assert len(srt) == len(vtt) == len(segments) == len(to_rttm(segments).splitlines())
    for (_, start, end, text), (_, _, _, body), segment in zip(srt, vtt, segments, strict=True):
        assert start == pytest.approx(segment["timestamp"][0], abs=0.001)
        assert end == pytest.approx(segment["timestamp"][1], abs=0.001)
        assert text == one_line(f"{segment['speaker']}: {segment['text']}")
        assert body == one_line(segment["text"])
