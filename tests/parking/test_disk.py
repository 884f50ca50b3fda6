"""The disk store writes a safetensors file one storage at a time: a storage on the device goes
through one reused host buffer of bounded size, never a host copy of the whole model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vramguard.parking import _disk
from vramguard.parking._layout import as_bytes


def _storages(sizes: list[int]) -> list[torch.UntypedStorage]:
    gen = torch.Generator().manual_seed(len(sizes))
    return [torch.randint(0, 256, (n,), dtype=torch.uint8, generator=gen).untyped_storage() for n in sizes]


def _entries(path: Path, storages: list[torch.UntypedStorage]) -> list[bytes]:
    data = path.read_bytes()
    return [data[at : at + s.nbytes()] for at, s in zip(_disk.offsets(path, len(storages)), storages, strict=True)]


def test_any_safetensors_reader_loads_the_file(tmp_path: Path) -> None:
    safetensors = pytest.importorskip("safetensors.torch")
    storages = _storages([13, 8, 1000, 1])
    path = tmp_path / "park.safetensors"
    _disk.write(path, storages)
    loaded = safetensors.load_file(str(path))
    assert sorted(loaded) == ["s0", "s1", "s2", "s3"]
    for index, storage in enumerate(storages):
        entry = loaded[f"s{index}"]
        assert entry.numel() % 8 == 0  # padded, so every entry starts aligned
        assert torch.equal(entry[: storage.nbytes()], as_bytes(storage))
    assert all(at % 8 == 0 for at in _disk.offsets(path, len(storages)))


def test_a_device_storage_is_written_through_one_bounded_reused_buffer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every storage treated as on the device: one staging buffer of at most ``chunk_bytes``,
    allocated once, holds the only host copy; the file is right."""
    made: list[int] = []
    real = _disk._staging

    def staging(nbytes: int) -> torch.Tensor:
        made.append(nbytes)
        return real(nbytes)

    monkeypatch.setattr(_disk, "_on_host", lambda flat: False)
    monkeypatch.setattr(_disk, "_staging", staging)
    storages = _storages([300, 64, 129, 5])
    path = tmp_path / "park.safetensors"
    _disk.write(path, storages, chunk_bytes=64)
    assert made == [64]
    assert _entries(path, storages) == [bytes(as_bytes(s).numpy()) for s in storages]


def test_the_staging_buffer_is_no_larger_than_the_largest_device_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[int] = []

    def staging(nbytes: int) -> torch.Tensor:
        made.append(nbytes)
        return torch.empty(nbytes, dtype=torch.uint8)

    monkeypatch.setattr(_disk, "_on_host", lambda flat: False)
    monkeypatch.setattr(_disk, "_staging", staging)
    storages = _storages([24, 40])
    _disk.write(tmp_path / "p.safetensors", storages, chunk_bytes=2**20)
    assert made == [40]
    assert _entries(tmp_path / "p.safetensors", storages) == [bytes(as_bytes(s).numpy()) for s in storages]


def test_host_storages_are_written_from_their_own_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(nbytes: int) -> torch.Tensor:
        raise AssertionError("a host storage was copied before its write")

    monkeypatch.setattr(_disk, "_staging", refuse)
    storages = _storages([7, 4096])
    _disk.write(tmp_path / "p.safetensors", storages)
    assert _entries(tmp_path / "p.safetensors", storages) == [bytes(as_bytes(s).numpy()) for s in storages]


def test_a_failed_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(flat: torch.Tensor, staging: torch.Tensor) -> object:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_disk, "_on_host", lambda flat: False)
    monkeypatch.setattr(_disk, "_pieces", broken)
    with pytest.raises(OSError, match="No space"):
        _disk.write(tmp_path / "p.safetensors", _storages([10]))
    assert list(tmp_path.iterdir()) == []
