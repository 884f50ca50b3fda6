"""Models and audio for tests, demos and benchmarks, built offline with random weights.

No weights can be downloaded where vramguard's tests run, so these write folders in the
formats the real loaders read: :func:`build_tiny_whisper` one that transformers'
``pipeline("automatic-speech-recognition", model=folder)`` loads, :func:`build_tiny_diarizer`
one that pyannote's ``Pipeline.from_pretrained(folder)`` loads. ``size="base"`` builds the real
whisper-base (about 74M parameters) and pyannote speaker-diarization-3.1 architectures instead,
still with random weights, for realistic memory figures. The text and speakers they produce are
junk; only shapes, timings and memory mean anything.
"""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

import vramguard
from vramguard.asr._models import import_detached

Size = Literal["tiny", "base"]
SIZES = ("tiny", "base")

_WHISPER_SIZES: dict[str, dict[str, int]] = {
    "tiny": {"d_model": 64, "layers": 2, "heads": 2, "ffn": 128},
    "base": {"d_model": 512, "layers": 6, "heads": 8, "ffn": 2048},
}
# Whisper's text vocabulary: 50257 byte-pair tokens before the special tokens.
_TEXT_TOKENS = 50257
_WHISPER_TOKENIZATION = "transformers.models.whisper.tokenization_whisper"
_TASKS = ("<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>")
_DIARIZER_CONFIG = """\
version: 3.1.0
pipeline:
  name: pyannote.audio.pipelines.SpeakerDiarization
  params:
    segmentation: $model/segmentation
    embedding: $model/embedding
    plda: $model/plda
    clustering: VBxClustering
    segmentation_batch_size: 32
    embedding_batch_size: 32
params:
  segmentation:
    min_duration_off: 0.0
  clustering:
    threshold: 0.6
    Fa: 0.07
    Fb: 0.8
"""


def sample_audio_path() -> Path:
    """The bundled 16 kHz mono WAV: two synthetic voices, about 8.8 s (see data/README.md)."""
    return Path(__file__).with_name("data") / "two_speakers.wav"


def _check_size(size: object) -> str:
    if size not in SIZES:
        raise vramguard.InvalidArgument("size", size, SIZES)
    return str(size)


def _module(name: str, feature: str, package: str) -> Any:
    """Import an optional module (untyped here: these builders poke at library internals)."""
    try:
        return import_detached(name)
    except ImportError as error:
        raise vramguard.MissingDependency(package, "asr", feature) from error


def _folder(path: str | os.PathLike[str]) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise vramguard.InvalidArgument("path", path, "a folder path (str or os.PathLike)")
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _whisper_tokenizer() -> Any:
    """A Whisper tokenizer of the real size without merge rules: the 256 byte tokens and
    two-byte fillers up to Whisper's 50257 text tokens (they decode to bytes like any token),
    Whisper's special tokens, then the 1501 timestamp tokens right after ``<|notimestamps|>``
    (Whisper requires that). The real vocabulary size gives the embedding matrix its real shape."""
    transformers = _module("transformers", "build_tiny_whisper", "transformers")
    convert = _module("transformers.convert_slow_tokenizer", "build_tiny_whisper", "transformers")
    whisper = _module(_WHISPER_TOKENIZATION, "build_tiny_whisper", "transformers")
    chars = list(convert.bytes_to_unicode().values())
    tokens = chars + [a + b for a in chars for b in chars][: _TEXT_TOKENS - len(chars)]
    tokenizer = transformers.WhisperTokenizer(
        vocab={token: index for index, token in enumerate(tokens)}, merges=[], pad_token="<|endoftext|>"
    )
    specials = ["<|endoftext|>", "<|startoftranscript|>", *(f"<|{code}|>" for code in whisper.LANGUAGES), *_TASKS]
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    tokenizer.add_tokens([f"<|{i * 0.02:.2f}|>" for i in range(1501)])
    return tokenizer


def build_tiny_whisper(path: str | os.PathLike[str], *, size: Size = "tiny", seed: int = 0) -> Path:
    """Write a random-weight Whisper that transformers' ASR pipeline loads from ``path``.

    Both sizes have Whisper's real vocabulary (51866 tokens, large-v3's). ``size="tiny"``:
    d_model 64 and two layers each side, about 3.6M parameters (15 MB, most of them the
    embedding), runs in a fraction of a second with greedy decoding; ``size="base"``:
    whisper-base's architecture (about 74M parameters, 290 MB).
    """
    checked = _check_size(size)
    folder = _folder(path)
    transformers = _module("transformers", "build_tiny_whisper", "transformers")
    languages = _module(_WHISPER_TOKENIZATION, "build_tiny_whisper", "transformers").LANGUAGES
    tokenizer = _whisper_tokenizer()
    ids: dict[str, int] = {token: tokenizer.convert_tokens_to_ids(token) for token in tokenizer.all_special_tokens}
    eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    dims = _WHISPER_SIZES[checked]
    config = transformers.WhisperConfig(
        vocab_size=len(tokenizer),
        d_model=dims["d_model"],
        encoder_layers=dims["layers"],
        decoder_layers=dims["layers"],
        encoder_attention_heads=dims["heads"],
        decoder_attention_heads=dims["heads"],
        encoder_ffn_dim=dims["ffn"],
        decoder_ffn_dim=dims["ffn"],
        max_source_positions=1500,
        max_target_positions=448,
        decoder_start_token_id=sot,
        eos_token_id=eot,
        pad_token_id=eot,
        bos_token_id=eot,
        begin_suppress_tokens=None,
        suppress_tokens=None,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.WhisperForConditionalGeneration(config)
    # A fresh GenerationConfig: one derived from the model config is rebuilt on load and
    # loses the Whisper-specific fields that timestamps need.
    generation = transformers.GenerationConfig(
        decoder_start_token_id=sot, eos_token_id=eot, pad_token_id=eot, bos_token_id=eot, max_length=448
    )
    generation.is_multilingual = True
    generation.no_timestamps_token_id = ids["<|notimestamps|>"]
    generation.prev_sot_token_id = ids["<|startofprev|>"]
    generation.lang_to_id = {f"<|{code}|>": ids[f"<|{code}|>"] for code in languages}
    generation.task_to_id = {"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]}
    generation.max_initial_timestamp_index = 50
    generation.alignment_heads = [[dims["layers"] - 1, head] for head in range(dims["heads"])]
    model.generation_config = generation
    features = transformers.WhisperFeatureExtractor()
    processor = transformers.WhisperProcessor(feature_extractor=features, tokenizer=tokenizer)
    processor.save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


def _save_pyannote_model(model: Any, folder: Path) -> None:
    """Save a pyannote model the way ``Model.from_pretrained(folder)`` reads it back."""
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint: dict[str, Any] = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": importlib.metadata.version("lightning"),
    }
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, folder / "pytorch_model.bin")


def _write_plda(folder: Path, seed: int) -> None:
    """A synthetic PLDA (pyannote's pipeline always loads one): an orthonormal 256→128 LDA and
    a diagonal PLDA with decreasing between-class variances."""
    folder.mkdir(parents=True, exist_ok=True)
    lda, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((256, 128)))
    np.savez(folder / "xvec_transform.npz", mean1=np.zeros(256), mean2=np.zeros(128), lda=lda)
    np.savez(folder / "plda.npz", mu=np.zeros(128), tr=np.eye(128), psi=np.linspace(10.0, 0.1, 128))


def build_tiny_diarizer(
    path: str | os.PathLike[str],
    *,
    size: Size = "tiny",
    force_speech: bool = False,
    seed: int = 0,
    window_s: float = 10.0,
) -> Path:
    """Write a random-weight speaker-diarization pipeline that pyannote loads from ``path``.

    ``size="tiny"``: a small segmentation model (one LSTM layer of 32) and the WeSpeaker
    ResNet34 embedding (6.6M parameters, 27 MB in all); ``size="base"``: segmentation-3.0's
    architecture (four bidirectional LSTM layers of 128) with the same embedding, as in
    speaker-diarization-3.1. ``force_speech=True`` zeroes the segmentation classifier and biases
    it towards one speaker, so the output is one speaker over the whole file, deterministically.
    ``window_s`` is the window both models see (pyannote's 10 s by default); every file is cut
    into such windows, padded however short it is, so a 2 s window makes a 2 s file's embedding
    step about five times cheaper (for tests and benchmarks of memory, not of diarization).
    Returns the folder (its ``config.yaml`` can be passed too).
    """
    checked = _check_size(size)
    if not isinstance(force_speech, bool):
        raise vramguard.InvalidArgument("force_speech", force_speech, "True or False")
    if isinstance(window_s, bool) or not isinstance(window_s, (int, float)) or not 0.5 <= window_s <= 10.0:
        raise vramguard.InvalidArgument("window_s", window_s, "a number of seconds from 0.5 to 10")
    folder = _folder(path)
    task = _module("pyannote.audio.core.task", "build_tiny_diarizer", "pyannote.audio")
    segmentation_models = _module("pyannote.audio.models.segmentation", "build_tiny_diarizer", "pyannote.audio")
    embedding_models = _module("pyannote.audio.models.embedding", "build_tiny_diarizer", "pyannote.audio")
    Problem, Resolution, Specifications = task.Problem, task.Resolution, task.Specifications
    if checked == "tiny":
        lstm: dict[str, Any] = {"hidden_size": 32, "num_layers": 1}
        linear = {"hidden_size": 32, "num_layers": 1}
    else:
        lstm = {"hidden_size": 128, "num_layers": 4, "bidirectional": True, "monolithic": True, "dropout": 0.5}
        linear = {"hidden_size": 128, "num_layers": 2}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        segmentation = segmentation_models.PyanNet(lstm=lstm, linear=linear)
        segmentation.specifications = Specifications(
            problem=Problem.MONO_LABEL_CLASSIFICATION,
            resolution=Resolution.FRAME,
            duration=float(window_s),
            min_duration=float(window_s),
            classes=["speaker#1", "speaker#2", "speaker#3"],
            powerset_max_classes=2,
            permutation_invariant=True,
        )
        segmentation.build()
        embedding = embedding_models.WeSpeakerResNet34()
        embedding.specifications = Specifications(
            problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=float(window_s)
        )
        embedding.build()
    if force_speech:
        # Powerset class 1 is "speaker#1 alone": every frame becomes that one speaker.
        with torch.no_grad():
            segmentation.classifier.weight.zero_()
            segmentation.classifier.bias.fill_(-10.0)
            segmentation.classifier.bias[1] = 10.0
    _save_pyannote_model(segmentation, folder / "segmentation")
    _save_pyannote_model(embedding, folder / "embedding")
    _write_plda(folder / "plda", seed)
    (folder / "config.yaml").write_text(_DIARIZER_CONFIG)
    return folder
