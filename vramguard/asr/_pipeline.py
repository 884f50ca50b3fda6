"""``ASRDiarizationPipeline``: Whisper + pyannote speaker diarization, each stage in a vramguard session.

The shape is whisper-plus's (``from_pretrained``, call with a file, get speaker-grouped
segments), without its faults: the diarizer is moved to the device, speaker counts reach
pyannote, alignment is by overlap, and memory is released in the order that works.

The modes (``mode=``), one object each in :data:`MODES` (``vramguard/asr/_modes.py``):
``"resident"`` keeps both models loaded, for many files; ``"staged"`` loads the ASR model,
transcribes, releases it, then loads the diarizer, diarizes and releases it, so the peak is the
larger stage rather than the sum (:meth:`~ASRDiarizationPipeline.map` over many files loads each
model once: every file is transcribed, then every file diarized); ``"swap"`` loads both models
once and, per file, parks the idle one (:func:`vramguard.park`: to host memory from CUDA, to a
temporary file on the host) while the other runs: the peak of one model plus the idle one's copy,
at close to resident speed; ``"isolated"`` runs each call staged in a spawned child process
(:func:`vramguard.isolated`): when it returns, everything it held is back, the CUDA context included.

Whisper's ``batch_size`` is adaptive (:func:`vramguard.adaptive_batch`): on an out-of-memory
error the batch shrinks, the size that worked is kept, and it grows back after successes.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Literal

import torch

import vramguard
from vramguard.asr import _align, _models, _spread
from vramguard.asr._align import Chunk, Segment
from vramguard.asr._audio import Audio, load_audio
from vramguard.asr._errors import PipelineReleased
from vramguard.asr._modes import MODES
from vramguard.asr._records import ErrorPolicy, FileResult, Request, Work, label
from vramguard.asr._records import Settings as _Settings

ModeName = Literal["resident", "staged", "swap", "isolated"]
_ATTRS = ("asr_pipeline", "diarization_pipeline")


def _check_positive(argument: str, value: object, *, integer: bool) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value <= 0:
        raise vramguard.InvalidArgument(argument, value, "a positive int" if integer else "a positive number")


def _check_speakers(num: object, low: object, high: object) -> None:
    for name, value in (("num_speakers", num), ("min_speakers", low), ("max_speakers", high)):
        if value is not None:
            _check_positive(name, value, integer=True)
    if isinstance(low, int) and isinstance(high, int) and low > high:
        raise vramguard.InvalidArgument("min_speakers", low, f"at most max_speakers ({high})")


class ASRDiarizationPipeline:
    """Who said what: chunked Whisper transcription aligned with pyannote speaker turns.

    Build with :meth:`from_pretrained`; call with audio; release with
    :meth:`release_resources` or a ``with`` block. ``load_reports`` holds the session reports
    of loading, ``last_reports`` those of the last call's stages (resident: the run; staged: the
    ASR stage and the diarizer stage, loading and release included); :meth:`map` gives each
    file its own transcribe and diarize reports.
    """

    def __init__(
        self,
        asr_pipeline: Any,
        diarization_pipeline: Any,
        *,
        device: str | torch.device | int | None = "auto",
        chunk_length_s: float = 30,
        batch_size: int = 8,
        generate_kwargs: Mapping[str, Any] | None = None,
        sample_every: float | None = None,
    ) -> None:
        """Wrap two loaded pipelines (resident mode); :meth:`from_pretrained` is the usual way in."""
        dev = vramguard.resolve_device(device)
        settings = _make_settings(
            None, None, dev, None, None, chunk_length_s, batch_size, generate_kwargs, sample_every
        )
        self._setup(settings, "resident", asr_pipeline, diarization_pipeline)

    def _setup(self, settings: _Settings, mode: ModeName, asr_pipeline: Any, diarization_pipeline: Any) -> None:
        self._settings = settings
        self.mode: ModeName = mode
        self._mode = MODES[mode]  # how this pipeline loads, maps files and releases
        self.asr_pipeline: Any = asr_pipeline
        self.diarization_pipeline: Any = diarization_pipeline
        self.load_reports: tuple[vramguard.SessionReport, ...] = ()
        self.last_reports: tuple[vramguard.SessionReport, ...] = ()
        self._released = False
        self._parked: dict[str, Any] = {}  # swap mode: the parked model's handle, by stage
        # One adaptive function per pipeline: the batch size that fits is learned across calls.
        self._transcribe_batched = vramguard.adaptive_batch(
            _transcribe_batch, start=settings.batch_size, device=settings.device
        )

    @property
    def device(self) -> torch.device:
        return self._settings.device

    # -- building -----------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        asr_model: str | os.PathLike[str] = "openai/whisper-large-v3",
        diarizer_model: str | os.PathLike[str] = "pyannote/speaker-diarization-3.1",
        *,
        chunk_length_s: float = 30,
        batch_size: int = 8,
        device: str | torch.device | int | None = "auto",
        torch_dtype: torch.dtype | str | None = None,
        token: str | None = None,
        mode: ModeName = "resident",
        generate_kwargs: Mapping[str, Any] | None = None,
        sample_every: float | None = None,
    ) -> ASRDiarizationPipeline:
        """Load the ASR model (hub id or folder) and the diarizer (hub id, folder or config.yaml).

        ``mode`` is one of :data:`MODES`: ``"resident"`` and ``"swap"`` load both now, each in a
        session; ``"staged"`` loads nothing until a call; ``"isolated"`` runs each call staged in
        a child process that returns everything it held. ``torch_dtype`` None is float16 on CUDA, float32 on the host.
        ``generate_kwargs`` reach Whisper's ``generate`` (``language``, ``max_new_tokens``, ...).
        ``sample_every`` (seconds) records a memory timeline in each stage's report, for plots.
        If the diarizer fails to load, the ASR model already loaded is released before the
        error is raised.
        """
        if not isinstance(mode, str) or mode not in MODES:
            raise vramguard.InvalidArgument("mode", mode, tuple(MODES))
        if token is not None and not isinstance(token, str):
            raise vramguard.InvalidArgument("token", "<hidden>", "None or a hub token (str)")
        dev = vramguard.resolve_device(device)
        settings = _make_settings(
            _models.check_model("asr_model", asr_model),
            _models.check_model("diarizer_model", diarizer_model),
            dev,
            _models.resolve_dtype(torch_dtype, dev),
            token,
            chunk_length_s,
            batch_size,
            generate_kwargs,
            sample_every,
        )
        pipe = cls.__new__(cls)
        pipe._setup(settings, mode, None, None)
        reports: list[vramguard.SessionReport] = []
        pipe._mode.load(pipe, reports)
        pipe.load_reports = tuple(reports)
        return pipe

    def _load_asr(self) -> Any:
        s = self._settings
        assert s.asr_model is not None
        return _models.load_asr(s.asr_model, device=s.device, dtype=s.dtype, token=s.token)

    def _load_diarizer(self) -> Any:
        s = self._settings
        assert s.diarizer_model is not None
        return _models.load_diarizer(s.diarizer_model, device=s.device, token=s.token)

    # -- memory -------------------------------------------------------------------------------
    @contextmanager
    def _session(
        self, name: str, reports: list[vramguard.SessionReport], *, release: bool = True, census: bool = False
    ) -> Iterator[vramguard.GpuSession]:
        """A measured (and by default released) stage; its report is appended to ``reports``
        even on failure.

        The census is off for a stage that runs a model: its outputs are plain Python data, and
        tracking every tensor created while a model runs costs time for nothing to report.
        Without it the leak figure is every byte the stage added beyond what it kept, so a
        load stage turns it on (0.3 s for the tiny models here).
        """
        session = vramguard.gpu_session(
            name,
            device=self.device,
            release=release,
            leaks="ignore",
            census=census,
            sample_every=self._settings.sample_every if release else None,
        )
        try:
            with session:
                yield session
        finally:
            if session.report is not None:
                reports.append(session.report)

    def release_resources(self) -> vramguard.ReleaseReport:
        """Drop both models and release their memory in order (references, gc, synchronize,
        empty the cache); returns vramguard's report. The pipeline cannot run afterwards in
        resident or swap mode (a staged pipeline loads its models per call and stays usable)."""
        self._released = self._mode.keeps_models
        self._mode.release(self)
        return vramguard.release(self, attrs=_ATTRS, device=self.device)

    def __enter__(self) -> ASRDiarizationPipeline:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release_resources()

    # -- running ------------------------------------------------------------------------------
    def __call__(
        self,
        audio: object,
        *,
        sampling_rate: int | None = None,
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
        group_by_speaker: bool = True,
    ) -> list[Segment]:
        """Transcribe and diarize ``audio``: ``[{"speaker", "text", "timestamp": (start, end)}]``.

        ``audio``: a path, an array or tensor with ``sampling_rate``, or a
        ``{"raw", "sampling_rate"}`` dict. With ``group_by_speaker`` (the default, as
        whisper-plus) consecutive chunks of one speaker are merged.
        """
        decoded = load_audio(audio, sampling_rate=sampling_rate)
        [result] = self.map(
            [decoded],
            num_speakers=num_speakers,
            min_speakers=min_speakers,
            max_speakers=max_speakers,
            group_by_speaker=group_by_speaker,
            progress=False,
        )
        assert result.segments is not None
        return result.segments

    def map(
        self,
        sources: Iterable[object],
        *,
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
        group_by_speaker: bool = True,
        progress: bool = True,
        errors: ErrorPolicy = "raise",
        devices: _spread.DevicesLike | None = None,
        on_result: Callable[[FileResult], None] | None = None,
    ) -> list[FileResult]:
        """Process many files (or any audio :meth:`__call__` takes), one :class:`FileResult` each.

        ``progress`` shows a rich progress bar on stderr. ``errors="collect"`` records a file's
        failure in its result and goes on; ``"raise"`` stops at the first. Staged mode loads
        each model once for all files. ``devices`` (``"all"``, or a list such as ``[0, 1]`` or
        ``["cpu", "cpu"]``) spreads the files over one spawned worker process per device, each
        with its own models and sessions, in this pipeline's mode (an isolated pipeline's workers
        run staged: each worker is a process of its own already); results come back in input
        order, a failed file fails alone, and ``errors="raise"`` raises the first failed file's
        error once all are done. ``on_result`` is called with each file's result, in input order,
        as soon as the file is done (resident and swap: file by file; staged: in the diarizer
        stage; isolated and ``devices``: when the children return), so a caller keeps what was
        finished if the call is interrupted; ``last_reports`` then holds the stages that ended.
        """
        _check_speakers(num_speakers, min_speakers, max_speakers)
        if errors not in ("raise", "collect"):
            raise vramguard.InvalidArgument("errors", errors, ("raise", "collect"))
        if not isinstance(group_by_speaker, bool):
            raise vramguard.InvalidArgument("group_by_speaker", group_by_speaker, "True or False")
        if isinstance(sources, (str, bytes, Mapping)) or hasattr(sources, "__fspath__"):
            raise vramguard.InvalidArgument("sources", label(sources), "an iterable of audio (e.g. a list of paths)")
        if self._released:
            raise PipelineReleased()
        counts = {"num_speakers": num_speakers, "min_speakers": min_speakers, "max_speakers": max_speakers}
        if on_result is not None and not callable(on_result):
            raise vramguard.InvalidArgument("on_result", on_result, "None or a function of a FileResult")
        if devices is None:
            reports: list[vramguard.SessionReport] = []
            try:
                return self._mode.map(
                    self, list(sources), Request(counts, group_by_speaker, errors, progress, on_result), reports
                )
            finally:
                self.last_reports = tuple(reports)
        targets = _spread.resolve_worker_devices(devices)
        items = list(sources)
        results, self.last_reports = _spread.map_over_devices(
            type(self),
            self._settings,
            self._mode.in_worker,
            items,
            targets,
            {**counts, "group_by_speaker": group_by_speaker},
            [label(source) for source in items],
            errors=errors,
        )
        if on_result is not None:  # all at once: the workers hand them back when all are done
            for result in results:
                on_result(result)
        failed = next((r.error for r in results if r.error is not None), None)
        if errors == "raise" and failed is not None:
            raise failed
        return results

    def _step(
        self,
        stage: str,
        item: Work,
        errors: ErrorPolicy,
        advance: Callable[[str], None],
        model: Any,
        action: Callable[..., None],
        *args: Any,
    ) -> None:
        """Run one stage on one file in a measuring session, unless the file already failed."""
        if item.error is None:
            try:
                if item.audio is None:
                    item.audio = item.source if isinstance(item.source, Audio) else load_audio(item.source)
                with self._session(f"{stage} {item.label}", item.reports, release=False):
                    action(model, item, *args)
            except Exception as error:
                if errors == "raise":
                    raise
                # A kept traceback's frames would hold the model and the audio alive.
                traceback.clear_frames(error.__traceback__)
                item.error, item.audio = error, None
        advance(f"{stage} {item.label}")

    def _transcribe(self, asr: Any, item: Work) -> None:
        s = self._settings
        assert item.audio is not None
        item.chunks = self._transcribe_batched(asr, item.audio, s)

    @staticmethod
    def _diarize(diarizer: Any, item: Work, counts: Mapping[str, int | None]) -> None:
        assert item.audio is not None and item.chunks is not None
        turns = _models.diarize(diarizer, item.audio, **counts)
        item.segments = _align.assign_speakers(item.chunks, turns, item.audio.duration_s)

    def __repr__(self) -> str:
        s = self._settings
        return (
            f"ASRDiarizationPipeline(asr_model={s.asr_model!r}, diarizer_model={s.diarizer_model!r}, "
            f"device={str(s.device)!r}, mode={self.mode!r})"
        )


def _make_settings(
    asr_model: str | None,
    diarizer_model: str | None,
    device: torch.device,
    dtype: torch.dtype | None,
    token: str | None,
    chunk_length_s: object,
    batch_size: object,
    generate_kwargs: Mapping[str, Any] | None,
    sample_every: float | None,
) -> _Settings:
    _check_positive("chunk_length_s", chunk_length_s, integer=False)
    _check_positive("batch_size", batch_size, integer=True)
    if sample_every is not None:
        _check_positive("sample_every", sample_every, integer=False)
    if generate_kwargs is not None and not isinstance(generate_kwargs, Mapping):
        raise vramguard.InvalidArgument("generate_kwargs", generate_kwargs, "None or a dict of generate() options")
    assert isinstance(chunk_length_s, (int, float)) and isinstance(batch_size, int)
    return _Settings(
        asr_model,
        diarizer_model,
        device,
        dtype if dtype is not None else torch.float32,
        token,
        float(chunk_length_s),
        batch_size,
        dict(generate_kwargs or {}),
        sample_every,
    )


def _transcribe_batch(batch_size: int, asr: Any, audio: Audio, settings: _Settings) -> list[Chunk]:
    """Whisper over ``audio`` at ``batch_size``: the function :func:`vramguard.adaptive_batch` sizes."""
    return _models.transcribe(
        asr,
        audio,
        chunk_length_s=settings.chunk_length_s,
        batch_size=batch_size,
        generate_kwargs=settings.generate_kwargs,
    )
