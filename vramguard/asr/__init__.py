"""The reference consumer: who said what, with Whisper (transformers) and pyannote.audio,
built on vramguard's public API as any user's code would be::

    from vramguard.asr import ASRDiarizationPipeline

    with ASRDiarizationPipeline.from_pretrained(
        "openai/whisper-large-v3", "pyannote/speaker-diarization-3.1", device="cuda", mode="staged"
    ) as pipe:  # mode: one of MODES (resident, staged, swap, isolated)
        segments = pipe("meeting.wav", num_speakers=2)
    # [{"speaker": "SPEAKER_00", "text": "...", "timestamp": (0.0, 4.2)}, ...]

Importing this package needs neither transformers nor pyannote.audio; they are imported when a
model is loaded (``pip install 'vramguard[asr]'``). See docs/asr.md.
"""

from __future__ import annotations

import typing

from vramguard import _lazy

# Each public name, written once: the module that defines it. Loaded on first use (see
# vramguard._lazy: an eager import here can deadlock across threads).
_LAZY = {
    "DEFAULT_SPEAKER": "vramguard.asr._align",
    "Chunk": "vramguard.asr._align",
    "Segment": "vramguard.asr._align",
    "Turn": "vramguard.asr._align",
    "assign_speakers": "vramguard.asr._align",
    "group_by_speaker": "vramguard.asr._align",
    "SAMPLING_RATE": "vramguard.asr._audio",
    "Audio": "vramguard.asr._audio",
    "load_audio": "vramguard.asr._audio",
    "AudioError": "vramguard.asr._errors",
    "ModelLoadError": "vramguard.asr._errors",
    "PipelineReleased": "vramguard.asr._errors",
    "FORMATS": "vramguard.asr._export",
    "export": "vramguard.asr._export",
    "to_json": "vramguard.asr._export",
    "to_rttm": "vramguard.asr._export",
    "to_srt": "vramguard.asr._export",
    "to_text": "vramguard.asr._export",
    "to_vtt": "vramguard.asr._export",
    "TELEMETRY_VARIABLE": "vramguard.asr._models",
    "MODES": "vramguard.asr._modes",
    "ASRDiarizationPipeline": "vramguard.asr._pipeline",
    "FileResult": "vramguard.asr._records",
}

if typing.TYPE_CHECKING:  # generated from _LAZY: tests/project/test_exported_members.py
    from vramguard.asr._align import DEFAULT_SPEAKER, Chunk, Segment, Turn, assign_speakers, group_by_speaker
    from vramguard.asr._audio import SAMPLING_RATE, Audio, load_audio
    from vramguard.asr._errors import AudioError, ModelLoadError, PipelineReleased
    from vramguard.asr._export import FORMATS, export, to_json, to_rttm, to_srt, to_text, to_vtt
    from vramguard.asr._models import TELEMETRY_VARIABLE
    from vramguard.asr._modes import MODES
    from vramguard.asr._pipeline import ASRDiarizationPipeline
    from vramguard.asr._records import FileResult

    __all__ = [
        "DEFAULT_SPEAKER",
        "FORMATS",
        "MODES",
        "SAMPLING_RATE",
        "TELEMETRY_VARIABLE",
        "ASRDiarizationPipeline",
        "Audio",
        "AudioError",
        "Chunk",
        "FileResult",
        "ModelLoadError",
        "PipelineReleased",
        "Segment",
        "Turn",
        "assign_speakers",
        "export",
        "group_by_speaker",
        "load_audio",
        "to_json",
        "to_rttm",
        "to_srt",
        "to_text",
        "to_vtt",
    ]
else:  # hidden from mypy, which then still flags unknown names
    __getattr__, __dir__, __all__ = _lazy.attach(__name__, _LAZY)
