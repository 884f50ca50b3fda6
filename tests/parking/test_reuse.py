"""A host park to disk keeps the file a wake mapped when nothing was written since, and writes
anew whenever anything could have changed: values always come back as they were at the park."""

from __future__ import annotations

import gc
import mmap
import os
import weakref
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import vramguard
from tests.parking.conftest import Zoo, checksum
from vramguard.parking._reuse import written_pages

KEPT = "nothing written since the last wake mapped this file: kept it, wrote nothing"


def notes(handle: vramguard.Parked) -> tuple[str, ...]:
    assert handle.report is not None
    return handle.report.notes


def test_an_unwritten_wake_parks_again_without_a_write() -> None:
    model = Zoo()
    before = checksum(model)
    first = vramguard.park(model, to="disk")
    assert first.path is not None and KEPT not in notes(first)
    vramguard.wake(first)
    stamp = os.stat(first.path).st_mtime_ns
    with torch.no_grad():
        model(torch.tensor([1, 2, 3]))  # reading the weights writes nothing
    again = vramguard.park(model, to="disk")
    assert KEPT in notes(again) and again.path == first.path
    assert os.stat(again.path).st_mtime_ns == stamp  # the file was not rewritten
    assert model.emb.weight.numel() == 0  # parked all the same: the tensors let go
    vramguard.wake(again)
    assert checksum(model) == before


def _write_in_place(model: Zoo) -> None:
    with torch.no_grad():
        model.norm.weight.mul_(3)


def _replace_a_parameter(model: Zoo) -> None:
    model.norm.weight = torch.nn.Parameter(torch.full((8,), 3.0))


def _add_a_gradient(model: Zoo) -> None:
    model(torch.tensor([1, 2])).sum().backward()


def _update_a_buffer(model: Zoo) -> None:
    model.bn.train()
    model.bn(torch.randn(4, 8))  # running_mean and running_var change in place


@pytest.mark.parametrize(
    "change", [_write_in_place, _replace_a_parameter, _add_a_gradient, _update_a_buffer], ids=lambda f: f.__name__
)
def test_any_change_after_the_wake_is_written(change: Callable[[Zoo], None]) -> None:
    model = Zoo()
    vramguard.wake(vramguard.park(model, to="disk"))
    change(model)
    changed = checksum(model)
    again = vramguard.park(model, to="disk")
    assert KEPT not in notes(again)
    vramguard.wake(again)
    assert checksum(model) == changed


def test_a_file_changed_on_disk_is_written_again(tmp_path: Path) -> None:
    model = Zoo()
    target = tmp_path / "zoo.safetensors"
    vramguard.wake(vramguard.park(model, to="disk", path=target))
    os.utime(target, ns=(1, 1))  # as if another writer had replaced its bytes
    again = vramguard.park(model, to="disk", path=target)
    assert KEPT not in notes(again)
    vramguard.wake(again)


def test_a_named_file_is_kept_and_another_name_is_written(tmp_path: Path) -> None:
    model = Zoo()
    before = checksum(model)
    target = tmp_path / "zoo.safetensors"
    vramguard.wake(vramguard.park(model, to="disk", path=target))
    kept = vramguard.park(model, to="disk", path=target)
    assert KEPT in notes(kept)
    vramguard.wake(kept)
    other = vramguard.park(model, to="disk", path=tmp_path / "other.safetensors")
    assert KEPT not in notes(other) and (tmp_path / "other.safetensors").exists()
    vramguard.wake(other)
    assert checksum(model) == before
    del model, kept, other
    gc.collect()
    assert target.exists()  # the user's files are the user's


def test_a_temporary_file_lives_as_long_as_its_mapping() -> None:
    model = Zoo()
    handle = vramguard.park(model, to="disk")
    path = handle.path
    assert path is not None
    vramguard.wake(handle)
    again = vramguard.park(model, to="disk")
    vramguard.wake(again)
    del handle, again
    gc.collect()
    assert path.exists()  # the woken tensors are its pages
    del model
    gc.collect()
    assert not path.exists()


def test_a_parked_handle_dropped_removes_its_kept_file() -> None:
    model = Zoo()
    vramguard.wake(vramguard.park(model, to="disk"))
    again = vramguard.park(model, to="disk")
    assert KEPT in notes(again) and again.path is not None
    path = again.path
    del again, model
    gc.collect()
    assert not path.exists()


@pytest.mark.parametrize("to", ["cpu", "disk"])
def test_a_model_dropped_while_parked_goes_with_its_handle(to: str) -> None:
    model = Zoo()
    handle = vramguard.park(model, to=to)  # type: ignore[arg-type]
    gone, path = weakref.ref(model), handle.path
    assert vramguard.parking.parked_handle(model) is handle
    del model, handle
    gc.collect()
    assert gone() is None  # the registry does not keep a parked model (or its host copy) alive
    assert path is None or not path.exists()


@pytest.mark.skipif(not os.path.exists("/proc/self/pagemap"), reason="Linux's pagemap only")
def test_written_pages_counts_the_private_copies(tmp_path: Path) -> None:
    page = mmap.PAGESIZE
    target = tmp_path / "pages"
    target.write_bytes(b"\0" * (4 * page))
    with target.open("rb") as file:
        mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_COPY)
    view = torch.frombuffer(mapped, dtype=torch.uint8)
    address = view.data_ptr()
    _ = int(view[::page].sum())  # read every page: present, still the file's
    assert written_pages(address, 4 * page) == 0
    view[page + 7] = 1  # one write: one private copy
    view[3 * page] = 1
    assert written_pages(address, 4 * page) == 2
    del view
    mapped.close()
