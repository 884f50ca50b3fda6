"""The mechanisms the rules rest on, shown on real tensors."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch


def test_an_except_block_keeps_the_failed_frames_tensor_alive_even_after_del_e() -> None:
    # VG003: the traceback of the exception being handled pins the failed call's frame and its locals.
    refs: list[weakref.ref[torch.Tensor]] = []

    def attempt() -> None:
        activations = torch.empty(1 << 16)
        refs.append(weakref.ref(activations))
        raise RuntimeError("out of memory")

    inside = None
    try:
        attempt()
    except RuntimeError as error:
        del error
        inside = refs[0]() is not None  # where an empty_cache() in the block would run
    assert inside is True
    assert refs[0]() is None  # after the block: freed, no collector needed


@pytest.mark.gpu
def test_empty_cache_before_the_drop_leaves_the_memory_cached() -> None:
    # VG001 on CUDA: the wrong order keeps the blocks reserved, the right one returns them.
    torch.cuda.empty_cache()
    base = torch.cuda.memory_reserved()
    x = torch.empty(64 << 20, dtype=torch.uint8, device="cuda")
    torch.cuda.empty_cache()
    del x
    wrong = torch.cuda.memory_reserved() - base
    y = torch.empty(64 << 20, dtype=torch.uint8, device="cuda")
    del y
    gc.collect()
    torch.cuda.empty_cache()
    right = torch.cuda.memory_reserved() - base
    assert wrong >= 64 << 20 and right == 0
