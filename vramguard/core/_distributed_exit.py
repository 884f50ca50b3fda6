"""A session's part in torch.distributed: gathering every rank's report at exit into the
session's ``cluster_report`` (the arguments are checked with the other options, in
:mod:`vramguard.core._options`).

``vramguard.distributed`` sits above the core; it is imported here lazily, only by a session
that asked for it (as the census is), so a plain session never loads torch.distributed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vramguard.core._errors import ClusterError, SessionError
from vramguard.core._policy import add_note


def require_initialized() -> None:
    """A distributed session's entry: a process group must exist (its exit gathers over it)."""
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        raise SessionError(
            "gpu_session(distributed=True) needs torch.distributed: call torch.distributed.init_process_group() "
            "first (torchrun sets the environment it reads)"
        )


def gatherer(
    name: str | None,
    devices: tuple[str, ...],
    report: Callable[[], Any],
    deliver: Callable[[Any], None],
    group: Any,
    timeout_s: float,
) -> Callable[[BaseException | None], None]:
    """The exit step of a distributed session: gather ``report()`` (this rank's, read at exit)
    from every rank over ``group`` and hand the cluster report to ``deliver`` (None when the
    gather failed). ``pending`` is the exception the exit will raise (the block's, or a
    limit's): the gather still runs, so no other rank waits for this one, and a failed gather
    then adds a note to it instead of replacing it."""
    timeout = float(timeout_s)

    def gather(pending: BaseException | None) -> None:
        from vramguard.distributed._gather import gather_report

        try:
            cluster = gather_report(report(), name=name, group=group, timeout_s=timeout, device=devices)
        except Exception as error:
            # A ClusterError, or the backend's own (a DistBackendError from NCCL): either way the
            # block's exception stays the one raised, with the gather's failure as a note.
            deliver(None)
            if pending is None:
                raise
            problem = str(error) if isinstance(error, ClusterError) else f"{type(error).__name__}: {error}"
            add_note(pending, f"vramguard could not gather the ranks' reports: {problem}")
            return
        deliver(cluster)
        if pending is not None:
            add_note(pending, f"vramguard cluster report:\n{cluster}")

    return gather


def finish_then_gather(
    finish: Callable[[], None], gather: Callable[[BaseException | None], None], exc: BaseException | None
) -> None:
    """Run a session's exit, then its gather, even when the exit raises (a leak under
    ``leaks="raise"``, a peak over ``max_peak``): every rank must reach the gather."""
    try:
        finish()
    except BaseException as failure:
        gather(exc or failure)
        raise
    gather(exc)
