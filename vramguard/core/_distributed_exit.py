"""A session's part in torch.distributed: checking ``distributed=`` / ``group=`` and gathering
every rank's report at exit into ``session.cluster_report``.

``vramguard.distributed`` sits above the core; it is imported here lazily, only by a session
that asked for it (as the census is), so a plain session never loads torch.distributed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vramguard.core._errors import ClusterError, InvalidArgument, SessionError
from vramguard.core._policy import add_note

DEFAULT_GATHER_TIMEOUT_S = 60.0
"""How long a rank waits at a distributed session's exit for the other ranks (seconds)."""


def check_distributed(distributed: object, group: object, timeout_s: object) -> None:
    """Validate the ``distributed``, ``group`` and ``gather_timeout`` arguments."""
    if not isinstance(distributed, bool):
        raise InvalidArgument("distributed", distributed, "True or False")
    if group is not None:
        import torch.distributed as dist

        if not dist.is_available() or not isinstance(group, dist.ProcessGroup):
            raise InvalidArgument("group", group, "None or a torch.distributed.ProcessGroup (dist.new_group(...))")
    if timeout_s is not None and (
        isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not 0 < timeout_s <= 86_400
    ):
        raise InvalidArgument("gather_timeout", timeout_s, "None (60 s) or a number of seconds in (0, 86400]")


def require_initialized() -> None:
    """A distributed session's entry: a process group must exist (its exit gathers over it)."""
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        raise SessionError(
            "gpu_session(distributed=True) needs torch.distributed: call torch.distributed.init_process_group() "
            "first (torchrun sets the environment it reads)"
        )


def gatherer(session: Any, group: Any, timeout_s: float | None) -> Callable[[BaseException | None], None]:
    """The exit step of a distributed session: gather ``session.report`` from every rank into
    ``session.cluster_report``. ``pending`` is the exception the exit will raise (the block's, or
    a limit's): the gather still runs, so no other rank waits for this one, and a failed gather
    then adds a note to it instead of replacing it."""
    timeout = DEFAULT_GATHER_TIMEOUT_S if timeout_s is None else float(timeout_s)

    def gather(pending: BaseException | None) -> None:
        from vramguard.distributed._gather import gather_report

        devices = tuple(str(d) for d in getattr(session, "devices", (session.device,)))
        try:
            cluster = gather_report(session.report, name=session.name, group=group, timeout_s=timeout, device=devices)
        except Exception as error:
            # A ClusterError, or the backend's own (a DistBackendError from NCCL): either way the
            # block's exception stays the one raised, with the gather's failure as a note.
            session.cluster_report = None
            if pending is None:
                raise
            problem = str(error) if isinstance(error, ClusterError) else f"{type(error).__name__}: {error}"
            add_note(pending, f"vramguard could not gather the ranks' reports: {problem}")
            return
        session.cluster_report = cluster
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
