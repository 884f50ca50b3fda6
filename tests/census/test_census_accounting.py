"""Leak accounting: the census counts exactly the retained storages, each once."""

from __future__ import annotations

from typing import Any

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vramguard import gpu_session

RETAINED: list[Any] = []
DTYPES = (torch.float32, torch.float16, torch.int64, torch.uint8)

# Each tensor: (elements, dtype index, view of an earlier tensor or None).
_specs = st.lists(
    st.tuples(st.integers(1, 4096), st.integers(0, len(DTYPES) - 1), st.none() | st.integers(0, 7)),
    min_size=1,
    max_size=8,
)


def _make(specs: list[tuple[int, int, int | None]]) -> list[torch.Tensor]:
    made: list[torch.Tensor] = []
    for count, dtype, view_of in specs:
        if view_of is not None and view_of < len(made):
            base = made[view_of]
            made.append(base[: max(1, base.numel() // 2)])
        else:
            made.append(torch.ones(count, dtype=DTYPES[dtype]))
    return made


@settings(max_examples=25, deadline=None)
@given(specs=_specs, data=st.data())
def test_leaked_bytes_equal_the_retained_storage_bytes(specs: list[tuple[int, int, int | None]], data: Any) -> None:
    retain = data.draw(st.lists(st.booleans(), min_size=len(specs), max_size=len(specs)), label="retain")
    RETAINED.clear()
    try:
        with gpu_session("accounting", device="cpu", leaks="ignore") as s:
            made = _make(specs)
            RETAINED.extend(t for t, keep in zip(made, retain, strict=True) if keep)
            del made
        storages = {t.untyped_storage()._cdata: t.untyped_storage().nbytes() for t in RETAINED}
        report = s.report
        assert report is not None
        assert report.leaked_bytes == sum(storages.values())
        assert sorted(leak.nbytes for leak in report.leaks) == sorted(storages.values())
        for leak in report.leaks:
            assert any("RETAINED[" in holder for holder in leak.holders), leak
    finally:
        RETAINED.clear()
