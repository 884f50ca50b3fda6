"""Errors of the ASR pipeline, under vramguard's one base class.

The tree (the core's errors are in :mod:`vramguard.core._errors`)::

    VramGuardError
    ├── InvalidArgument (also ValueError)   a bad argument: a missing file, empty audio, a wrong type
    ├── MissingDependency (also ImportError) transformers, pyannote.audio or soundfile not installed
    ├── AudioError                          a file that exists but cannot be decoded (or needs ffmpeg)
    ├── ModelLoadError                      a model that cannot be loaded; anything loaded before it
    │                                       was released before this was raised
    └── PipelineReleased                    a resident pipeline called after release_resources()
"""

from __future__ import annotations

import vramguard


class AudioError(vramguard.VramGuardError):
    """Audio that exists but cannot be decoded; names the argument, the file and the reason."""

    def __init__(self, argument: str, source: object, reason: str) -> None:
        self.argument = argument
        self.source = source
        self.reason = reason
        super().__init__(f"cannot read {argument}={source!r}: {reason}")


class ModelLoadError(vramguard.VramGuardError):
    """A model could not be loaded; names the argument and the model, and chains the cause."""

    def __init__(self, argument: str, model: object, reason: str) -> None:
        self.argument = argument
        self.model = model
        self.reason = reason
        super().__init__(f"cannot load {argument}={model!r}: {reason}")


class PipelineReleased(vramguard.VramGuardError):
    """A resident pipeline was called after :meth:`release_resources` dropped its models."""

    def __init__(self) -> None:
        super().__init__(
            "this pipeline's models were released by release_resources(); "
            "load them again with ASRDiarizationPipeline.from_pretrained(...)"
        )
