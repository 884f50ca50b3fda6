"""Reports across torch.distributed ranks: :class:`ClusterReport` and :func:`gather_report`.

vramguard builds no cluster of its own: it rides the process group the program already runs
(torchrun, accelerate, ``init_process_group``). ``gpu_session(..., distributed=True)`` gathers at
its exit; :func:`gather_report` does the same for any report. Above the core, below the report
layer (which renders a ClusterReport) and the faces.
"""

from __future__ import annotations

import typing

from vramguard import _lazy

# Each public name, written once: the module that defines it. Loaded on first use (see
# vramguard._lazy: an eager import here can deadlock across threads).
_LAZY = {
    "ClusterReport": "vramguard.distributed._cluster",
    "RankLeak": "vramguard.distributed._cluster",
    "RankReport": "vramguard.distributed._cluster",
    "rank_report_from_dict": "vramguard.distributed._cluster",
    "DEFAULT_TIMEOUT_S": "vramguard.distributed._gather",
    "gather_report": "vramguard.distributed._gather",
    "group_ranks": "vramguard.distributed._gather",
}

if typing.TYPE_CHECKING:  # generated from _LAZY: tests/project/test_exported_members.py
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
else:  # hidden from mypy, which then still flags unknown names
    __getattr__, __dir__, __all__ = _lazy.attach(__name__, _LAZY)
