"""Gathering every rank's report into a :class:`ClusterReport`, with a timeout.

A collective waits forever (or for the backend's 30-minute default) for a rank that never comes,
and a rank whose block raised, hung or died never comes. So the gather first checks in through
the process group's store: each rank sets its key and waits for everyone's, up to ``timeout_s``;
on a timeout every waiting rank knows exactly which keys are missing and raises
:class:`ClusterError` naming those ranks. Only when all ranks have checked in does it run
``all_gather_object``, which then cannot block. The store is the TCPStore behind every backend
(gloo, NCCL), so the same protocol works on all of them.

Under NCCL the object collective runs on the *current* CUDA device, not on the session's: the
gather selects the session's device around it (see :func:`gather_device`).
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import threading
from collections.abc import Sequence
from typing import Any

import torch

from vramguard.core._errors import ClusterError, InvalidArgument, SessionError
from vramguard.core._records import SessionReport
from vramguard.distributed._cluster import ClusterReport, RankReport, rank_report_from_dict
from vramguard.probes import cuda_initialized

DEFAULT_TIMEOUT_S = 60.0
"""How long a rank waits at a distributed session's exit for the others (seconds)."""

_KEY_PREFIX = "vramguard/gather"
# Every rank counts its gathers per group: the n-th gather of a group on one rank meets the n-th
# on the others (like any collective, every rank runs them in the same order).
_counters: dict[tuple[int, ...], itertools.count[int]] = {}
_counters_lock = threading.Lock()


def _dist() -> Any:
    import torch.distributed as dist

    return dist


def require_initialized(argument: str = "distributed") -> None:
    """Raise :class:`SessionError` unless a default process group is initialised."""
    dist = _dist()
    if not dist.is_available() or not dist.is_initialized():
        raise SessionError(
            f"{argument}= needs torch.distributed: call torch.distributed.init_process_group() first "
            "(torchrun sets the environment it reads)"
        )


def check_timeout(timeout_s: object) -> float:
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not 0 < timeout_s <= 86_400:
        raise InvalidArgument("gather_timeout", timeout_s, "a number of seconds in (0, 86400]")
    return float(timeout_s)


def group_ranks(group: Any = None) -> tuple[int, ...]:
    """The global ranks of ``group`` (None: the default group), in the group's order."""
    dist = _dist()
    if group is None:
        return tuple(range(dist.get_world_size()))
    return tuple(int(r) for r in dist.get_process_group_ranks(group))


def _store() -> Any:
    # The default group's store (the TCPStore torchrun or init_process_group created). torch has
    # no public accessor; this one has existed since torch 1.x.
    from torch.distributed import distributed_c10d

    return distributed_c10d._get_default_store()


def object_collective_on_cuda(backend: str) -> bool:
    """Whether torch runs an object collective (``all_gather_object``) over ``backend`` on CUDA.

    Mirrors ``_get_object_coll_device`` (torch/distributed/distributed_c10d.py:865-928 in 2.13;
    ``_get_pg_default_device`` in older releases, same rules): one backend, that backend's device
    (NCCL: CUDA; gloo and MPI register the CPU); several ``device:backend`` pairs, the CPU if one
    of them is the CPU, else the first. ``"undefined"`` (no backend named) pairs cpu:gloo with
    cuda:nccl, so the CPU.
    """
    name = backend.strip().lower()
    if ":" in name:
        devices = [pair.split(":", 1)[0].strip() for pair in name.split(",") if pair.strip()]
        return bool(devices) and "cpu" not in devices and devices[0] == "cuda"
    return name == "nccl"


def gather_device(backend: str, session_devices: Sequence[str], current_index: int | None) -> torch.device | None:
    """The CUDA device to select around the gather, or None to leave the current one.

    torch moves the pickled payload to the bare device type ``"cuda"``, that is to
    ``torch.cuda.current_device()``, and its docs leave selecting a device per rank to the
    caller (distributed_c10d.py:3463-3468 and :3500-3501, 2.13). A rank that never called
    ``set_device`` would gather on cuda:0: a context on GPU 0 for every rank, then NCCL's
    duplicate-GPU error. So under a CUDA object collective the gather runs on the session's
    device; with several (``device="all"``) on the current one if it is among them (the user
    chose it), else the first. A session on the CPU leaves the current device alone.
    """
    if not object_collective_on_cuda(backend):
        return None
    cuda = [d for d in (torch.device(name) for name in session_devices) if d.type == "cuda" and d.index is not None]
    if not cuda:
        return None
    if current_index is not None and any(d.index == current_index for d in cuda):
        return torch.device("cuda", current_index)
    return cuda[0]


def _session_devices(report: RankReport | None, device: object) -> tuple[str, ...]:
    if device is None:
        if report is None:
            return ()
        return (report.device,) if isinstance(report, SessionReport) else report.device_names
    entries = device if isinstance(device, (list, tuple)) else (device,)
    try:
        return tuple(str(torch.device(entry)) for entry in entries)
    except (TypeError, RuntimeError) as error:
        raise InvalidArgument("device", device, 'None, a device ("cuda:1") or a list of devices') from error


def _selected(device: torch.device | None) -> contextlib.AbstractContextManager[Any]:
    # torch.cuda.device restores the previous device on exit (torch/cuda/__init__.py:642-659).
    return contextlib.nullcontext() if device is None else torch.cuda.device(device)


def check_in(name: str, ranks: tuple[int, ...], timeout_s: float) -> None:
    """Set this rank's key and wait for every rank of ``ranks`` to set theirs; on timeout raise
    :class:`ClusterError` naming the ranks that did not."""
    dist = _dist()
    me = int(dist.get_rank())
    group_key = "-".join(str(r) for r in ranks)
    with _counters_lock:
        sequence = next(_counters.setdefault(ranks, itertools.count()))
    base = f"{_KEY_PREFIX}/{group_key}/{sequence}"
    store = _store()
    store.set(f"{base}/{me}", name)
    keys = [f"{base}/{rank}" for rank in ranks]
    try:
        store.wait(keys, datetime.timedelta(seconds=timeout_s))
    except (RuntimeError, dist.DistError) as error:
        missing = tuple(rank for rank, key in zip(ranks, keys, strict=True) if not store.check([key]))
        if not missing:  # everyone arrived just as the wait gave up
            return
        raise ClusterError(name, missing, timeout_s, None) from error


def gather_report(
    report: RankReport | None,
    *,
    name: str | None = None,
    group: Any = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    device: str | torch.device | Sequence[str | torch.device] | None = None,
) -> ClusterReport:
    """Every rank's ``report`` in one :class:`ClusterReport`, on every rank of ``group``.

    Called by every rank of the group (a collective). ``report`` None means this rank could not
    measure; it still takes part, so that no rank waits for it, and every rank then raises.
    Raises :class:`ClusterError` (its ``report`` this rank's, its ``missing_ranks`` the ranks to
    blame) when some rank has not called it within ``timeout_s`` or had no report.
    ``device``: where this rank measured (None: the report's device or devices); under NCCL the
    gather runs on it, whatever ``torch.cuda.set_device`` selected (see :func:`gather_device`).
    """
    require_initialized("gather_report")
    timeout = check_timeout(timeout_s)
    devices = _session_devices(report, device)
    label = name or (report.name if report is not None else "session")
    ranks = group_ranks(group)
    try:
        check_in(label, ranks, timeout)
    except ClusterError as error:
        raise ClusterError(label, error.missing_ranks, timeout, report) from error.__cause__
    # Plain data over the wire: a record's to_dict() (torch's memory history stays local).
    payload = None if report is None else report.to_dict()
    gathered: list[Any] = [None] * len(ranks)
    backend = str(_dist().get_backend(group))
    current = torch.cuda.current_device() if cuda_initialized() else None
    with _selected(gather_device(backend, devices, current)):
        _dist().all_gather_object(gathered, payload, group=group)
    reports: list[RankReport] = []
    for rank, data in zip(ranks, gathered, strict=True):
        if data is None:
            raise ClusterError(label, (rank,), timeout, report, reason="could not measure its block")
        reports.append(rank_report_from_dict(data))
    return ClusterReport(label, ranks, tuple(reports), backend=backend)
