"""``ASRDiarizationPipeline.map(paths, devices=...)``: files spread over devices, one worker process
per device, each loading its own models and running its own sessions; results in input order.

Files are dealt round-robin (the i-th file to check out to worker i mod n). Each worker builds the
pipeline in the mode it is given (the pipeline's mode's ``in_worker``) and runs its ``map``
with ``errors="collect"``, so a failed file fails alone; a worker that dies fails only its own
files, with an error naming its device and exit code. Workers are spawned (never forked: a fork
cannot use CUDA once the parent has), and written against the public API, as any user's would
be. The pipeline's class comes as an argument, so this module, which the pipeline imports, never
imports it back.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch

import vramguard
from vramguard.asr._audio import check_path
from vramguard.asr._records import FileResult, Settings

if TYPE_CHECKING:
    from vramguard.asr._pipeline import ASRDiarizationPipeline

DevicesLike = str | Sequence[str | int | torch.device]
_POLL_S = 1.0


class WorkerFailed(RuntimeError):
    """A device's worker process died before returning its files' results."""


def resolve_worker_devices(devices: object) -> tuple[torch.device, ...]:
    """``"all"``: every visible GPU (the CPU alone on a host); a list: one worker per entry, and
    an entry may repeat (``["cpu", "cpu"]`` is two workers on the host)."""
    if isinstance(devices, str) and devices.strip().lower() == "all":
        return vramguard.resolve_devices("all")
    if not isinstance(devices, (list, tuple)) or not devices:
        raise vramguard.InvalidArgument("devices", devices, '"all", or a list of devices (one worker each)')
    return tuple(vramguard.resolve_device(d, argument="devices") for d in devices)


def _portable(error: Exception) -> Exception:
    """``error`` if it survives pickling, else a RuntimeError with its type and message."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error


def _worker(
    cls: type[ASRDiarizationPipeline],
    settings: Settings,
    mode: str,
    indexed: list[tuple[int, object]],
    options: dict[str, Any],
    out: Any,
) -> None:
    """One device's worker: its own pipeline over its files, in ``mode``; (indices, results,
    reports) back."""
    try:
        pipe = cls.from_pretrained(
            settings.asr_model or "",
            settings.diarizer_model or "",
            device=settings.device,
            torch_dtype=settings.dtype,
            token=settings.token,
            chunk_length_s=settings.chunk_length_s,
            batch_size=settings.batch_size,
            generate_kwargs=settings.generate_kwargs,
            sample_every=settings.sample_every,
            mode=mode,  # type: ignore[arg-type]  # a mode's in_worker: a name in MODES
        )
        with pipe:
            results = pipe.map([source for _, source in indexed], progress=False, errors="collect", **options)
            reports = (*pipe.load_reports, *pipe.last_reports)
        results = [r if r.error is None else replace(r, error=_portable(r.error)) for r in results]
        out.put(("ok", [i for i, _ in indexed], results, reports))
    except Exception as error:  # the worker could not start (a model that does not load)
        out.put(("failed", [i for i, _ in indexed], _portable(error), ()))


def map_over_devices(
    cls: type[ASRDiarizationPipeline],
    settings: Settings,
    mode: str,
    sources: list[object],
    devices: tuple[torch.device, ...],
    options: dict[str, Any],
    labels: list[str],
    *,
    errors: str = "collect",
) -> tuple[list[FileResult], tuple[vramguard.SessionReport, ...]]:
    """Every file's result in input order, and every worker's sessions (load, stages, files),
    each worker running a ``cls`` pipeline in ``mode``.

    Missing files are found here, before any worker starts (``errors="raise"``: raised at once)."""
    if settings.asr_model is None or settings.diarizer_model is None:
        accepted = "devices=None for a pipeline built from loaded pipelines: a worker loads the models by name"
        raise vramguard.InvalidArgument("devices", [str(d) for d in devices], accepted)
    results: dict[int, FileResult] = {}
    for i, source in enumerate(sources):
        if isinstance(source, (str, os.PathLike)):
            try:
                check_path(source)
            except vramguard.InvalidArgument as error:
                if errors == "raise":
                    raise
                results[i] = FileResult(labels[i], None, (), error)
    todo = [(i, s) for i, s in enumerate(sources) if i not in results]
    shares = [todo[w :: len(devices)] for w in range(len(devices))]
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    workers = []
    for device, share in zip(devices, shares, strict=True):
        if not share:
            continue
        process = context.Process(
            target=_worker, args=(cls, replace(settings, device=device), mode, share, options, out), daemon=True
        )
        process.start()
        workers.append((device, share, process))
    reports: list[vramguard.SessionReport] = []
    pending = {id(process): (device, share, process) for device, share, process in workers}
    while pending:
        try:
            status, indices, value, worker_reports = out.get(timeout=_POLL_S)
        except queue.Empty:
            # A worker that died without a word fails its own files, never the others'.
            for key, (device, share, process) in list(pending.items()):
                if not process.is_alive() and process.exitcode is not None:
                    died = WorkerFailed(f"the worker on {device} exited with status {process.exitcode}")
                    for i, _ in share:
                        results[i] = FileResult(labels[i], None, (), died)
                    del pending[key]
            continue
        found = next((k for k, (_, share, _) in pending.items() if [i for i, _ in share] == indices), None)
        if found is None:  # already counted as dead: its files keep that error
            continue
        pending.pop(found)[2].join()
        reports += worker_reports
        if status == "ok":
            results.update(zip(indices, value, strict=True))
        else:
            results.update((i, FileResult(labels[i], None, (), value)) for i in indices)
    return [results[i] for i in range(len(sources))], tuple(reports)
