"""Merging per-rank report files (``vramguard run`` under torchrun writes ``report-rank{N}.json``)
into one :class:`ClusterReport`, for one table and one plot.

Files merge only when they are the rank files of one run (:func:`one_run`): each names its rank,
no two the same rank, all the same session. Any other set of files (two unrelated runs, a run
before and after a change) is shown side by side by :mod:`vramguard.report.compare`, never
summed into "ranks" with an imbalance that means nothing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from vramguard.core._errors import InvalidArgument
from vramguard.core._multi_report import MultiDeviceReport
from vramguard.core._records import SessionReport
from vramguard.distributed import ClusterReport, RankReport
from vramguard.report.json import Report, load_report

_RANK_IN_NAME = re.compile(r"rank[-_]?(\d+)", re.IGNORECASE)
_RANK_SUFFIX = re.compile(r" \[rank (\d+)\]$")


def rank_of(path: str | os.PathLike[str]) -> int | None:
    """The rank a file's name gives (``report-rank3.json`` → 3), or None."""
    found = _RANK_IN_NAME.findall(os.path.basename(os.fspath(path)))
    return int(found[-1]) if found else None


def session_rank(report: RankReport) -> int | None:
    """The rank a session's name carries (``vramguard run`` under torchrun names it ``"train.py [rank 3]"``)."""
    found = _RANK_SUFFIX.search(report.name)
    return int(found.group(1)) if found else None


def _rank(path: str | os.PathLike[str], report: RankReport) -> int | None:
    named = session_rank(report)
    return named if named is not None else rank_of(path)


def one_run(paths: Sequence[str | os.PathLike[str]], reports: Sequence[Report]) -> bool:
    """True when ``reports`` (read from ``paths``) are the rank files of one run: every one a
    session report that names its rank (in its session's name, else its file's), the ranks all
    different, and the session the same once the rank is taken off. A report carries no run id
    nor world size, so two runs of one script with disjoint ranks cannot be told apart."""
    if len(reports) < 2 or not all(isinstance(r, (SessionReport, MultiDeviceReport)) for r in reports):
        return False
    sessions = [r for r in reports if isinstance(r, (SessionReport, MultiDeviceReport))]
    ranks = [_rank(p, r) for p, r in zip(paths, sessions, strict=True)]
    if None in ranks or len(set(ranks)) != len(ranks):
        return False
    return len({_RANK_SUFFIX.sub("", r.name) for r in sessions}) == 1


def merge_rank_reports(paths: Sequence[str | os.PathLike[str]]) -> ClusterReport:
    """One :class:`ClusterReport` of the session reports in ``paths``, one file per rank. The rank
    comes from each session's name (``[rank N]``), else its file's (``-rank{N}``); when some file
    has neither, or two give the same rank, the files are numbered by their order."""
    if not paths:
        raise InvalidArgument("paths", paths, "one or more report files, one per rank")
    reports: list[RankReport] = []
    for path in paths:
        report = load_report(path)
        if not isinstance(report, (SessionReport, MultiDeviceReport)):
            raise InvalidArgument("path", os.fspath(path), "a session report (one per rank) to merge with the others")
        reports.append(report)
    named = [_rank(p, r) for p, r in zip(paths, reports, strict=True)]
    ranks = list(range(len(paths))) if None in named or len(set(named)) != len(named) else [int(r or 0) for r in named]
    order = sorted(range(len(paths)), key=lambda i: ranks[i])
    names = {_RANK_SUFFIX.sub("", reports[i].name) for i in order}
    name = names.pop() if len(names) == 1 else ", ".join(sorted(names))
    return ClusterReport(name, tuple(ranks[i] for i in order), tuple(reports[i] for i in order))
