"""The heap epoch and the release's collection policy: cheap when nothing survived, complete when
something did, and never in the way of the program's own collections and freezes."""

from __future__ import annotations

import functools
import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from vramguard import SessionReport, gpu_session
from vramguard.census._epoch import EPOCH

KIB = 1024
HELD: list[Any] = []


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    assert gc.get_freeze_count() == 0
    yield
    HELD.clear()
    gc.collect()
    assert gc.get_freeze_count() == 0, "a session left objects frozen"
    assert not EPOCH.open


def _gc_detail(report: SessionReport | None) -> str:
    assert report is not None
    return next(step.detail for step in report.release_steps if step.name == "gc")


def test_a_block_that_keeps_nothing_pays_no_full_collection() -> None:
    with gpu_session(device="cpu", leaks="raise") as s:
        x = torch.ones(64 * KIB)
        del x
    detail = _gc_detail(s.report)
    assert "no full collection: nothing the block created survived" in detail


def test_a_leak_held_by_a_global_needs_no_full_collection_and_is_named() -> None:
    with gpu_session(device="cpu", leaks="ignore") as s:
        HELD.append(torch.ones(16 * KIB // 4))
    assert s.report is not None and s.report.leaked_bytes == 16 * KIB
    assert "held from a global" in _gc_detail(s.report)
    assert s.report.leaks[0].holders[0].endswith("HELD[0]")


def test_a_cycle_the_block_made_is_freed_by_collecting_the_blocks_objects_alone() -> None:
    class Node:
        pass

    with gpu_session(device="cpu", leaks="raise") as s:
        a, b = Node(), Node()
        a.other, b.other = b, a  # type: ignore[attr-defined]
        a.t = torch.ones(32 * KIB // 4)  # type: ignore[attr-defined]
        ref = weakref.ref(a.t)  # type: ignore[attr-defined]
        del a, b
    assert ref() is None
    report = s.report
    assert report is not None and report.leaked_bytes == 0
    detail = _gc_detail(report)
    assert "collected the block's objects (" in detail and "no full collection" in detail
    assert any("reference cycle" in line for line in report.cycles), report.cycles


def test_a_new_tensor_in_an_older_garbage_cycle_gets_the_full_collection() -> None:
    class Node:
        pass

    old = Node()
    old.me = old  # type: ignore[attr-defined]
    with gpu_session(device="cpu", leaks="raise") as s:
        old.t = torch.ones(32 * KIB // 4)  # type: ignore[attr-defined]
        ref = weakref.ref(old.t)  # type: ignore[attr-defined]
        del old  # garbage now, but older than the block: its collection alone cannot free it
    assert ref() is None
    report = s.report
    assert report is not None and report.leaked_bytes == 0, str(report)
    assert "full collection (" in _gc_detail(report)


def test_the_programs_own_collection_in_a_block_frees_an_older_cycle() -> None:
    class Node:
        pass

    old = Node()
    old.me = old  # type: ignore[attr-defined]
    old.t = torch.ones(KIB)  # type: ignore[attr-defined]
    ref = weakref.ref(old)
    with gpu_session(device="cpu", leaks="raise"):
        del old
        gc.collect()  # the epoch thaws for a full collection: old cycles are freed as always
        assert ref() is None
        assert gc.get_freeze_count() > 0, "frozen again after the collection"


def test_nested_sessions_each_judge_their_own_block() -> None:
    with gpu_session("outer", device="cpu", leaks="ignore") as outer:
        HELD.append(torch.ones(KIB))
        with gpu_session("inner", device="cpu", leaks="ignore") as inner:
            HELD.append(torch.ones(2 * KIB))
        assert EPOCH.open
    assert inner.report is not None and [leak.nbytes for leak in inner.report.leaks] == [8 * KIB]
    assert outer.report is not None and sorted(leak.nbytes for leak in outer.report.leaks) == [4 * KIB, 8 * KIB]


def test_a_program_that_froze_its_heap_keeps_its_freeze_and_still_gets_the_census() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with gpu_session(device="cpu", leaks="ignore") as s:
            HELD.append(torch.ones(KIB))
        # (objects freed meanwhile leave the permanent generation: the count may drop a little)
        assert gc.get_freeze_count() > frozen * 0.9, "the program's own freeze was undone"
        assert s.report is not None and s.report.leaked_bytes == 4 * KIB
        assert not EPOCH.open
    finally:
        gc.unfreeze()


def test_a_new_view_of_an_older_tensor_is_no_new_memory() -> None:
    weight = torch.ones(4 * KIB)
    with gpu_session(device="cpu", leaks="raise") as s:
        HELD.append(weight[:KIB])
    assert s.report is not None and s.report.leaked_bytes == 0


def test_a_session_that_raised_still_leaves_the_epoch() -> None:
    with pytest.raises(ValueError, match="boom"), gpu_session(device="cpu", leaks="ignore"):
        HELD.append(torch.ones(KIB))
        raise ValueError("boom")
    assert not EPOCH.open


def test_keep_keeps_the_output_and_its_activations_not_a_model_someone_still_holds() -> None:
    def run() -> SessionReport | None:
        with gpu_session(device="cpu", leaks="ignore") as s:
            model = s.own(torch.nn.Linear(256, 256))
            out = model(torch.ones(4, 256))
            s.keep(out)
        del out
        return s.report

    report = run()
    assert report is not None
    params = 256 * 256 * 4 + 256 * 4
    assert report.leaked_bytes == params, str(report)
    assert [group.holder for group in report.leak_groups] == [report.leaks[0].group]
    assert report.leak_groups[0].holder.startswith("local 'model' in ")
    assert any(note.startswith("owned Linear still held by local 'model'") for note in report.notes), report.notes


def test_keep_of_an_output_whose_model_is_gone_is_no_leak() -> None:
    with gpu_session(device="cpu", leaks="raise") as s:
        model = s.own(torch.nn.Linear(256, 256))
        out = s.keep(model(torch.ones(4, 256)))
        del model
    assert s.report is not None and s.report.leaked_bytes == 0
    assert not any("owned" in note for note in s.report.notes)
    del out


def test_holder_bounds_are_arguments_and_a_reached_bound_says_how_to_raise_it() -> None:
    class Link:
        def __init__(self, inner: object) -> None:
            self.inner = inner

    with gpu_session(device="cpu", leaks="ignore", holder_levels=2) as s:
        chain: object = torch.ones(KIB)
        for _ in range(6):
            chain = Link(chain)
        HELD.append(chain)
        del chain
    assert s.report is not None and s.report.leaked_bytes == 4 * KIB
    holder = s.report.leaks[0].holders[0]
    assert "the levels bound (2 levels; raise it with gpu_session(holder_levels=...))" in holder
    assert "Link" in holder


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "24"])
def test_holder_bounds_are_checked(value: object) -> None:
    from vramguard import InvalidArgument

    with pytest.raises(InvalidArgument, match="holder_levels"):
        gpu_session(device="cpu", holder_levels=value)  # type: ignore[arg-type]


OLD_MODEL = torch.nn.Linear(512, 512)


def test_gradients_written_into_an_older_model_on_the_host_are_noted_not_hidden() -> None:
    OLD_MODEL(torch.ones(2, 512)).sum().backward()  # warm-up: autograd's first backward allocates
    OLD_MODEL.zero_grad(set_to_none=True)
    with gpu_session(device="cpu", leaks="ignore") as s:
        OLD_MODEL(torch.ones(2, 512)).sum().backward()
    assert s.report is not None
    # The host has no allocator block list: the census cannot name them, the report says so.
    assert any("more than at entry that no tensor created in the block accounts for" in n for n in s.report.notes)
    OLD_MODEL.zero_grad(set_to_none=True)


OLD_WEIGHT = torch.nn.Linear(64, 64)


def test_a_leaked_output_whose_graph_saved_an_older_weight_leaks_only_its_own_memory() -> None:
    x = torch.ones(4, 64, requires_grad=True)
    with gpu_session(device="cpu", leaks="ignore") as s:
        HELD.append(OLD_WEIGHT(x * 2))  # its graph saves x*2 and views OLD_WEIGHT's weight
    report = s.report
    assert report is not None
    descriptions = [leak.description for leak in report.leaks]
    assert all("64, 64" not in d for d in descriptions), str(report)  # the old weight is no leak
    assert report.leaked_bytes == 2 * 4 * 64 * 4, str(report)  # the output and the saved x*2


class _Node:
    pass


OLD_HOLDER = _Node()


def _walk_in_epoch(make: Any) -> tuple[tuple[str, ...], int, int]:
    """Open an epoch, let ``make`` build the holders of a new tensor, walk them with the heap
    frozen: (paths, full scans, young scans)."""
    from vramguard.census._holders import HolderSearch
    from vramguard.census._walk import walk

    assert EPOCH.enter()
    try:
        tensor = make()
        with EPOCH.lazily_thawed() as thaw:
            search = HolderSearch(None, thaw=thaw)
            search.add_group([search.add(tensor)])
            del tensor
            search.index_heap()
            (found,) = walk(search)
            scans, young = search.scans, search.young_scans
            search.close()
    finally:
        EPOCH.leave()
    return found.paths, scans, young


def test_holders_the_block_made_are_found_by_scanning_the_young_objects_alone() -> None:
    def make() -> torch.Tensor:
        HELD.append(_Node())
        HELD[-1].inner = _Node()
        HELD[-1].inner.t = torch.ones(8)
        return HELD[-1].inner.t  # type: ignore[no-any-return]

    paths, scans, young = _walk_in_epoch(make)
    assert paths == (f"global {__name__}.HELD[0].inner.t",)
    assert young >= 2  # the tensor's and the nodes' referrers came from the young objects
    assert scans <= 2  # only the older list (HELD) and the module's globals needed the whole heap


def test_an_older_holder_makes_the_search_scan_the_whole_heap() -> None:
    def make() -> torch.Tensor:
        OLD_HOLDER.t = torch.ones(8)  # type: ignore[attr-defined]
        return OLD_HOLDER.t  # type: ignore[attr-defined, no-any-return]

    try:
        paths, scans, _ = _walk_in_epoch(make)
        assert paths[0].startswith(f"global {__name__}.OLD_HOLDER")
        assert scans >= 1
    finally:
        del OLD_HOLDER.t  # type: ignore[attr-defined]


@functools.lru_cache(maxsize=4)
def _cached_weights(n: int) -> torch.Tensor:
    return torch.ones(n)


def test_a_result_cached_by_lru_cache_is_named_by_the_cached_function() -> None:
    try:
        with gpu_session(device="cpu", leaks="ignore") as s:
            _cached_weights(KIB)
        assert s.report is not None and s.report.leaked_bytes == 4 * KIB
        assert s.report.leaks[0].holders[0] == f"global {__name__}._cached_weights.<lru_cache entry>"
    finally:
        _cached_weights.cache_clear()


def test_the_young_objects_are_filtered_directly_and_agree_with_the_referrer_pass() -> None:
    from vramguard.census import _scan

    assert EPOCH.join() is not None
    try:
        assert EPOCH.frozen

        class Fresh(torch.Tensor):  # defined in the block: no subclass list knows it yet
            pass

        made = [torch.ones(3), torch.ones(2).as_subclass(Fresh), torch.nn.Parameter(torch.ones(1))]
        young = _scan.young_tensors()
        assert young is not None
        ids = {id(t) for t in young}
        assert {id(t) for t in made} <= ids
        assert ids == {id(t) for t in _scan.heap_tensors()}  # the same set as the C referrer pass
        many = [[] for _ in range(_scan.YOUNG_FILTERED_AT_MOST + 1)]
        assert _scan.young_tensors() is None  # too many young objects: the referrer pass is cheaper
        del many
    finally:
        EPOCH.leave()
