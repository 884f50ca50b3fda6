"""The CUDA allocator's block diff: parsing its snapshot (the driver's edge, given literally here)
and, on a GPU, finding new memory that old Python objects hold."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from vramguard import gpu_session
from vramguard.probes import Block, new_blocks, parse_snapshot, uncovered

HELD: list[Any] = []

SEGMENTS = [
    {
        "device": 0,
        "address": 1000,
        "blocks": [
            {
                "size": 512,
                "state": "active_allocated",
                "frames": [{"filename": "/app/train.py", "line": 7, "name": "step"}],
            },
            {"size": 512, "state": "inactive"},
            {"size": 1024, "state": "active_allocated"},
        ],
    },
    {"device": 1, "address": 9000, "blocks": [{"size": 512, "state": "active_allocated"}]},
]


def test_the_snapshot_gives_each_devices_live_blocks_at_their_addresses() -> None:
    blocks = parse_snapshot(SEGMENTS, 0)
    assert blocks == {
        1000: Block(1000, 512, "train.py:7 in step"),
        2024: Block(2024, 1024, None),
    }
    assert list(parse_snapshot(SEGMENTS, 1)) == [9000]


def test_new_blocks_and_the_ones_no_storage_covers() -> None:
    entry = {1000: Block(1000, 512)}
    now = {1000: Block(1000, 512), 2024: Block(2024, 1024), 4096: Block(4096, 256)}
    fresh = new_blocks(entry, now)
    assert [b.address for b in fresh] == [2024, 4096]
    assert [b.address for b in uncovered(fresh, [2024 + 100])] == [4096]
    assert uncovered(fresh, [2024, 4096]) == []
    assert [b.address for b in new_blocks({2024: Block(2024, 512)}, {2024: Block(2024, 1024)})] == [2024]


@pytest.mark.gpu
def test_an_old_model_moved_to_the_gpu_in_the_block_is_a_leak_named_by_its_holder() -> None:
    model = torch.nn.Linear(256, 256)
    HELD.append(model)
    torch.zeros(1, device="cuda")  # CUDA initialised before the session
    try:
        with gpu_session(device="cuda", leaks="ignore") as s:
            model.to("cuda")  # old Parameter objects, new storages: only the allocator sees them
        report = s.report
        assert report is not None
        assert report.leaked_bytes is not None and report.leaked_bytes >= 256 * 256 * 4
        # HELD is a list: the list is the group (its elements come and go), the model named in the path.
        assert any(leak.group_holder.endswith(".HELD") for leak in report.leaks), str(report)
        assert any("HELD[0]" in leak.holders[0] for leak in report.leaks), str(report)
    finally:
        HELD.clear()
