"""Every misuse is a clear error or a defined behaviour, and nothing is lost."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest
import torch

import vramguard
from tests.parking.conftest import Zoo, checksum

_held: list[torch.Tensor] = []


def test_a_foreign_holder_is_named_and_the_module_stays_usable(zoo: Zoo) -> None:
    before = checksum(zoo)
    _held.append(zoo.emb.weight[3])  # a view: keeps the tied weight's storage alive
    try:
        with pytest.raises(vramguard.ParkError, match="_held") as caught:
            vramguard.park(zoo)
        assert any("test_refusals._held" in line for line in caught.value.holders)
        assert checksum(zoo) == before
        zoo(torch.arange(4, device=zoo.emb.weight.device))  # still runs: nothing moved
    finally:
        _held.clear()
    vramguard.wake(vramguard.park(zoo))  # once the holder let go, it parks
    assert checksum(zoo) == before


def test_a_kept_storage_object_and_a_live_graph_are_holders(zoo: Zoo) -> None:
    storage = zoo.norm.weight.untyped_storage()
    with pytest.raises(vramguard.ParkError, match="outside Python's view"):
        vramguard.park(zoo)
    del storage
    out = zoo(torch.arange(4, device=zoo.emb.weight.device))  # saves a transposed view of head.weight
    with pytest.raises(vramguard.ParkError, match="autograd"):
        vramguard.park(zoo)
    del out
    vramguard.wake(vramguard.park(zoo))


def test_parking_twice_and_waking_twice(zoo: Zoo) -> None:
    parked = vramguard.park(zoo)
    with pytest.raises(vramguard.ParkError, match="already parked"):
        vramguard.park(zoo)
    with pytest.raises(vramguard.ParkError, match="already parked"):
        vramguard.park(zoo.emb)  # a part of a parked module is parked too
    vramguard.wake(parked)
    with pytest.raises(vramguard.ParkError, match="already woken"):
        vramguard.wake(parked)
    with pytest.raises(vramguard.ParkError, match="not parked"):
        vramguard.wake(zoo)
    vramguard.wake(vramguard.park(zoo))  # and it parks again


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_waking_onto_a_missing_device_changes_nothing() -> None:
    zoo = Zoo()
    before = checksum(zoo)
    parked = vramguard.park(zoo)
    with pytest.raises(vramguard.InvalidArgument, match="device"):
        vramguard.wake(parked, device="cuda")
    assert not parked.awake
    vramguard.wake(parked, device="cpu")
    assert checksum(zoo) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_an_unwritable_disk_path_refuses_and_moves_nothing(tmp_path: Path) -> None:
    zoo = Zoo()
    before = checksum(zoo)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(vramguard.ParkError, match="cannot write"):
            vramguard.park(zoo, to="disk", path=locked / "zoo.safetensors")
    finally:
        locked.chmod(0o700)
    assert checksum(zoo) == before and list(locked.iterdir()) == []


def test_a_missing_directory_refuses_and_moves_nothing(tmp_path: Path) -> None:
    zoo = Zoo()
    before = checksum(zoo)
    with pytest.raises(vramguard.ParkError, match="cannot write"):
        vramguard.park(zoo, to="disk", path=tmp_path / "absent" / "zoo.safetensors")
    assert checksum(zoo) == before
    vramguard.wake(vramguard.park(zoo))


def test_a_named_disk_file_stays_and_a_temporary_one_goes(tmp_path: Path) -> None:
    zoo = Zoo()
    path = tmp_path / "zoo.safetensors"
    parked = vramguard.park(zoo, to="disk", path=path)
    assert parked.report is not None and parked.report.path == str(path) and path.stat().st_size > 0
    vramguard.wake(parked)
    assert path.exists()
    temporary = vramguard.park(zoo, to="disk")
    assert temporary.path is not None and temporary.path.exists()
    vramguard.wake(temporary)
    zoo.whole.add_(1)  # copy-on-write: the woken tensors are writable, the file is unchanged
    # The woken tensors are the temporary file's pages: it stays while they map it (a later
    # park may keep it, tests/parking/test_reuse.py) and goes with them.
    kept = temporary.path
    assert kept.exists()
    del zoo, temporary, parked
    gc.collect()
    assert not kept.exists() and path.exists()


@pytest.mark.parametrize(
    ("options", "argument"),
    [({"to": "gpu"}, "to"), ({"pin": "yes"}, "pin"), ({"path": "x.safetensors"}, "path")],
)
def test_bad_arguments(options: dict[str, object], argument: str) -> None:
    with pytest.raises(vramguard.InvalidArgument, match=argument):
        vramguard.park(Zoo(), **options)  # type: ignore[arg-type]


def test_an_object_without_modules_is_refused() -> None:
    with pytest.raises(vramguard.InvalidArgument, match=r"nn\.Module"):
        vramguard.park({"weights": torch.zeros(3)})


def test_a_path_under_a_file_refuses_and_moves_nothing(tmp_path: Path) -> None:
    """Not writable for anyone (root included): the parent is a file."""
    zoo = Zoo()
    before = checksum(zoo)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(vramguard.ParkError, match="cannot write"):
        vramguard.park(zoo, to="disk", path=blocker / "zoo.safetensors")
    assert checksum(zoo) == before
