"""Turning whatever the user passes into 16 kHz mono float32 samples, or a clear error.

Accepted: a path (wav, flac, ogg through soundfile; mp3, m4a and anything else ffmpeg decodes
through an ffmpeg subprocess), a numpy array or torch tensor with ``sampling_rate``, and the
``{"raw": array, "sampling_rate": int}`` dict of transformers (``"array"`` as datasets names it
works too). Stereo is mixed down and any rate resampled, because both models want 16 kHz mono.
Every failure names the argument: :class:`vramguard.InvalidArgument` for what the caller passed,
:class:`AudioError` for a file that exists but cannot be decoded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import vramguard
from vramguard.asr._errors import AudioError

SAMPLING_RATE = 16_000
SOUNDFILE_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff"})
ACCEPTED_AUDIO = (
    "a path to an audio file (wav, flac, ogg; mp3, m4a and others with ffmpeg), a numpy array or "
    "torch tensor with sampling_rate=, or a {'raw': array, 'sampling_rate': int} dict"
)
_INSTALL_FFMPEG = (
    "ffmpeg is not on PATH; install it (apt-get install ffmpeg, brew install ffmpeg, or "
    "conda install -c conda-forge ffmpeg), or convert the file to wav or flac"
)
_INT_SCALES = {np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2147483648.0, np.dtype(np.int8): 128.0}


@dataclass(frozen=True, eq=False)
class Audio:
    """Decoded audio: ``samples`` is float32 mono at :data:`SAMPLING_RATE`; ``name`` labels exports."""

    samples: np.ndarray[Any, np.dtype[np.float32]]
    name: str = "audio"

    @property
    def sampling_rate(self) -> int:
        return SAMPLING_RATE

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLING_RATE

    def asr_input(self) -> dict[str, Any]:
        """A fresh input dict for transformers' ASR pipeline (it pops keys from the dict it gets)."""
        return {"raw": self.samples, "sampling_rate": SAMPLING_RATE}

    def diarizer_input(self) -> dict[str, Any]:
        """pyannote's in-memory input: a (channel, time) tensor, so no file decoder is needed."""
        return {"waveform": torch.from_numpy(self.samples).unsqueeze(0), "sample_rate": SAMPLING_RATE}


def load_audio(audio: object, *, sampling_rate: int | None = None, argument: str = "audio") -> Audio:
    """Decode ``audio`` to :class:`Audio` (16 kHz mono float32), or raise naming ``argument``."""
    if isinstance(audio, (str, os.PathLike)):
        if sampling_rate is not None:
            raise vramguard.InvalidArgument(
                "sampling_rate", sampling_rate, "None for a file path (the file's own rate is used)"
            )
        path = Path(os.fspath(audio))
        samples, rate = _read_file(path, argument)
        return Audio(_finish(samples, rate, path, argument), name=path.stem or "audio")
    if isinstance(audio, Mapping):
        audio, sampling_rate = _unpack_dict(audio, sampling_rate, argument)
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().to("cpu").numpy()
    if not isinstance(audio, np.ndarray):
        raise vramguard.InvalidArgument(argument, _short(audio), ACCEPTED_AUDIO)
    rate = _check_rate(sampling_rate)
    return Audio(_finish(audio, rate, _short(audio), argument))


def _unpack_dict(data: Mapping[Any, Any], sampling_rate: int | None, argument: str) -> tuple[object, int | None]:
    key = "raw" if "raw" in data else "array" if "array" in data else None
    if key is None or "sampling_rate" not in data:
        raise vramguard.InvalidArgument(
            argument, f"dict with keys {sorted(map(str, data))}", "a dict with 'raw' (or 'array') and 'sampling_rate'"
        )
    rate = data["sampling_rate"]
    if sampling_rate is not None and sampling_rate != rate:
        raise vramguard.InvalidArgument(
            "sampling_rate", sampling_rate, f"None or the dict's own sampling_rate ({rate!r})"
        )
    return data[key], rate


def _check_rate(rate: object) -> int:
    whole_int = isinstance(rate, (int, np.integer)) and not isinstance(rate, bool)
    whole_float = isinstance(rate, float) and rate.is_integer()
    value = int(rate) if whole_int or whole_float else 0  # type: ignore[call-overload]
    if value <= 0:
        raise vramguard.InvalidArgument(
            "sampling_rate", rate, "a positive whole number of Hz (e.g. 16000) for array or tensor audio"
        )
    return value


def _short(value: object) -> object:
    """What an error message shows of a value: arrays by shape and dtype, not their contents."""
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return f"{type(value).__name__}(shape={tuple(value.shape)}, dtype={value.dtype})"
    return value


def check_path(path: str | os.PathLike[str], argument: str = "audio") -> None:
    """Raise :class:`vramguard.InvalidArgument` unless ``path`` is an existing file (cheap: no decoding)."""
    if not os.path.exists(path):
        raise vramguard.InvalidArgument(argument, os.fspath(path), f"an existing file (no such file); {ACCEPTED_AUDIO}")
    if not os.path.isfile(path):
        raise vramguard.InvalidArgument(argument, os.fspath(path), "a file, not a directory")


def _read_file(path: Path, argument: str) -> tuple[np.ndarray[Any, Any], int]:
    check_path(path, argument)
    if path.suffix.lower() in SOUNDFILE_SUFFIXES:
        return _read_soundfile(path, argument)
    return _read_ffmpeg(path, argument), SAMPLING_RATE


def _read_soundfile(path: Path, argument: str) -> tuple[np.ndarray[Any, Any], int]:
    try:
        import soundfile
    except ImportError as error:
        raise vramguard.MissingDependency("soundfile", "asr", f"reading {path.suffix} files") from error
    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, TypeError, ValueError) as error:  # LibsndfileError is a RuntimeError
        raise AudioError(argument, str(path), f"not a readable {path.suffix} file ({error})") from error
    # soundfile gives (frames, channels); the mixer below wants channels first.
    return np.ascontiguousarray(samples.T), int(rate)


def _read_ffmpeg(path: Path, argument: str) -> np.ndarray[Any, Any]:
    """Decode with an ffmpeg subprocess straight to 16 kHz mono float32 (ffmpeg resamples)."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AudioError(argument, str(path), f"decoding {path.suffix or 'this file'} needs ffmpeg: {_INSTALL_FFMPEG}")
    command = [ffmpeg, "-nostdin", "-v", "error", "-i", str(path), "-vn"]
    command += ["-f", "f32le", "-ac", "1", "-ar", str(SAMPLING_RATE), "-"]
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip().splitlines()
        reason = message[-1] if message else f"ffmpeg exited with status {result.returncode}"
        raise AudioError(argument, str(path), f"ffmpeg could not decode it ({reason})")
    return np.frombuffer(result.stdout, dtype=np.float32)


Samples = np.ndarray[Any, np.dtype[np.float32]]


def _finish(samples: np.ndarray[Any, Any], rate: int, source: object, argument: str) -> Samples:
    """Validate, convert to float, mix down and resample."""
    mono = _to_float_mono(samples, source, argument)
    if mono.size == 0:
        raise vramguard.InvalidArgument(argument, source, "non-empty audio (this has 0 samples)")
    if not np.isfinite(mono).all():
        raise vramguard.InvalidArgument(argument, source, "finite samples (this has NaN or infinite values)")
    if rate != SAMPLING_RATE:
        mono = _resample(mono, rate)
    return np.ascontiguousarray(mono, dtype=np.float32)


def _to_float_mono(samples: np.ndarray[Any, Any], source: object, argument: str) -> np.ndarray[Any, Any]:
    if samples.dtype in _INT_SCALES:
        samples = samples.astype(np.float32) / _INT_SCALES[samples.dtype]
    elif samples.dtype == np.uint8:
        samples = (samples.astype(np.float32) - 128.0) / 128.0
    elif samples.dtype.kind == "f":
        samples = samples.astype(np.float32, copy=False)
    else:
        raise vramguard.InvalidArgument(argument, source, "real-valued samples: float, int8/16/32 or uint8")
    if samples.ndim == 1:
        return samples
    if samples.ndim == 2:
        # (channels, samples) or (samples, channels): the channel axis is the short one.
        axis = 0 if samples.shape[0] <= samples.shape[1] else 1
        return samples.mean(axis=axis) if samples.size else samples.reshape(-1)
    raise vramguard.InvalidArgument(argument, source, "1-D samples or 2-D (channels, samples) audio")


def _resample(samples: np.ndarray[Any, Any], rate: int) -> np.ndarray[Any, Any]:
    try:
        import torchaudio.functional
    except ImportError as error:
        # No extra lists torchaudio (pyannote.audio happens to pull it in): name the package itself.
        raise vramguard.MissingDependency("torchaudio", None, f"resampling {rate} Hz audio to 16 kHz") from error
    tensor: torch.Tensor = torchaudio.functional.resample(torch.from_numpy(samples), rate, SAMPLING_RATE)
    return tensor.numpy()
