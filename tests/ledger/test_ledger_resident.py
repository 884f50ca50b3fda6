"""The host ledger counts resident bytes: pages malloc handed out but nobody wrote are not in the
resident set, so they are on no line (the old ledger counted them, its residual went negative)."""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
from typing import Any

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import vramguard
from vramguard.ledger._host import read_malloc
from vramguard.ledger._maps import Mapping, read_mappings
from vramguard.ledger._pymalloc import read_arenas
from vramguard.ledger._resident import Pymalloc, read_residency, survey

UNTOUCHED: Any = None
MIB = 1 << 20
PAGE = mmap.PAGESIZE
_libc = ctypes.CDLL(ctypes.util.find_library("c"))
_libc.malloc.restype = ctypes.c_void_p
_libc.malloc.argtypes = [ctypes.c_size_t]
_libc.free.argtypes = [ctypes.c_void_p]


def _line(ledger: vramguard.MemoryLedger, holder: str) -> vramguard.LedgerLine:
    found = [line for line in ledger.lines if line.holder == holder]
    assert len(found) == 1, (holder, [line.holder for line in ledger.lines])
    return found[0]


def test_a_tensor_never_written_is_held_but_not_resident() -> None:
    global UNTOUCHED
    UNTOUCHED = torch.empty(16 * MIB, dtype=torch.float32)  # 64 MiB: an mmapped chunk, untouched
    try:
        ledger = vramguard.explain("cpu")
        line = _line(ledger, f"global {__name__}.UNTOUCHED")
        assert line.storage_bytes == 64 * MIB
        assert line.nbytes < 4 * MIB, line  # a page or a huge page around the chunk's header
        assert ledger.residual_fraction is not None and ledger.residual_fraction <= 0.05, ledger.lines
        UNTOUCHED[: 8 * MIB] = 1.0  # the first half written
        ledger = vramguard.explain("cpu")
        line = _line(ledger, f"global {__name__}.UNTOUCHED")
        assert 32 * MIB <= line.nbytes < 36 * MIB, line
        assert line.storage_bytes == 64 * MIB and line.roles == (("other", line.nbytes),)
        assert ledger.residual_fraction is not None and ledger.residual_fraction <= 0.05, ledger.lines
    finally:
        UNTOUCHED = None


def test_a_malloc_block_never_written_is_not_malloc_in_use() -> None:
    before = vramguard.explain("cpu")
    block = _libc.malloc(64 * MIB)  # over the mmap threshold's ceiling (32 MiB): mmapped
    assert block
    try:
        after = vramguard.explain("cpu")
        malloc = read_malloc()
        assert malloc is not None and malloc.hblkhd >= 64 * MIB
        grown = after.by_category()["malloc in use"] - before.by_category()["malloc in use"]
        assert grown < 8 * MIB, grown
        assert after.residual_fraction is not None and after.residual_fraction <= 0.05, after.lines
    finally:
        _libc.free(block)


def test_the_walk_finds_every_mmapped_chunk_and_pymalloc_arena() -> None:
    blocks = [_libc.malloc(n * MIB) for n in (40, 48)]  # over the mmap threshold's ceiling: mmapped
    assert all(blocks)
    ctypes.memset(blocks[0], 1, 8 * MIB)  # the first 8 MiB of one written, the rest never
    try:
        mappings = read_mappings()
        assert mappings is not None
        pages = read_residency(mappings)
        arenas = read_arenas()
        assert pages is not None and arenas is not None
        found = survey(pages, Pymalloc.of_arena(arenas.arena_size_bytes))
        malloc = read_malloc()
        assert found is not None and malloc is not None
        assert (found.chunks, found.chunk_bytes) == (malloc.hblks, malloc.hblkhd)
        assert found.chunks >= 2 and found.chunk_bytes >= 88 * MIB
        assert found.chunk_resident_bytes >= 8 * MIB
        assert found.chunk_resident_bytes <= found.chunk_bytes - 80 * MIB + 2 * PAGE  # not the pages never written
        assert 0 <= arenas.arenas - found.arenas <= max(2, arenas.arenas // 50), (found, arenas)
    finally:
        for block in blocks:
            _libc.free(block)


@settings(max_examples=40, deadline=None)
@given(
    touched=st.sets(st.integers(0, 63), max_size=64),
    start=st.integers(0, 64 * PAGE - 1),
    length=st.integers(1, 64 * PAGE),
)
def test_untouched_bytes_are_the_range_on_pages_never_written(touched: set[int], start: int, length: int) -> None:
    region = mmap.mmap(-1, 64 * PAGE)
    view = ctypes.c_char.from_buffer(region)
    try:
        base = ctypes.addressof(view)
        for page in touched:
            region[page * PAGE] = 1
        pages = read_residency([Mapping(base, base + 64 * PAGE, "rw-p", "", max(1, len(touched)) * PAGE, 0)])
        assert pages is not None
        length = min(length, 64 * PAGE - start)
        expected = sum(1 for b in range(start, start + length) if b // PAGE not in touched)
        assert pages.untouched_bytes(base + start, length) == expected
        assert pages.untouched_bytes(base + 64 * PAGE, 4096) == 0  # outside what was read
    finally:
        del view
        region.close()
