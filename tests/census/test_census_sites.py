"""Creation sites (``VRAMGUARD_CENSUS_SITES=1``): what the recorder keeps, and what it costs."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from vramguard import SessionReport, gpu_session
from vramguard.census._frames import short_path
from vramguard.census._sites import ENV_VAR, SiteRecorder
from vramguard.core._tensors import storage_key

RETAINED: list[Any] = []


@pytest.fixture(autouse=True)
def _clear_retained() -> Iterator[None]:
    yield
    RETAINED.clear()
    gc.collect()


def _key(tensor: torch.Tensor) -> int:
    key = storage_key(tensor)
    assert key is not None
    return key[0]


def _report(report: SessionReport | None) -> SessionReport:
    assert report is not None
    return report


def test_a_leak_names_the_line_that_created_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "1")
    with gpu_session("site", device="cpu", leaks="ignore") as s:
        scratch = torch.ones(1024) * 2  # freed in the block: no leak, and no entry left
        RETAINED.append(torch.arange(4096, dtype=torch.float32).view(64, 64))
        line = sys._getframe().f_lineno - 1
        del scratch
    leaks = _report(s.report).leaks
    assert [leak.nbytes for leak in leaks] == [4096 * 4]
    expected = f"{short_path(__file__)}:{line} in test_a_leak_names_the_line_that_created_it"
    assert leaks[0].created_at == expected


def test_the_recorder_holds_no_tensor_storage_or_frame() -> None:
    recorder = SiteRecorder()

    def make() -> tuple[torch.Tensor, weakref.ref[object]]:
        local = torch.nn.Linear(2, 2)  # an object only this frame holds
        return torch.ones(256), weakref.ref(local)

    with recorder:
        tensor, frame_local = make()
        alias = tensor.detach()  # shares the storage, refers not to ``tensor`` (a view would)
    key = _key(tensor)
    assert recorder.site_of(key) is not None
    assert recorder.entries() == 1
    assert frame_local() is None  # make()'s frame was not kept
    tensor_ref = weakref.ref(tensor)
    storage_ref = weakref.ref(tensor.untyped_storage())
    del tensor
    assert tensor_ref() is None  # no collection needed: nothing else referred to it
    assert storage_ref() is not None  # the alias keeps the storage, and so its entry
    assert recorder.site_of(key) is not None
    del alias
    assert storage_ref() is None
    assert recorder.entries() == 0  # the entry left with its storage
    assert recorder.site_of(key) is None


def test_entries_are_bounded_by_storages_not_ops() -> None:
    before = torch.zeros(100)  # created before the recorder: no site, never an entry
    recorder = SiteRecorder()
    with recorder:
        made = torch.zeros(100)
        for i in range(1000):
            made.add_(1)
            made.view(10, 10).mul_(1)
            made[i % 100].fill_(0)
            before.add_(1)
            before.t().view(100)
            torch.add(made, 1, out=before)
    assert recorder.entries() == 1
    assert recorder.site_of(_key(made)) is not None
    assert recorder.site_of(_key(before)) is None
    del made
    assert recorder.entries() == 0


def test_each_new_storage_gets_one_entry_and_freed_ones_leave() -> None:
    recorder = SiteRecorder()
    with recorder:
        kept = [torch.full((8,), float(i)) for i in range(300)]
        for _ in range(300):
            torch.ones(8) + 1  # freed at once
        values, indices = torch.max(torch.ones(4, 4), dim=0)  # a tuple of two new storages
        grown = torch.empty(0)  # no memory yet: no entry
        grown.resize_(64)  # its memory comes here: recorded, though resize_ is an in-place op
    assert recorder.entries() == 300 + 2 + 1
    assert all(recorder.site_of(_key(t)) is not None for t in (*kept, values, indices, grown))
    sites = {recorder.site_of(_key(t)) for t in kept}
    assert len(sites) == 1  # one line made them all: one shared site
    del kept, values, indices, grown
    assert recorder.entries() == 0
    recorder.clear()
    assert recorder.entries() == 0


def test_sites_never_import_torch_dynamo() -> None:
    """The first block recording sites once imported torch._dynamo (seconds, +72 MiB here);
    where dynamo is loaded, the recorder keeps compiled code out of itself."""
    script = textwrap.dedent(
        """
        import sys
        import torch
        import vramguard
        from vramguard.census._sites import SiteRecorder
        from vramguard.core._tensors import storage_key

        loaded_before = "torch._dynamo" in sys.modules
        with vramguard.gpu_session(device="cpu", leaks="ignore") as s:
            kept = torch.ones(1024)
        print(loaded_before, "torch._dynamo" in sys.modules, s.report.leaks[0].created_at)

        import torch._dynamo
        recorder = SiteRecorder()
        with recorder:
            made = torch.ones(16)
        print(type(recorder).__name__, recorder.site_of(storage_key(made)[0]))
        """
    )
    env = {**os.environ, ENV_VAR: "1"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()[-2:]
    assert first in ("False False <string>:10 in <module>", "True True <string>:10 in <module>"), done.stdout
    assert second == "_DynamoSafeSiteRecorder <string>:16 in <module>", done.stdout
