"""Where storages were created: an opt-in dispatch mode (``VRAMGUARD_CENSUS_SITES=1``).

Off by default because it costs per op: measured on a small ``nn.TransformerEncoder``
(CPU, one thread), about +90 % for a training step and +20 % for an inference forward — far
over the census's 10 % budget. The default census (a heap diff) costs nothing per op and
leaves ``Leak.created_at`` as None. With this mode on, every aten op's outputs whose storage
is new get the innermost user frame (outside torch, vramguard and installed packages) —
factory functions, parameters built by ``nn.Module`` constructors and intermediates saved by
autograd included.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from vramguard.census._frames import is_library, location
from vramguard.census._scan import StorageWeakRef

ENV_VAR = "VRAMGUARD_CENSUS_SITES"
_PRUNE_EVERY = 4096


def sites_requested() -> bool:
    """True when ``VRAMGUARD_CENSUS_SITES`` asks for creation sites."""
    return os.environ.get(ENV_VAR, "").strip().lower() in ("1", "true", "yes", "on")


class SiteRecorder(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """Remembers, for each storage first seen as an op's output, the user frame that ran it."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._sites: dict[int, tuple[StorageWeakRef, str | None]] = {}
        self._added = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        tensor = torch.Tensor
        for leaf in tree_leaves(out):
            if not issubclass(type(leaf), tensor):
                continue
            try:
                storage = leaf.untyped_storage()
                key = storage._cdata
            except Exception:
                continue
            if key in self._sites or storage.data_ptr() == 0:
                continue
            self._sites[key] = (StorageWeakRef(storage), _user_location())
            self._added += 1
            if self._added % _PRUNE_EVERY == 0:
                self._prune()
        return out

    def _prune(self) -> None:
        """Forget storages already freed, so a long block does not grow the table forever."""
        self._sites = {k: v for k, v in self._sites.items() if not v[0].expired()}

    def site_of(self, key: int) -> str | None:
        entry = self._sites.get(key)
        return None if entry is None else entry[1]

    def clear(self) -> None:
        self._sites = {}


def _user_location() -> str | None:
    frame = sys._getframe(2)
    while frame is not None and is_library(frame.f_code.co_filename):
        frame = frame.f_back  # type: ignore[assignment]
    return None if frame is None else location(frame)
