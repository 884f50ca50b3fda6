"""The reference consumer: who said what, with Whisper (transformers) and pyannote.audio,
built on vramguard's public API as any user's code would be::

    from vramguard.asr import ASRDiarizationPipeline

    with ASRDiarizationPipeline.from_pretrained(
        "openai/whisper-large-v3", "pyannote/speaker-diarization-3.1", device="cuda", mode="staged"
    ) as pipe:
        segments = pipe("meeting.wav", num_speakers=2)
    # [{"speaker": "SPEAKER_00", "text": "...", "timestamp": (0.0, 4.2)}, ...]

Importing this package needs neither transformers nor pyannote.audio; they are imported when a
model is loaded (``pip install 'vramguard[asr]'``). See docs/asr.md.
"""

from __future__ import annotations

from vramguard._lazy import publish
from vramguard.asr._align import DEFAULT_SPEAKER, Chunk, Segment, Turn, assign_speakers, group_by_speaker
from vramguard.asr._audio import SAMPLING_RATE, Audio, load_audio
from vramguard.asr._errors import AudioError, ModelLoadError, PipelineReleased
from vramguard.asr._export import FORMATS, export, to_json, to_rttm, to_srt, to_text, to_vtt
from vramguard.asr._models import TELEMETRY_VARIABLE
from vramguard.asr._pipeline import MODES, ASRDiarizationPipeline, FileResult

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

for _name in __all__:
    publish(__name__, globals()[_name])
