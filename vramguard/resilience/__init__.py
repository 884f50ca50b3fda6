"""Keeping a long-running process healthy: out-of-memory recovery (:func:`adaptive_batch`),
hard budgets (``gpu_session(hard=True)``), isolation in a child process (:func:`isolated`)
and a creep watchdog (:func:`watch`).

Beside the core session: it uses the core, the probes and the census, never the report, the
faces or the ASR consumer; the session imports it lazily, only when asked for these.
"""

from __future__ import annotations

import importlib
import typing

if typing.TYPE_CHECKING:
    from vramguard.resilience._adaptive import adaptive_batch
    from vramguard.resilience._isolate import Isolated, isolated
    from vramguard.resilience._oom import OUT_OF_MEMORY, is_out_of_memory
    from vramguard.resilience._watch import Growth, Watch, watch

# Names load on first use: a package whose __init__ imports its own submodules can deadlock
# against a thread that imports one of them directly (Python locks a submodule before its
# parent package), so nothing here imports a submodule at import time.
_LAZY = {
    "adaptive_batch": "vramguard.resilience._adaptive",
    "Isolated": "vramguard.resilience._isolate",
    "isolated": "vramguard.resilience._isolate",
    "OUT_OF_MEMORY": "vramguard.resilience._oom",
    "is_out_of_memory": "vramguard.resilience._oom",
    "Growth": "vramguard.resilience._watch",
    "Watch": "vramguard.resilience._watch",
    "watch": "vramguard.resilience._watch",
}

if not typing.TYPE_CHECKING:  # hidden from mypy, which then still flags unknown names

    def __getattr__(name: str) -> object:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *_LAZY})


__all__ = ["OUT_OF_MEMORY", "Growth", "Isolated", "Watch", "adaptive_batch", "is_out_of_memory", "isolated", "watch"]
