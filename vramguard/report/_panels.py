"""The plot panels of the composite records: one per device of a :class:`MultiDeviceReport`, one
per rank (and device) of a :class:`ClusterReport`, each titled with its rank. Other values pass
through unchanged (the plot checks them)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from vramguard.core._multi_report import MultiDeviceReport
from vramguard.core._records import SessionReport
from vramguard.distributed import ClusterReport


def panels(reports: Iterable[object]) -> list[object]:
    """``reports`` with every composite record replaced by its sessions, in order."""
    out: list[object] = []
    for report in reports:
        if isinstance(report, MultiDeviceReport):
            out += report.devices
        elif isinstance(report, ClusterReport):
            for rank, r in zip(report.ranks, report.reports, strict=True):
                sessions: tuple[SessionReport, ...] = r.devices if isinstance(r, MultiDeviceReport) else (r,)
                # `vramguard run` under torchrun already names its sessions "... [rank N]".
                out += [s if f"[rank {rank}]" in s.name else dataclasses.replace(s, name=f"rank {rank}: {s.name}")
                        for s in sessions]
        else:
            out.append(report)
    return out
