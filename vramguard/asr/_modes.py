"""The pipeline's modes, one object each behind one interface: how it loads, how it maps files,
how it releases. :class:`ASRDiarizationPipeline`, its device workers and ``vramguard asr --mode``
take them from :data:`MODES`, so a mode is described (and added) here only.

- ``resident``: both models loaded by ``from_pretrained`` and kept until ``release_resources()``.
- ``staged``: nothing kept; per call, load Whisper, transcribe every file, release; then load the
  diarizer, diarize every file, release. The peak is the larger stage, not the sum.
- ``swap``: both models loaded once; per file the idle one is parked (:func:`vramguard.park`: to
  host memory from CUDA, to a temporary file on the host) while the other runs.
- ``isolated``: each call runs staged in a spawned child process (:func:`vramguard.isolated`):
  when it returns, everything it held is back, the CUDA context included.
"""

from __future__ import annotations

import functools
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

import vramguard
from vramguard.asr._audio import check_path
from vramguard.asr._models import modules_in
from vramguard.asr._records import FileResult, Request, Settings, Work, label

if TYPE_CHECKING:  # the modes act on the pipeline, which imports them: a type only
    from vramguard.asr._pipeline import ASRDiarizationPipeline

Outcome = tuple[list[FileResult], tuple[vramguard.SessionReport, ...]]
Reports = list[vramguard.SessionReport]


class Mode(ABC):
    """One way of running the pipeline. ``summary`` is its one line in the CLI's help and
    docs/asr.md; ``keeps_models``: loaded by ``from_pretrained`` and held until
    ``release_resources()``, after which the pipeline cannot run; ``in_worker``: the mode each
    worker of ``map(devices=...)`` runs (a worker is its own process already)."""

    name: ClassVar[str]
    summary: ClassVar[str]
    keeps_models: ClassVar[bool]
    in_worker: ClassVar[str]

    def load(self, pipe: ASRDiarizationPipeline, reports: list[vramguard.SessionReport]) -> None:
        """What ``from_pretrained`` loads now, each load in a session appended to ``reports``."""
        return None  # by default nothing: the models are loaded when a call needs them

    @abstractmethod
    def map(
        self, pipe: ASRDiarizationPipeline, sources: list[object], request: Request, reports: Reports
    ) -> list[FileResult]:
        """Every file's result, in order, each also handed to ``request.on_result`` once done;
        the call's stage reports appended to ``reports`` as each stage ends (an interrupted call
        keeps those it finished)."""

    def release(self, pipe: ASRDiarizationPipeline) -> None:
        """What goes before ``release_resources()`` drops the models."""
        return None  # by default nothing: the models are all there is to drop

    def __repr__(self) -> str:
        return f"<vramguard.asr mode {self.name!r}>"


def _load_both(
    pipe: ASRDiarizationPipeline,
    reports: list[vramguard.SessionReport],
    loaded: Callable[[vramguard.GpuSession], None] = lambda session: None,
) -> None:
    try:
        # A load's session counts tensors (census=True): what it keeps is the loaded pipeline,
        # and the memory a loader takes besides tensors (imports, tokenizers) is part of
        # loading, not a leak of it.
        with pipe._session("load asr", reports, census=True) as session:
            pipe.asr_pipeline = pipe._load_asr()
            session.keep(pipe.asr_pipeline)
            loaded(session)
        with pipe._session("load diarizer", reports, census=True) as session:
            pipe.diarization_pipeline = pipe._load_diarizer()
            session.keep(pipe.diarization_pipeline)
            loaded(session)
    except BaseException:
        # Nothing half-loaded stays: drop what was loaded before the failure.
        pipe.release_resources()
        raise


@dataclass(frozen=True)
class _Steps:
    """What a mode's loop reports: a stage of a file ended (the progress bar); a file is done."""

    advance: Callable[[str], None]
    done: Callable[[Work], None]


class _InProcess(Mode):
    """A mode that runs the files in this process: missing files are found before any model
    loads, and a progress bar counts each file's two stages."""

    def map(
        self, pipe: ASRDiarizationPipeline, sources: list[object], request: Request, reports: Reports
    ) -> list[FileResult]:
        work = [Work(source, label(source)) for source in sources]
        for item in work:
            if isinstance(item.source, (str, os.PathLike)):
                try:
                    check_path(item.source)
                except vramguard.InvalidArgument as error:
                    if request.errors == "raise":
                        raise
                    item.error = error
        results: list[FileResult] = []

        def done(item: Work) -> None:
            results.append(item.result(request.group_by_speaker))
            if request.on_result is not None:
                request.on_result(results[-1])

        if any(item.error is None for item in work):  # no model loaded for nothing
            with _progress(request.progress, 2 * len(work)) as advance:
                self._run(pipe, work, request, _Steps(advance, done), reports)
        for item in work[len(results) :]:
            done(item)
        return results

    @abstractmethod
    def _run(
        self,
        pipe: ASRDiarizationPipeline,
        work: list[Work],
        request: Request,
        steps: _Steps,
        reports: Reports,
    ) -> None: ...


class Resident(_InProcess):
    name = "resident"
    summary = "both models loaded together, for many files"
    keeps_models = True
    in_worker = "resident"

    def load(self, pipe: ASRDiarizationPipeline, reports: list[vramguard.SessionReport]) -> None:
        _load_both(pipe, reports)

    def _run(
        self,
        pipe: ASRDiarizationPipeline,
        work: list[Work],
        request: Request,
        steps: _Steps,
        reports: Reports,
    ) -> None:
        # One released session around the run; per-file sessions only measure, because each
        # release runs a full gc.collect() (about 0.3 s with both libraries loaded).
        with pipe._session("resident run", reports):
            for item in work:
                _both_steps(pipe, item, request, steps)


class Staged(_InProcess):
    name = "staged"
    summary = "one model at a time, loaded per call, so the peak is the larger stage"
    keeps_models = False
    in_worker = "staged"

    def _run(
        self,
        pipe: ASRDiarizationPipeline,
        work: list[Work],
        request: Request,
        steps: _Steps,
        reports: Reports,
    ) -> None:
        # Each model loaded once for all files: every file transcribed, then every file diarized.
        with pipe._session("asr stage", reports) as stage:
            asr = _own(stage, pipe._load_asr())
            for item in work:
                pipe._step("transcribe", item, request.errors, steps.advance, asr, pipe._transcribe)
                item.audio = None  # decoded again in the second pass, not held across it
            del asr
        with pipe._session("diarizer stage", reports) as stage:
            diarizer = _own(stage, pipe._load_diarizer())
            for item in work:
                pipe._step("diarize", item, request.errors, steps.advance, diarizer, pipe._diarize, request.counts)
                item.audio = None
                steps.done(item)
            del diarizer


def _both_steps(
    pipe: ASRDiarizationPipeline,
    item: Work,
    request: Request,
    steps: _Steps,
    switch: Callable[[str], None] | None = None,
) -> None:
    """One file through both resident models (``switch`` first brings each in: swap mode)."""
    if switch is not None:
        switch("asr")
    pipe._step("transcribe", item, request.errors, steps.advance, pipe.asr_pipeline, pipe._transcribe)
    if switch is not None:
        switch("diarizer")
    pipe._step("diarize", item, request.errors, steps.advance, pipe.diarization_pipeline, pipe._diarize, request.counts)
    item.audio = None
    steps.done(item)


def _own(session: vramguard.GpuSession, pipeline: Any) -> Any:
    """Hand a loaded pipeline to a stage session: its modules are evicted to the meta device at
    the stage's end, so their memory returns even if something else holds them."""
    for module in modules_in(pipeline):
        session.own(module, evict=True)
    return session.own(pipeline)


class Swap(_InProcess):
    name = "swap"
    summary = "both models loaded once, the idle one parked (host memory or a file) while the other runs"
    keeps_models = True
    in_worker = "swap"

    def load(self, pipe: ASRDiarizationPipeline, reports: list[vramguard.SessionReport]) -> None:
        # Each parked before the next loads: the load peak is one model.
        _load_both(pipe, reports, lambda session: _switch(pipe, session, None))

    def _run(
        self,
        pipe: ASRDiarizationPipeline,
        work: list[Work],
        request: Request,
        steps: _Steps,
        reports: Reports,
    ) -> None:
        with pipe._session("swap run", reports) as run:
            for item in work:
                _both_steps(pipe, item, request, steps, functools.partial(_switch, pipe, run, item=item))
            _switch(pipe, run, None)  # both parked between calls

    def release(self, pipe: ASRDiarizationPipeline) -> None:
        pipe._parked.clear()  # the parked models' host copies or files go with them


def _switch(
    pipe: ASRDiarizationPipeline, session: vramguard.GpuSession, active: str | None, item: Work | None = None
) -> None:
    """Park every loaded model but ``active`` (first, so its memory is free), then wake
    ``active``; each a marked step of ``session``. Skipped for a failed file."""
    if item is not None and item.error is not None:
        return
    to = "cpu" if pipe.device.type == "cuda" else "disk"  # the host's own memory is what a park frees there
    for name, pipeline in (("asr", pipe.asr_pipeline), ("diarizer", pipe.diarization_pipeline)):
        if name != active and name not in pipe._parked and pipeline is not None:
            pipe._parked[name] = session.park(pipeline, to=to)
    if active is not None and active in pipe._parked:
        session.wake(pipe._parked.pop(active))


class Isolated(Mode):
    name = "isolated"
    summary = "each call staged in a child process, which gives everything back when it ends"
    keeps_models = False
    in_worker = "staged"  # the worker is the child process already

    def map(
        self, pipe: ASRDiarizationPipeline, sources: list[object], request: Request, reports: Reports
    ) -> list[FileResult]:
        options: dict[str, Any] = {**request.counts, "group_by_speaker": request.group_by_speaker}
        options["errors"] = request.errors
        outcome = vramguard.isolated(_map_staged, type(pipe), pipe._settings, sources, options, device=pipe.device)
        results, stages = outcome.value
        reports += [*stages, *(() if outcome.report is None else (outcome.report,))]
        for result in results:  # all at once: the child hands them back together
            if request.on_result is not None:
                request.on_result(result)
        return results


def _map_staged(
    cls: type[ASRDiarizationPipeline], settings: Settings, sources: list[object], options: dict[str, Any]
) -> Outcome:
    """The isolated mode's child: a staged pipeline over ``sources``, results and reports back.
    (The class comes as an argument: this module is below the pipeline's.)"""
    pipe = cls.__new__(cls)
    pipe._setup(settings, "staged", None, None)
    results = pipe.map(sources, progress=False, **options)
    return results, pipe.last_reports


@contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Callable[[str], None]]:
    """A rich progress bar on stderr when enabled and rich is installed; otherwise a no-op."""
    if enabled and total:
        try:
            from rich.console import Console
            from rich.progress import Progress
        except ImportError:
            enabled = False
    if not enabled or not total:
        yield lambda description: None
        return
    with Progress(console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task("asr", total=total)
        yield lambda description: bar.update(task, advance=1, description=description)


MODES: Mapping[str, Mode] = MappingProxyType({mode.name: mode for mode in (Resident(), Staged(), Swap(), Isolated())})
"""Every mode by name, in the order the CLI and the docs list them."""
