"""``parked()`` wakes at exit, a session's park and wake are marked steps, and to="disk" gives
a model's resident memory back to the OS."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
import torch

import vramguard
from tests.parking.conftest import Zoo, checksum
from vramguard.probes import malloc_trim, resident_bytes


def test_parked_wakes_after_an_exception(zoo: Zoo) -> None:
    before = checksum(zoo)
    with pytest.raises(KeyError), vramguard.parked(zoo, to="disk") as handle:
        assert zoo.emb.weight.numel() == 0
        raise KeyError("inside")
    assert handle.awake and checksum(zoo) == before


def test_parked_tolerates_a_wake_inside_the_block(zoo: Zoo) -> None:
    with vramguard.parked(zoo) as handle:
        vramguard.wake(handle)
    assert handle.wake_report is not None


def test_session_park_and_wake_are_marked_timed_steps(device: str) -> None:
    model = Zoo().to(device)
    before = checksum(model)
    with vramguard.gpu_session("swap", device=device, sample_every=0.005, leaks="raise") as s:
        handle = s.park(model)
        report = s.wake(model)
    assert report is handle.wake_report and checksum(model) == before
    assert s.report is not None and s.report.timeline is not None
    labels = [label for _, label in s.report.timeline.marks]
    assert labels.index("park:Zoo") < labels.index("park:Zoo done") < labels.index("wake:Zoo")
    assert labels.index("wake:Zoo") < labels.index("wake:Zoo done")
    parks = [n for n in s.report.notes if n.startswith(("park ", "wake "))]
    assert len(parks) == 2 and " ms" in parks[0]
    # The woken storages are new, and expected to outlive the block: not a leak.
    assert s.report.leaked_bytes == 0


def test_session_park_outside_the_block_is_refused() -> None:
    session = vramguard.gpu_session(device="cpu")
    with pytest.raises(vramguard.SessionError, match="park"):
        session.park(Zoo())


def _rss() -> int:
    gc.collect()
    malloc_trim()
    reading = resident_bytes()
    assert reading is not None
    return reading[0]


@pytest.mark.parametrize("to", ["disk", "cpu"])
def test_disk_gives_resident_memory_back(tmp_path: Path, to: str) -> None:
    """64 MiB of weights: parked to disk, the resident set returns to its level before the load
    (within 5%); parked to host memory, it does not (the copy is resident)."""
    nbytes = 64 * 2**20
    start = _rss()
    model = torch.nn.Linear(4096, nbytes // 4 // 4096, bias=False)
    with torch.no_grad():
        model.weight.normal_()
    loaded = _rss()
    assert loaded - start > 0.9 * nbytes
    parked = vramguard.park(model, to=to, path=tmp_path / "m.safetensors" if to == "disk" else None)  # type: ignore[arg-type]
    between = _rss()
    if to == "disk":
        assert abs(between - start) < 0.05 * start
        assert parked.report is not None and (parked.report.host_rss_change_bytes or 0) < -0.9 * nbytes
    else:
        assert between - start > 0.9 * nbytes
    vramguard.wake(parked)
    assert model.weight.shape == (nbytes // 4 // 4096, 4096)
    model(torch.ones(1, 4096))  # touches every page: they come back from the file
