"""Merging per-rank report files (``vramguard run`` under torchrun writes ``report-rank{N}.json``)
into one :class:`ClusterReport`, for one table and one plot."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from vramguard.core._errors import InvalidArgument
from vramguard.core._multi_report import MultiDeviceReport
from vramguard.core._records import SessionReport
from vramguard.distributed._cluster import ClusterReport, RankReport
from vramguard.report.json import load_report

_RANK_IN_NAME = re.compile(r"rank[-_]?(\d+)", re.IGNORECASE)
_RANK_SUFFIX = re.compile(r" \[rank \d+\]$")


def rank_of(path: str | os.PathLike[str]) -> int | None:
    """The rank a file's name gives (``report-rank3.json`` → 3), or None."""
    found = _RANK_IN_NAME.findall(os.path.basename(os.fspath(path)))
    return int(found[-1]) if found else None


def merge_rank_reports(paths: Sequence[str | os.PathLike[str]]) -> ClusterReport:
    """One :class:`ClusterReport` of the session reports in ``paths``, one file per rank. The rank
    comes from each file's name (``-rank{N}``); files without one are numbered by their order."""
    if not paths:
        raise InvalidArgument("paths", paths, "one or more report files, one per rank")
    reports: list[RankReport] = []
    for path in paths:
        report = load_report(path)
        if not isinstance(report, (SessionReport, MultiDeviceReport)):
            raise InvalidArgument("path", os.fspath(path), "a session report (one per rank) to merge with the others")
        reports.append(report)
    named = [rank_of(p) for p in paths]
    ranks = list(range(len(paths))) if None in named or len(set(named)) != len(named) else [int(r or 0) for r in named]
    order = sorted(range(len(paths)), key=lambda i: ranks[i])
    names = {_RANK_SUFFIX.sub("", reports[i].name) for i in order}
    name = names.pop() if len(names) == 1 else ", ".join(sorted(names))
    return ClusterReport(name, tuple(ranks[i] for i in order), tuple(reports[i] for i in order))
