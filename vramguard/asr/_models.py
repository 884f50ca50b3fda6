"""Loading and running the two models: transformers' Whisper ASR pipeline and pyannote's
speaker-diarization pipeline. Memory handling lives in :mod:`vramguard.asr._pipeline`; this
module only knows the libraries' calls and turns their failures into clear errors.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import Any

import torch

import vramguard
from vramguard.asr._align import Chunk, Turn, chunks_from_asr
from vramguard.asr._audio import Audio
from vramguard.asr._errors import ModelLoadError

TELEMETRY_VARIABLE = "PYANNOTE_METRICS_ENABLED"
_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
_MODEL_FORMS = "a hub id (e.g. 'openai/whisper-large-v3') or a local folder (str or os.PathLike)"


def disable_telemetry_unless_set() -> None:
    """Switch pyannote's telemetry off unless the user chose (``PYANNOTE_METRICS_ENABLED``).

    pyannote.audio 4 sends usage metrics to its vendor by default and writes its default into
    the environment when first imported, so this must run before that import.
    """
    os.environ.setdefault(TELEMETRY_VARIABLE, "false")


def import_detached(name: str) -> ModuleType:
    """Import ``name`` on a short-lived thread of its own, the first time.

    Some of pyannote's dependencies keep an ImportError, with its traceback, for the life of the
    process (optuna keeps the one for its optional redis backend). A traceback's frames reach,
    through ``f_back``, every frame that was running when the import happened, with the locals
    those frames end up holding: the loaded pipeline, the caller's audio. On a thread of its
    own, that chain ends at the thread.
    """
    if name.split(".")[0] == "pyannote":
        # Every pyannote import vramguard makes (the loader's, the test builders') goes through
        # here: its telemetry is off unless the user chose, before pyannote sets its default.
        disable_telemetry_unless_set()
    loaded = sys.modules.get(name)
    if loaded is not None:
        return loaded
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["module"] = importlib.import_module(name)
        except BaseException as error:  # re-raised on the caller's thread below
            outcome["error"] = error

    thread = threading.Thread(target=target, name=f"vramguard-import-{name}", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome.pop("error")
    module: ModuleType = outcome.pop("module")
    return module


def check_model(argument: str, model: object) -> str:
    """``model`` as a str, or :class:`vramguard.InvalidArgument` naming ``argument``.

    A path (it starts with ``./``, ``../``, ``/`` or ``~``) must exist: the hub would answer a
    missing one with "Repo id must use alphanumeric chars", after the slow imports. ``~`` is
    expanded (the libraries take it as a hub id)."""
    if isinstance(model, os.PathLike):
        model = os.fspath(model)
    if not isinstance(model, str) or not model.strip():
        raise vramguard.InvalidArgument(argument, model, _MODEL_FORMS)
    if model.startswith(("./", "../", "/", "~", ".\\", "..\\")) or model in (".", ".."):
        local = os.path.expanduser(model)
        if not os.path.exists(local):
            raise vramguard.InvalidArgument(
                argument, model, f"{_MODEL_FORMS}; no such folder: {os.path.abspath(local)}"
            )
        return local
    return model


def resolve_dtype(torch_dtype: object, device: torch.device) -> torch.dtype:
    """None means float16 on CUDA (as Whisper is usually run there) and float32 on the host."""
    if torch_dtype is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(torch_dtype, torch.dtype) and torch_dtype in _DTYPES.values():
        return torch_dtype
    if isinstance(torch_dtype, str) and torch_dtype.removeprefix("torch.") in _DTYPES:
        return _DTYPES[torch_dtype.removeprefix("torch.")]
    raise vramguard.InvalidArgument("torch_dtype", torch_dtype, ["None", *_DTYPES, "or the torch dtypes of these"])


def load_asr(model: str, *, device: torch.device, dtype: torch.dtype, token: str | None) -> Any:
    """transformers' automatic-speech-recognition pipeline for ``model``, on ``device``."""
    try:
        import transformers
    except ImportError as error:
        raise vramguard.MissingDependency("transformers", "asr", "the ASR model") from error
    # transformers 5 renamed torch_dtype to dtype; 4.x knows only torch_dtype.
    dtype_name = "dtype" if "dtype" in inspect.signature(transformers.pipeline).parameters else "torch_dtype"
    options: dict[str, Any] = {dtype_name: dtype, "device": device, "token": token}
    try:
        return transformers.pipeline("automatic-speech-recognition", model=model, **options)
    except vramguard.VramGuardError:
        raise
    except Exception as error:
        raise ModelLoadError("asr_model", model, f"{type(error).__name__}: {error}") from error


def load_diarizer(model: str, *, device: torch.device, token: str | None) -> Any:
    """pyannote's diarization pipeline for ``model`` (hub id, folder or config.yaml), moved to
    ``device`` (whisper-plus leaves it on the CPU)."""
    disable_telemetry_unless_set()
    try:
        pyannote = import_detached("pyannote.audio")
        import_detached("pyannote.audio.pipelines")
    except ImportError as error:
        raise vramguard.MissingDependency("pyannote.audio", "asr", "the diarization model") from error
    try:
        pipeline = pyannote.Pipeline.from_pretrained(model, token=token)
    except Exception as error:
        raise ModelLoadError("diarizer_model", model, f"{type(error).__name__}: {error}") from error
    if pipeline is None:
        # pyannote logs the reason and returns None, e.g. for a gated model without a token.
        raise ModelLoadError(
            "diarizer_model",
            model,
            "pyannote.audio returned no pipeline: a gated hub model needs its conditions accepted "
            "and token=...; offline, pass a local folder or its config.yaml",
        )
    return pipeline.to(device)


def modules_in(obj: object, depth: int = 3) -> Iterator[torch.nn.Module]:
    """The outermost ``nn.Module`` objects reachable from ``obj`` through attributes, dicts and
    lists, ``depth`` levels deep: the weights a pipeline object holds, to evict on release."""
    seen: set[int] = set()
    stack: list[tuple[object, int]] = [(obj, 0)]
    while stack:
        item, level = stack.pop()
        if id(item) in seen or level > depth:
            continue
        seen.add(id(item))
        if isinstance(item, torch.nn.Module):
            yield item
        elif isinstance(item, Mapping):
            stack.extend((value, level + 1) for value in item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend((value, level + 1) for value in item)
        elif hasattr(item, "__dict__") and not isinstance(item, type):
            stack.extend((value, level + 1) for value in vars(item).values())


def transcribe(
    asr: Any, audio: Audio, *, chunk_length_s: float, batch_size: int, generate_kwargs: Mapping[str, Any]
) -> list[Chunk]:
    """Chunked Whisper with timestamps (``return_timestamps=True``) over ``audio``."""
    with torch.inference_mode():
        output = asr(
            audio.asr_input(),
            return_timestamps=True,
            chunk_length_s=chunk_length_s,
            batch_size=batch_size,
            generate_kwargs=dict(generate_kwargs),
            # The chunked long-form algorithm is what this pipeline means to use.
            ignore_warning=True,
        )
    return chunks_from_asr(output)


def diarize(
    diarizer: Any,
    audio: Audio,
    *,
    num_speakers: int | None,
    min_speakers: int | None,
    max_speakers: int | None,
) -> list[Turn]:
    """The speaker turns pyannote finds in ``audio``; the speaker counts reach it unchanged."""
    output = diarizer(
        audio.diarizer_input(), num_speakers=num_speakers, min_speakers=min_speakers, max_speakers=max_speakers
    )
    # pyannote 4 returns a DiarizeOutput; 3.x an Annotation.
    annotation = getattr(output, "speaker_diarization", output)
    return [
        Turn(float(segment.start), float(segment.end), str(label))
        for segment, _, label in annotation.itertracks(yield_label=True)
    ]
