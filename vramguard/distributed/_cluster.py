"""``ClusterReport``: every rank's report of one distributed session, side by side.

Built on every rank by :func:`vramguard.distributed.gather_report` at a distributed session's
exit, or from per-rank JSON files by ``vramguard report report-rank*.json``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vramguard.core import _hooks
from vramguard.core._errors import InvalidArgument
from vramguard.core._multi_report import MultiDeviceReport
from vramguard.core._records import Leak, SessionReport
from vramguard.core._sizes import format_size

RankReport = SessionReport | MultiDeviceReport
"""What one rank measured: a session on one device, or on several (``device="all"``)."""


def rank_report_from_dict(data: dict[str, Any]) -> RankReport:
    """A rank's report from its ``to_dict()`` form, by its ``"kind"``."""
    kind = data.get("kind")
    if kind == "session":
        return SessionReport.from_dict(data)
    if kind == "multi":
        return MultiDeviceReport.from_dict(data)
    raise InvalidArgument("kind", kind, '"session" or "multi" (a rank\'s report)')


@dataclass(frozen=True)
class RankLeak:
    """A leak and the rank (and device) it came from."""

    rank: int
    device: str
    leak: Leak

    def __str__(self) -> str:
        return f"rank {self.rank} ({self.device}): {self.leak}"


@dataclass(frozen=True)
class ClusterReport:
    """One session across the ranks of a process group.

    ``ranks`` are global ranks, in the group's order; ``reports[i]`` is what ``ranks[i]``
    measured. A rank whose block raised has ``raised`` set in its report and is listed in
    :attr:`failed_ranks`. ``imbalance`` is the largest rank peak over the smallest.
    """

    name: str
    ranks: tuple[int, ...]
    reports: tuple[RankReport, ...]
    backend: str | None = None

    def __post_init__(self) -> None:
        if not self.reports or len(self.ranks) != len(self.reports):
            raise InvalidArgument("reports", self.reports, "one report per rank, as many as ranks")
        if len(set(self.ranks)) != len(self.ranks):
            raise InvalidArgument("ranks", self.ranks, "distinct rank numbers")

    def report_of(self, rank: int) -> RankReport:
        """The report of global rank ``rank``."""
        if rank not in self.ranks:
            raise InvalidArgument("rank", rank, [str(r) for r in self.ranks])
        return self.reports[self.ranks.index(rank)]

    def _per_rank(self, figure: Callable[[RankReport], int | None]) -> tuple[int | None, ...]:
        return tuple(figure(r) for r in self.reports)

    @property
    def peak_allocated_bytes(self) -> tuple[int | None, ...]:
        """Each rank's peak allocated bytes (summed over its devices), in rank order."""
        return self._per_rank(lambda r: r.peak_allocated_bytes)

    @property
    def reclaimed_bytes(self) -> tuple[int | None, ...]:
        return self._per_rank(lambda r: r.reclaimed_bytes)

    @property
    def leaked_bytes(self) -> tuple[int | None, ...]:
        return self._per_rank(lambda r: r.leaked_bytes)

    @property
    def total_leaked_bytes(self) -> int | None:
        values = [v for v in self.leaked_bytes if v is not None]
        return sum(values) if values else None

    @property
    def imbalance(self) -> float | None:
        """max / min of the ranks' peaks; ``None`` when a peak is unknown or the smallest is 0."""
        peaks = self.peak_allocated_bytes
        if any(p is None for p in peaks):
            return None
        known = [p for p in peaks if p is not None]
        smallest = min(known)
        return None if smallest <= 0 else max(known) / smallest

    @property
    def failed_ranks(self) -> tuple[int, ...]:
        """The ranks whose block raised."""
        return tuple(rank for rank, r in zip(self.ranks, self.reports, strict=True) if r.raised)

    @property
    def leaks(self) -> tuple[RankLeak, ...]:
        """Every rank's leaks with the rank they came from, largest first."""
        found: list[RankLeak] = []
        for rank, report in zip(self.ranks, self.reports, strict=True):
            sessions = report.devices if isinstance(report, MultiDeviceReport) else (report,)
            found += [RankLeak(rank, s.device, leak) for s in sessions for leak in s.leaks]
        return tuple(sorted(found, key=lambda item: (-item.leak.nbytes, item.rank)))

    def plot(self, path: str | os.PathLike[str], **options: Any) -> Path:
        """Write a PNG with one panel per rank (and device); needs matplotlib."""
        return _hooks.plot([self], path, **options)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict: every rank's report and the cluster's figures."""
        return {
            "kind": "cluster",
            "name": self.name,
            "backend": self.backend,
            "ranks": list(self.ranks),
            "reports": [r.to_dict() for r in self.reports],
            "imbalance": self.imbalance,
            "failed_ranks": list(self.failed_ranks),
            "total_leaked_bytes": self.total_leaked_bytes,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClusterReport:
        """Rebuild a report written by :meth:`to_dict`."""
        return cls(
            name=str(data["name"]),
            ranks=tuple(int(r) for r in data["ranks"]),
            reports=tuple(rank_report_from_dict(r) for r in data["reports"]),
            backend=data.get("backend"),
        )

    def __str__(self) -> str:
        imbalance = "unknown" if self.imbalance is None else f"{self.imbalance:.2f}x"
        lines = [
            f"vramguard session {self.name!r} on {len(self.ranks)} ranks"
            + (f" ({self.backend})" if self.backend else "")
            + f": peak imbalance {imbalance}",
            f"  {'rank':<6} {'device':<14} {'peak':>12} {'reclaimed':>12} {'leaked':>12}",
        ]
        for rank, r in zip(self.ranks, self.reports, strict=True):
            device = r.device if isinstance(r, SessionReport) else ",".join(r.device_names)
            failed = f"  raised {r.raised}" if r.raised else ""
            lines.append(
                f"  {rank:<6} {device:<14} {format_size(r.peak_allocated_bytes):>12} "
                f"{format_size(r.reclaimed_bytes):>12} {format_size(r.leaked_bytes):>12}{failed}"
            )
        lines += [f"  leak: {item}" for item in self.leaks]
        if self.failed_ranks:
            lines.append(f"  failed ranks: {', '.join(str(r) for r in self.failed_ranks)}")
        return "\n".join(lines)
