"""Reports across torch.distributed ranks: :class:`ClusterReport` and :func:`gather_report`.

vramguard builds no cluster of its own: it rides the process group the program already runs
(torchrun, accelerate, ``init_process_group``). ``gpu_session(..., distributed=True)`` gathers at
its exit; :func:`gather_report` does the same for any report. Above the core, below the report
layer (which renders a ClusterReport) and the faces.
"""

from __future__ import annotations

from vramguard.distributed._cluster import ClusterReport, RankLeak, RankReport, rank_report_from_dict
from vramguard.distributed._gather import DEFAULT_TIMEOUT_S, gather_report, group_ranks

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "ClusterReport",
    "RankLeak",
    "RankReport",
    "gather_report",
    "group_ranks",
    "rank_report_from_dict",
]
