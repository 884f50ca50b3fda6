"""The scenarios and the release strategies of ``benchmarks/reclaim.py``: what users load, and how
they release it today, verbatim, against vramguard (imported by that script and its children)."""

from __future__ import annotations

import dataclasses
import gc
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import vramguard

ATTRS = ("model", "out", "extra")


class App:
    """The user's application object: a model, its last output and whatever else the scenario keeps."""

    def __init__(self, device: torch.device) -> None:
        self.device = device  # a torch.device, never the string "cuda" whisper-plus's guard compares with
        self.model: Any = None
        self.out: Any = None
        self.extra: Any = None


@dataclasses.dataclass
class Env:
    """What a child knows: the device, where the models were built, and the clock of the release."""

    device: torch.device
    models: Path | None
    small: bool
    loaded_snapshot: vramguard.MemorySnapshot | None = None
    release_started_s: float = 0.0

    def loaded(self) -> None:
        """Called by a strategy once the workload is loaded and has run: the release starts now."""
        gc.disable()  # no automatic collection between this reading and the strategy's own steps
        self.loaded_snapshot = vramguard.snapshot(self.device)
        self.release_started_s = time.perf_counter()

    def empty_cache(self) -> None:
        """The user's ``torch.cuda.empty_cache()`` on this device (``malloc_trim(0)`` on the host)."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        else:
            vramguard.empty_cache(self.device)


# --- Scenarios: build an App on the device, loaded and run once ----------------------------------


def _encoder(env: Env) -> torch.nn.Module:
    width, layers = (256, 2) if env.small else (512, 6)
    layer = torch.nn.TransformerEncoderLayer(
        d_model=width, nhead=8, dim_feedforward=4 * width, batch_first=True, dropout=0.0
    )
    model = torch.nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)
    return model.to(env.device)


def _batch(env: Env, model: torch.nn.Module) -> torch.Tensor:
    width = next(model.parameters()).shape[-1]
    return torch.randn(8, 128, width, device=env.device)


def plain(env: Env) -> App:
    """A model and its output."""
    app = App(env.device)
    app.model = _encoder(env)
    with torch.inference_mode():
        app.out = app.model(_batch(env, app.model))
    return app


def cycle(env: Env) -> App:
    """A model caught in a reference cycle: only ``gc.collect()`` frees it once dropped."""
    app = plain(env)
    app.model.__dict__["owner_ref"] = app.model  # a module that refers to itself (pytorch #50185)
    return app


def hook(env: Env) -> App:
    """A model held by a forward-hook closure that keeps the last activations on the model."""
    app = App(env.device)
    model = _encoder(env)

    def keep_activation(module: torch.nn.Module, inputs: Any, output: Any) -> None:
        model.last_activation = output  # the closure holds ``model``: model -> hooks -> closure -> model

    model.register_forward_hook(keep_activation)
    with torch.inference_mode():
        app.out = model(_batch(env, model))
    app.model = model
    return app


def traceback_(env: Env) -> App:
    """A failed forward pass kept as ``app.extra``: its traceback's frames hold the activations
    (and the frame holding ``app`` closes a cycle through it)."""
    app = App(env.device)
    app.model = _encoder(env)

    def forward(model: torch.nn.Module, x: torch.Tensor) -> None:
        hidden = model(x)
        hidden2 = hidden * 2
        raise RuntimeError(f"shape check failed after {tuple(hidden2.shape)}")

    try:
        with torch.inference_mode():
            forward(app.model, _batch(env, app.model))
    except RuntimeError as error:
        app.extra = error
    return app


def autograd(env: Env) -> App:
    """An output that keeps its autograd graph (the saved activations of a training forward)."""
    app = App(env.device)
    app.model = _encoder(env).train()
    app.out = app.model(_batch(env, app.model)).sum()
    return app


def object_heavy(env: Env) -> App:
    """A model beside a tokenizer-like heap of small Python objects: a vocabulary and merge table."""
    app = plain(env)
    count = 20_000 if env.small else 400_000
    vocab = {f"tok{i:07d}" + "ab" * (i % 5): i for i in range(count)}
    merges = [(f"m{i}", f"n{i}", i) for i in range(count)]
    app.extra = (vocab, merges)
    return app


CLIP, CLIP_S = "clip.wav", 3.0  # the first 3 s of the bundled WAV, written beside the models: a cheap cell


def _audio(env: Env) -> dict[str, Any]:
    import numpy as np

    assert env.models is not None
    with wave.open(str(env.models / CLIP)) as handle:
        frames = handle.readframes(handle.getnframes())
        rate = handle.getframerate()
    return {"raw": np.frombuffer(frames, dtype=np.int16).astype(np.float32) / 32768.0, "sampling_rate": rate}


def _transformers_pipeline(env: Env, size: str) -> App:
    import transformers

    assert env.models is not None
    app = App(env.device)
    app.model = transformers.pipeline("automatic-speech-recognition", model=str(env.models / f"whisper-{size}"),
                                      device=env.device)  # fmt: skip
    app.out = app.model(
        _audio(env), return_timestamps=True, chunk_length_s=30, batch_size=1, generate_kwargs={"max_new_tokens": 8}
    )
    return app


def whisper_tiny(env: Env) -> App:
    """A transformers ASR pipeline with a tiny Whisper."""
    return _transformers_pipeline(env, "tiny")


def whisper_base(env: Env) -> App:
    """A transformers ASR pipeline with whisper-base's architecture (74M parameters)."""
    return _transformers_pipeline(env, "base")


def asr(env: Env) -> App:
    """vramguard's ASR + diarization pipeline (tiny Whisper, tiny pyannote), resident."""
    from vramguard.asr import ASRDiarizationPipeline

    assert env.models is not None
    app = App(env.device)
    app.model = ASRDiarizationPipeline.from_pretrained(
        env.models / "whisper-tiny", env.models / "diarizer", device=env.device, generate_kwargs={"max_new_tokens": 8}
    )
    app.out = app.model(env.models / CLIP)
    return app


SCENARIOS: dict[str, Callable[[Env], App]] = {
    "plain model": plain,
    "reference cycle": cycle,
    "forward-hook closure": hook,
    "transformers pipeline (tiny Whisper)": whisper_tiny,
    "transformers pipeline (whisper-base)": whisper_base,
    "ASR + diarization pipeline": asr,
    "exception traceback": traceback_,
    "autograd graph": autograd,
    "object-heavy heap": object_heavy,
}
QUICK_SCENARIOS = ("plain model",)
NEEDS_MODELS = {
    "transformers pipeline (tiny Whisper)",
    "transformers pipeline (whisper-base)",
    "ASR + diarization pipeline",
}


# --- Strategies: release ``app`` as users write it today ----------------------------------------
# Each returns the user's scope after the release (what the caller's names still hold, measured
# before it goes) and what the strategy told the user about what stayed (None: nothing).

Scope = dict[str, Any]
Outcome = tuple[Scope, str | None]


def bare_del(load: Callable[[], App], env: Env) -> Outcome:
    app = load()
    env.loaded()
    del app
    return {}, None


def whisper_plus_as_written(load: Callable[[], App], env: Env) -> Outcome:
    app = load()
    env.loaded()
    if app.device == "cuda":  # type: ignore[comparison-overlap]  # the maintainer's guard: never true
        env.empty_cache()
    app.model = app.out = app.extra = None
    return {"app": app}, None


def whisper_plus_as_meant(load: Callable[[], App], env: Env) -> Outcome:
    app = load()
    env.loaded()
    env.empty_cache()  # first, while the attributes still hold everything
    app.model = app.out = app.extra = None
    return {"app": app}, None


def whisperx_readme(load: Callable[[], App], env: Env) -> Outcome:
    app = load()
    env.loaded()
    gc.collect()
    env.empty_cache()
    del app
    return {}, None


def _release_memory(*objects: Any) -> Any:
    from accelerate.utils import release_memory

    return release_memory(*objects)


def accelerate_as_copied(load: Callable[[], App], env: Env) -> Outcome:
    app = load()
    env.loaded()
    _release_memory(app.model, app.out, app.extra)
    return {"app": app}, None


def accelerate_as_documented(load: Callable[[], App], env: Env) -> Outcome:
    app = load()
    env.loaded()
    app.model, app.out, app.extra = _release_memory(app.model, app.out, app.extra)
    return {"app": app}, None


def manual_order(load: Callable[[], App], env: Env) -> Outcome:
    app = load()
    env.loaded()
    del app
    gc.collect()
    env.empty_cache()
    return {}, None


def _told(report: vramguard.SessionReport | vramguard.ReleaseReport | None) -> str:
    if report is None:
        return "no report"
    if isinstance(report, vramguard.ReleaseReport):
        survivors = report.survivors
        return f"{len(survivors)} survivor(s) named" if survivors else "report: every object released"
    if report.leaks:
        holders = {leak.holders[0] for leak in report.leaks if leak.holders}
        return f"{len(report.leaks)} leak(s), {len(holders)} holder(s) named"
    return "report: nothing left" + (f"; {len(report.notes)} note(s)" if report.notes else "")


def vramguard_release(load: Callable[[], App], env: Env) -> Outcome:
    app = load()
    env.loaded()
    report = vramguard.release(app, attrs=ATTRS, device=env.device)
    return {"app": app}, _told(report)


def vramguard_session(load: Callable[[], App], env: Env) -> Outcome:
    with vramguard.gpu_session("bench", device=env.device, leaks="ignore") as session:
        app = session.own(load())
        env.loaded()
        del app
    return {}, _told(session.report)


def vramguard_park(load: Callable[[], App], env: Env) -> Outcome:
    park: Any = getattr(vramguard, "park")  # noqa: B009 - absent until parking lands; checked by hasattr
    app = load()
    env.loaded()
    # On the host, parking to host memory would move nothing: park to disk there.
    target = "cpu" if env.device.type == "cuda" else "disk"
    app.out = app.extra = None
    parked = park(app.model, to=target)
    gc.collect()
    env.empty_cache()
    return {"app": app, "parked": parked}, f"parked to {target} (restorable with wake)"


Strategy = Callable[[Callable[[], App], Env], Outcome]
STRATEGIES: dict[str, tuple[Strategy, str]] = {
    "bare del": (bare_del, "del app"),
    "whisper-plus, as written": (
        whisper_plus_as_written,
        'if self.device == "cuda": empty_cache()  (never true); self.model = ... = None',
    ),
    "whisper-plus, as meant": (whisper_plus_as_meant, "empty_cache(); self.model = ... = None"),
    "whisperX README": (whisperx_readme, "gc.collect(); empty_cache(); del app"),
    "accelerate, as copied": (accelerate_as_copied, "release_memory(app.model, app.out, app.extra)"),
    "accelerate, as documented": (
        accelerate_as_documented,
        "app.model, app.out, app.extra = release_memory(app.model, app.out, app.extra)",
    ),
    "manual order": (manual_order, "del app; gc.collect(); empty_cache()"),
    "vramguard.release": (vramguard_release, 'vramguard.release(app, attrs=("model", "out", "extra"))'),
    "vramguard session + own": (vramguard_session, "with gpu_session() as s: app = s.own(load()); ...; del app"),
    "vramguard park": (vramguard_park, 'app.out = app.extra = None; vramguard.park(app.model, to="cpu"|"disk")'),
}
VRAMGUARD = ("vramguard.release", "vramguard session + own", "vramguard park")


def available_strategies() -> list[str]:
    """Every strategy, less ``park`` where ``vramguard.park`` has not landed."""
    return [name for name in STRATEGIES if name != "vramguard park" or hasattr(vramguard, "park")]
