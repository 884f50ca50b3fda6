"""The pipeline end to end on tiny random-weight models and the bundled audio: output, exports,
modes, memory and bad input. The models' text is junk; shapes, types and memory are not."""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("pyannote.audio")

import vramguard
from vramguard.asr import (
    ASRDiarizationPipeline,
    ModelLoadError,
    PipelineReleased,
    load_audio,
    to_json,
    to_rttm,
    to_srt,
    to_vtt,
)

from .conftest import GENERATE
from .test_export import parse_srt, parse_vtt


def check_segments(segments: Any, duration_s: float) -> None:
    assert isinstance(segments, list) and segments
    for segment in segments:
        assert set(segment) == {"speaker", "text", "timestamp"}
        assert isinstance(segment["speaker"], str) and segment["speaker"].startswith("SPEAKER_")
        assert isinstance(segment["text"], str)
        start, end = segment["timestamp"]
        assert isinstance(segment["timestamp"], tuple)
        assert isinstance(start, float) and isinstance(end, float)
        assert 0.0 <= start <= end <= duration_s


def test_output_format_and_types(resident_pipe: ASRDiarizationPipeline, sample_audio: Path) -> None:
    segments = resident_pipe(sample_audio)
    check_segments(segments, load_audio(sample_audio).duration_s)
    # The forced diarizer finds one speaker over the whole file: grouping gives one segment.
    assert [s["speaker"] for s in segments] == ["SPEAKER_00"]
    names = [r.name for r in resident_pipe.last_reports]
    assert names == ["resident run"]
    assert [r.name for r in resident_pipe.load_reports] == ["load asr", "load diarizer"]


def test_every_input_form_gives_the_same_result(resident_pipe: ASRDiarizationPipeline, sample_audio: Path) -> None:
    audio = load_audio(sample_audio)
    expected = resident_pipe(str(sample_audio), group_by_speaker=False)
    assert resident_pipe(audio.samples, sampling_rate=16_000, group_by_speaker=False) == expected
    assert resident_pipe({"raw": audio.samples, "sampling_rate": 16_000}, group_by_speaker=False) == expected
    assert len(expected) >= 1
    assert all(not s["text"].startswith(" ") for s in expected)


def test_exports_of_a_real_result_parse_back(resident_pipe: ASRDiarizationPipeline, sample_audio: Path) -> None:
    segments = resident_pipe(sample_audio, group_by_speaker=False)
    assert len(parse_srt(to_srt(segments))) == len(segments)
    assert [c[2] for c in parse_vtt(to_vtt(segments))] == [s["speaker"] for s in segments]
    assert [d["speaker"] for d in json.loads(to_json(segments))] == [s["speaker"] for s in segments]
    rttm = [line.split() for line in to_rttm(segments, file_id="two_speakers").splitlines()]
    assert all(len(fields) == 10 and fields[1] == "two_speakers" for fields in rttm)


class RecordingDiarizer:
    """Stands in for pyannote's pipeline: records the call, returns ``turns`` (or nothing)."""

    def __init__(self, turns: list[tuple[float, float, str]] | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.turns = turns or []

    def __call__(self, file: dict[str, Any], **options: Any) -> Any:
        from pyannote.core import Annotation, Segment

        self.calls.append({"waveform_shape": tuple(file["waveform"].shape), **options})
        annotation = Annotation()
        for start, end, speaker in self.turns:
            annotation[Segment(start, end)] = speaker
        return type("DiarizeOutput", (), {"speaker_diarization": annotation})()


def test_speaker_counts_reach_pyannote(resident_pipe: ASRDiarizationPipeline, sample_audio: Path) -> None:
    stub = RecordingDiarizer([(0.0, 4.0, "SPEAKER_00"), (4.4, 8.8, "SPEAKER_01")])
    pipe = ASRDiarizationPipeline(resident_pipe.asr_pipeline, stub, device="cpu", generate_kwargs=GENERATE)
    segments = pipe(sample_audio, min_speakers=2, max_speakers=3, group_by_speaker=False)
    pipe(sample_audio, num_speakers=2)
    assert stub.calls[0] == {"waveform_shape": (1, 140340), "num_speakers": None, "min_speakers": 2, "max_speakers": 3}
    assert stub.calls[1]["num_speakers"] == 2
    assert {s["speaker"] for s in segments} <= {"SPEAKER_00", "SPEAKER_01"}
    # The real pyannote pipeline takes them too: asked for two speakers where the forced model
    # finds one, it says so, which shows the count arrived.
    with pytest.warns(UserWarning, match=r"detected number of speakers \(1\).*outside"):
        check_segments(resident_pipe(sample_audio, num_speakers=2), 8.8)
    check_segments(resident_pipe(sample_audio, min_speakers=1, max_speakers=2), 8.8)


def test_an_empty_diarization_gives_one_speaker(resident_pipe: ASRDiarizationPipeline, sample_audio: Path) -> None:
    pipe = ASRDiarizationPipeline(
        resident_pipe.asr_pipeline, RecordingDiarizer(), device="cpu", generate_kwargs=GENERATE
    )
    segments = pipe(sample_audio)
    assert [s["speaker"] for s in segments] == ["SPEAKER_00"]


def test_no_speech_gives_an_empty_list(sample_audio: Path) -> None:
    def silent_asr(inputs: dict[str, Any], **options: Any) -> dict[str, Any]:
        return {"text": "", "chunks": []}

    pipe = ASRDiarizationPipeline(silent_asr, RecordingDiarizer([(0.0, 2.0, "SPEAKER_00")]), device="cpu")
    assert pipe(sample_audio) == []


def test_map_reports_each_file_and_collects_errors(
    resident_pipe: ASRDiarizationPipeline, sample_audio: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio" * 20)
    results = resident_pipe.map([sample_audio, broken, tmp_path / "absent.wav"], errors="collect", progress=True)
    assert [r.ok for r in results] == [True, False, False]
    good, unreadable, missing = results
    assert good.segments
    assert [r.name for r in good.reports] == [f"transcribe {sample_audio}", f"diarize {sample_audio}"]
    assert all(r.peak_allocated_bytes is not None for r in good.reports)
    assert isinstance(unreadable.error, vramguard.VramGuardError) and unreadable.segments is None
    assert isinstance(missing.error, vramguard.InvalidArgument) and missing.reports == ()
    assert "diarize" in capsys.readouterr().err  # the progress bar
    with pytest.raises(vramguard.InvalidArgument, match=r"absent\.wav"):
        resident_pipe.map([sample_audio, tmp_path / "absent.wav"], progress=False)


def _cycle(whisper: Path, diarizer: Path, audio: Path) -> tuple[vramguard.MemorySnapshot, vramguard.ReleaseReport]:
    pipe = ASRDiarizationPipeline.from_pretrained(whisper, diarizer, device="cpu", generate_kwargs=GENERATE)
    pipe(audio)
    loaded = vramguard.snapshot("cpu")
    report = pipe.release_resources()
    return loaded, report


def test_release_brings_host_memory_back(tiny_whisper: Path, tiny_diarizer: Path, sample_audio: Path) -> None:
    # The first cycle loads modules and caches that stay for the life of the process (see
    # shared/host-memory.md): the level to come back to is the one after a warm-up cycle.
    _cycle(tiny_whisper, tiny_diarizer, sample_audio)
    gc.collect()
    before = vramguard.snapshot("cpu")
    loaded, report = _cycle(tiny_whisper, tiny_diarizer, sample_audio)
    after = vramguard.snapshot("cpu")
    assert report.survivors == ()
    assert [step.name for step in report.steps] == ["drop", "gc", "malloc_trim"]
    assert report.dropped and all("ASRDiarizationPipeline." in d for d in report.dropped)
    for field in ("reserved_bytes", "rss_bytes"):  # resident anonymous memory, and all of RSS
        start, peak, end = (getattr(s, field) for s in (before, loaded, after))
        figures = f"{field}: {start >> 20} MiB before, {peak >> 20} MiB loaded, {end >> 20} MiB after release"
        assert peak - start > 20 * 2**20, f"loading should have cost memory; {figures}"
        assert end <= start * 1.05, figures
        assert peak - end >= 0.75 * (peak - start), f"the release returned too little; {figures}"


def test_staged_peak_is_below_resident_peak(tiny_whisper: Path, tiny_diarizer: Path, sample_audio: Path) -> None:
    peaks = {}
    for mode in ("resident", "resident", "staged"):  # the first run warms the process up
        # The malloc figure, sampled: the models stay loaded for whole stages, long enough to be
        # seen. (The session's peak is the resident high-water mark, which also counts the file
        # pages that loading maps in and the libraries first used: noise at this scale.)
        with vramguard.gpu_session(mode, device="cpu", census=False, leaks="ignore", sample_every=0.002) as session:
            with ASRDiarizationPipeline.from_pretrained(
                tiny_whisper, tiny_diarizer, device="cpu", mode=mode, generate_kwargs=GENERATE
            ) as pipe:
                check_segments(pipe(sample_audio), 8.8)
                stages = [r.name for r in pipe.last_reports]
            del pipe
        report = session.report
        assert report is not None and report.timeline is not None and report.before.allocated_bytes is not None
        sampled = [allocated for _, allocated, _, _ in report.timeline.samples if allocated is not None]
        assert sampled, "the run is long enough to be sampled"
        peaks[mode] = max(sampled) - report.before.allocated_bytes
        assert stages == (["resident run"] if mode == "resident" else ["asr stage", "diarizer stage"])
    # Staged never holds both models: its peak is the larger stage, not both plus activations.
    assert peaks["staged"] < peaks["resident"], peaks


def test_a_failing_diarizer_leaves_nothing_loaded(tiny_whisper: Path, tmp_path: Path) -> None:
    from transformers import WhisperForConditionalGeneration

    def whisper_models() -> int:
        gc.collect()
        # type() rather than isinstance(): no attribute access on every object in the process.
        return sum(type(o) is WhisperForConditionalGeneration for o in gc.get_objects())

    bad = tmp_path / "not-a-diarizer"
    bad.mkdir()
    count = whisper_models()
    with pytest.raises(ModelLoadError, match="diarizer_model") as caught:
        ASRDiarizationPipeline.from_pretrained(tiny_whisper, bad, device="cpu")
    assert caught.value.argument == "diarizer_model"
    assert whisper_models() == count
    # A folder that does not exist is refused as an argument, before anything loads (issue 30).
    with pytest.raises(vramguard.InvalidArgument, match=r"asr_model.*no such folder"):
        ASRDiarizationPipeline.from_pretrained(tmp_path / "no-whisper-here", bad, device="cpu")
    assert whisper_models() == count


def test_a_released_pipeline_refuses_to_run(tiny_whisper: Path, tiny_diarizer: Path, sample_audio: Path) -> None:
    with ASRDiarizationPipeline.from_pretrained(tiny_whisper, tiny_diarizer, device="cpu") as pipe:
        assert pipe.asr_pipeline is not None and pipe.diarization_pipeline is not None
    assert pipe.asr_pipeline is None and pipe.diarization_pipeline is None
    with pytest.raises(PipelineReleased):
        pipe(sample_audio)
    staged = ASRDiarizationPipeline.from_pretrained(tiny_whisper, tiny_diarizer, device="cpu", mode="staged")
    assert staged.asr_pipeline is None  # nothing loaded until a call
    staged.release_resources()
    assert staged.map([]) == []  # staged loads per call: still usable (test_staged_peak... runs one)
    assert "mode='staged'" in repr(staged)


@pytest.mark.parametrize(
    ("options", "argument"),
    [
        ({"mode": "eager"}, "mode"),
        ({"device": "tpu"}, "device"),
        ({"chunk_length_s": 0}, "chunk_length_s"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"torch_dtype": "int8"}, "torch_dtype"),
        ({"asr_model": 3}, "asr_model"),
        ({"diarizer_model": ""}, "diarizer_model"),
        ({"generate_kwargs": ["max_new_tokens"]}, "generate_kwargs"),
        ({"sample_every": -1}, "sample_every"),
        ({"token": 123}, "token"),
    ],
)
def test_bad_arguments_are_refused_before_loading(options: dict[str, Any], argument: str) -> None:
    arguments = {"asr_model": "whisper", "diarizer_model": "pyannote", "device": "cpu", **options}
    with pytest.raises(vramguard.InvalidArgument) as caught:
        ASRDiarizationPipeline.from_pretrained(**arguments)
    assert caught.value.argument == argument


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        ({"num_speakers": 0}, "num_speakers"),
        ({"min_speakers": 3, "max_speakers": 2}, "min_speakers"),
        ({"max_speakers": True}, "max_speakers"),
        ({"group_by_speaker": "yes"}, "group_by_speaker"),
        ({"audio": np.zeros(0, dtype=np.float32), "sampling_rate": 16_000}, "audio"),
        ({"audio": [0.1, 0.2]}, "audio"),
        ({"audio": np.zeros(16_000, dtype=np.float32)}, "sampling_rate"),
    ],
)
def test_bad_calls_are_refused(
    resident_pipe: ASRDiarizationPipeline, sample_audio: Path, call: dict[str, Any], argument: str
) -> None:
    options = {"audio": sample_audio, **call}
    with pytest.raises(vramguard.InvalidArgument) as caught:
        resident_pipe(**options)
    assert caught.value.argument == argument
    with pytest.raises(vramguard.InvalidArgument, match="sources"):
        resident_pipe.map(str(sample_audio))
    with pytest.raises(vramguard.InvalidArgument, match="errors"):
        resident_pipe.map([sample_audio], errors="ignore")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("blocked", "module"), [("transformers", "transformers"), ("pyannote.audio", "pyannote.audio")]
)
def test_a_missing_library_says_what_to_install(
    tiny_whisper: Path, tiny_diarizer: Path, monkeypatch: pytest.MonkeyPatch, blocked: str, module: str
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, blocked, None)  # what an absent package looks like to import
    with pytest.raises(vramguard.MissingDependency, match=r"pip install 'vramguard\[asr\]'") as caught:
        ASRDiarizationPipeline.from_pretrained(tiny_whisper, tiny_diarizer, device="cpu")
    assert module in str(caught.value)


def test_importing_the_package_loads_neither_library() -> None:
    import subprocess
    import sys

    code = "import sys, vramguard, vramguard.asr; print(sorted({'transformers', 'pyannote'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


@pytest.mark.gpu
def test_end_to_end_on_cuda(tiny_whisper: Path, tiny_diarizer: Path, sample_audio: Path) -> None:
    for mode in ("resident", "staged"):
        with ASRDiarizationPipeline.from_pretrained(
            tiny_whisper, tiny_diarizer, device="cuda", mode=mode, generate_kwargs=GENERATE
        ) as pipe:
            assert pipe.device.type == "cuda"
            check_segments(pipe(sample_audio), 8.8)
            reports = pipe.last_reports
        assert all(r.device.startswith("cuda") for r in reports)
        assert all(r.peak_increase_bytes and r.peak_increase_bytes > 0 for r in reports)
        # After the last stage's release nothing of the pipeline stays allocated on the device.
        last = reports[-1]
        assert last.after.allocated_bytes is not None and last.before.allocated_bytes is not None
        assert last.after.allocated_bytes <= last.before.allocated_bytes


def test_telemetry_is_off_unless_the_user_chose(monkeypatch: pytest.MonkeyPatch) -> None:
    from vramguard.asr import TELEMETRY_VARIABLE
    from vramguard.asr._models import disable_telemetry_unless_set

    monkeypatch.delenv(TELEMETRY_VARIABLE, raising=False)
    disable_telemetry_unless_set()
    assert os.environ[TELEMETRY_VARIABLE] == "false"
    monkeypatch.setenv(TELEMETRY_VARIABLE, "true")
    disable_telemetry_unless_set()
    assert os.environ[TELEMETRY_VARIABLE] == "true"
