"""``ClusterReport``: per-rank figures, the imbalance, leaks with their rank; JSON, tables, plots, and
the merge of per-rank files. Built from hand-made reports; the gather itself is in test_gather.py."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from cluster_factories import MIB, session
from hypothesis import given
from hypothesis import strategies as st

import vramguard
from vramguard.cli import main
from vramguard.core._multi_report import MultiDeviceReport
from vramguard.distributed import ClusterReport, gather_report
from vramguard.report import load_report, plot_report, render, save_report
from vramguard.report.merge import merge_rank_reports, rank_of


def _cluster() -> ClusterReport:
    return ClusterReport(
        "step",
        (0, 1, 2),
        (
            session("cuda:0", peak=200 * MIB),
            session("cuda:1", peak=400 * MIB, leaked=16 * MIB),
            MultiDeviceReport("step", (session("cuda:2"), session("cuda:3", leaked=1 * MIB)), 0.5, raised="OOM"),
        ),
        backend="nccl",
    )


def test_per_rank_figures_imbalance_and_leaks_with_their_rank() -> None:
    report = _cluster()
    assert report.peak_allocated_bytes == (200 * MIB, 400 * MIB, 600 * MIB)
    assert report.imbalance == pytest.approx(3.0)
    assert report.leaked_bytes == (0, 16 * MIB, 1 * MIB)
    assert report.total_leaked_bytes == 17 * MIB
    assert [(item.rank, item.device, item.leak.nbytes) for item in report.leaks] == [
        (1, "cuda:1", 16 * MIB),
        (2, "cuda:3", 1 * MIB),
    ]
    assert report.failed_ranks == (2,)
    assert report.report_of(1).leaked_bytes == 16 * MIB
    with pytest.raises(vramguard.InvalidArgument, match="rank"):
        report.report_of(7)


def test_imbalance_is_unknown_when_a_peak_is() -> None:
    report = ClusterReport("s", (0, 1), (session(peak=None), session()))
    assert report.imbalance is None


@pytest.mark.parametrize(("ranks", "count"), [((0,), 2), ((0, 0), 2), ((), 0)])
def test_one_distinct_rank_per_report(ranks: tuple[int, ...], count: int) -> None:
    with pytest.raises(vramguard.InvalidArgument):
        ClusterReport("s", ranks, tuple(session() for _ in range(count)))


@given(st.lists(st.integers(1, 2**40), min_size=1, max_size=16))
def test_imbalance_is_max_over_min_and_at_least_one(peaks: list[int]) -> None:
    report = ClusterReport("s", tuple(range(len(peaks))), tuple(session(peak=p) for p in peaks))
    assert report.imbalance == pytest.approx(max(peaks) / min(peaks))
    assert report.imbalance is not None and report.imbalance >= 1.0
    assert ClusterReport.from_dict(report.to_dict()) == report


def test_json_round_trip_table_and_plot(tmp_path: Path) -> None:
    report = _cluster()
    loaded = load_report(save_report(report, tmp_path / "cluster.json"))
    assert loaded == report
    out = io.StringIO()
    render(report, file=out, width=140)
    text = out.getvalue()
    assert "on 3 ranks (nccl): peak imbalance (max/min) 3.00x" in text
    assert "failed ranks: 2" in text
    leak_rows = [line for line in text.splitlines() if "global __main__.CACHE[0]" in line]
    assert [row.split()[0] for row in leak_rows] == ["1", "2"]
    assert "rank 1 (cuda:1)" in str(report)
    assert plot_report(report, tmp_path / "cluster.png").stat().st_size > 0


def test_rank_files_merge_into_one_table_and_one_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for rank, leaked in ((1, 2 * MIB), (0, 0)):  # written out of order: merged by rank
        save_report(session("cpu", name=f"train.py [rank {rank}]", leaked=leaked), tmp_path / f"report-rank{rank}.json")
    paths = sorted(str(p) for p in tmp_path.glob("report-rank*.json"))
    merged = merge_rank_reports(paths[::-1])
    assert merged.ranks == (0, 1) and merged.name == "train.py"
    assert merged.leaked_bytes == (0, 2 * MIB)
    code = main(["report", *paths, "--plot", str(tmp_path / "merged.png")])
    out = capsys.readouterr().out
    assert code == 0
    assert "'train.py' on 2 ranks" in out
    assert (tmp_path / "merged.png").stat().st_size > 0


def test_only_session_reports_merge(tmp_path: Path) -> None:
    save_report(session("cpu"), tmp_path / "a-rank0.json")
    save_report(_cluster(), tmp_path / "b-rank1.json")
    with pytest.raises(vramguard.InvalidArgument, match="session report"):
        merge_rank_reports([tmp_path / "a-rank0.json", tmp_path / "b-rank1.json"])


@pytest.mark.parametrize(
    ("name", "rank"), [("report-rank3.json", 3), ("out_rank12.json", 12), ("rank0/r.json", None), ("x.json", None)]
)
def test_rank_from_a_file_name(name: str, rank: int | None) -> None:
    assert rank_of(name) == rank


def test_gather_outside_torch_distributed_says_what_to_call() -> None:
    with pytest.raises(vramguard.SessionError, match="init_process_group"):
        gather_report(session())
    s = vramguard.gpu_session("d", device="cpu", distributed=True)
    with pytest.raises(vramguard.SessionError, match="init_process_group"):
        s.__enter__()
    assert not s.active


@pytest.mark.parametrize(
    ("options", "argument"),
    [({"distributed": "yes"}, "distributed"), ({"group": 3}, "group"), ({"gather_timeout": 0}, "gather_timeout")],
)
def test_distributed_arguments_are_checked(options: dict[str, object], argument: str) -> None:
    with pytest.raises(vramguard.InvalidArgument, match=argument):
        vramguard.gpu_session(device="cpu", **options)  # type: ignore[call-overload]
    with pytest.raises(vramguard.InvalidArgument, match=argument):
        vramguard.gpu_session(device="all", **options)  # type: ignore[call-overload]
