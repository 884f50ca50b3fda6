"""Alignment: each chunk gets the speaker whose turns overlap it most; nothing else needed."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vramguard.asr import DEFAULT_SPEAKER, Chunk, Turn, assign_speakers, group_by_speaker
from vramguard.asr._align import chunks_from_asr, clamp, speaker_for

TURNS = [Turn(0.0, 4.0, "SPEAKER_00"), Turn(4.5, 9.0, "SPEAKER_01")]


def test_each_chunk_goes_to_the_speaker_it_overlaps_most() -> None:
    chunks = [
        Chunk(" Hello", 0.0, 2.0),
        Chunk(" there.", 2.0, 4.2),
        Chunk(" Thanks", 4.3, 7.0),
        Chunk(" bye", 7.0, 9.0),
    ]
    segments = assign_speakers(chunks, TURNS, duration_s=9.0)
    assert [s["speaker"] for s in segments] == ["SPEAKER_00", "SPEAKER_00", "SPEAKER_01", "SPEAKER_01"]
    assert [s["timestamp"] for s in segments] == [(0.0, 2.0), (2.0, 4.2), (4.3, 7.0), (7.0, 9.0)]


def test_a_chunk_straddling_a_change_goes_to_the_larger_overlap() -> None:
    # whisper-plus's nearest-end argmin would hand this chunk to whichever turn ends near 5.0.
    [segment] = assign_speakers([Chunk("x", 3.5, 8.0)], TURNS, duration_s=9.0)
    assert segment["speaker"] == "SPEAKER_01"  # 0.5 s with SPEAKER_00, 3.5 s with SPEAKER_01


def test_overlap_sums_over_a_speakers_turns() -> None:
    turns = [Turn(0, 1, "A"), Turn(1, 2, "B"), Turn(2, 3, "A"), Turn(3, 3.5, "B")]
    assert speaker_for(0.0, 3.5, turns) == "A"  # A: 2 s, B: 1.5 s


def test_a_last_chunk_without_an_end_runs_to_the_end_of_the_audio() -> None:
    segments = assign_speakers([Chunk("a", 0.0, 4.0), Chunk("b", 4.0, None)], TURNS, duration_s=9.0)
    assert segments[-1]["timestamp"] == (4.0, 9.0)
    assert segments[-1]["speaker"] == "SPEAKER_01"


def test_timestamps_past_the_end_are_clamped() -> None:
    # Random-weight Whisper gives timestamps far past the audio's end.
    segments = assign_speakers([Chunk("a", 2.0, 44.0), Chunk("b", 30.0, 41.0)], TURNS, duration_s=9.0)
    assert [s["timestamp"] for s in segments] == [(2.0, 9.0), (9.0, 9.0)]
    assert segments[1]["speaker"] == "SPEAKER_01"  # zero length at the end: the nearest turn


def test_an_empty_diarization_gives_one_default_speaker() -> None:
    segments = assign_speakers([Chunk("a", 0.0, 1.0), Chunk("b", 1.0, None)], [], duration_s=2.0)
    assert {s["speaker"] for s in segments} == {DEFAULT_SPEAKER}


def test_no_speech_gives_no_segments() -> None:
    assert assign_speakers([], TURNS, duration_s=9.0) == []
    assert group_by_speaker([]) == []
    assert chunks_from_asr({"text": "", "chunks": []}) == []
    assert chunks_from_asr({"text": "  "}) == []


def test_a_chunk_in_a_gap_goes_to_the_nearest_turn() -> None:
    assert speaker_for(4.1, 4.2, TURNS) == "SPEAKER_00"
    assert speaker_for(4.35, 4.45, TURNS) == "SPEAKER_01"


def test_asr_output_without_chunks_is_one_chunk() -> None:
    assert chunks_from_asr({"text": " hi"}) == [Chunk("hi", 0.0, None)]
    assert chunks_from_asr({"chunks": [{"text": " a", "timestamp": (0.0, None)}]}) == [Chunk(" a", 0.0, None)]


def test_grouping_merges_consecutive_segments_of_one_speaker() -> None:
    segments = [
        {"speaker": "A", "text": " Hello", "timestamp": (0.0, 1.0)},
        {"speaker": "A", "text": " world.", "timestamp": (1.0, 2.0)},
        {"speaker": "B", "text": " Hi", "timestamp": (2.0, 3.0)},
        {"speaker": "A", "text": " again", "timestamp": (3.0, 4.0)},
    ]
    grouped = group_by_speaker(segments)
    assert grouped == [
        {"speaker": "A", "text": "Hello world.", "timestamp": (0.0, 2.0)},
        {"speaker": "B", "text": "Hi", "timestamp": (2.0, 3.0)},
        {"speaker": "A", "text": "again", "timestamp": (3.0, 4.0)},
    ]
    assert segments[0]["text"] == " Hello"  # the input is not modified


@pytest.mark.parametrize("duration", [-1.0, math.inf, math.nan])
def test_a_bad_duration_is_refused(duration: float) -> None:
    with pytest.raises(ValueError, match="duration_s"):
        assign_speakers([], [], duration_s=duration)


def test_clamp() -> None:
    assert clamp(None, 5.0, 2.0) == 2.0
    assert clamp(math.nan, 5.0, 1.0) == 1.0
    assert clamp(-3.0, 5.0, 0.0) == 0.0
    assert clamp(7.0, 5.0, 0.0) == 5.0


times = st.one_of(st.none(), st.floats(min_value=-5.0, max_value=60.0, allow_nan=False))
chunk_lists = st.lists(st.builds(Chunk, st.text(max_size=5), times, times), max_size=12)
turn_lists = st.lists(
    st.builds(
        Turn,
        st.floats(min_value=-2.0, max_value=40.0, allow_nan=False),
        st.floats(min_value=-2.0, max_value=45.0, allow_nan=False),
        st.sampled_from(["SPEAKER_00", "SPEAKER_01", "SPEAKER_02"]),
    ),
    max_size=8,
)


@given(chunks=chunk_lists, turns=turn_lists, duration=st.floats(min_value=0.0, max_value=30.0))
def test_every_chunk_is_assigned_once_to_a_speaker_of_the_diarization(
    chunks: list[Chunk], turns: list[Turn], duration: float
) -> None:
    segments = assign_speakers(chunks, turns, duration)
    assert len(segments) == len(chunks)
    assert [s["text"] for s in segments] == [c.text for c in chunks]
    allowed = {t.speaker for t in turns} or {DEFAULT_SPEAKER}
    for segment in segments:
        assert segment["speaker"] in allowed
        start, end = segment["timestamp"]
        assert 0.0 <= start <= end <= duration
    grouped = group_by_speaker(segments)
    runs = [s["speaker"] for i, s in enumerate(segments) if i == 0 or segments[i - 1]["speaker"] != s["speaker"]]
    assert [g["speaker"] for g in grouped] == runs


def _overlap(start: float, end: float, turns: list[Turn], speaker: str) -> float:
    return sum(max(0.0, min(end, t.end) - max(start, t.start)) for t in turns if t.speaker == speaker)


@given(turns=turn_lists.filter(bool), start=st.floats(0, 30), length=st.floats(0, 10))
def test_the_chosen_speaker_has_the_largest_overlap(turns: list[Turn], start: float, length: float) -> None:
    end = start + length
    chosen = speaker_for(start, end, turns)
    best = max(_overlap(start, end, turns, t.speaker) for t in turns)
    assert chosen in {t.speaker for t in turns}
    assert _overlap(start, end, turns, chosen) == pytest.approx(best)
