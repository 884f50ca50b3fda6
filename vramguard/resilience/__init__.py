"""Keeping a long-running process healthy: out-of-memory recovery (:func:`adaptive_batch`),
hard budgets (``gpu_session(hard=True)``), isolation in a child process (:func:`isolated`)
and a creep watchdog (:func:`watch`).

Beside the core session: it uses the core, the probes and the census, never the report, the
faces or the ASR consumer; the session imports it lazily, only when asked for these.
"""

from __future__ import annotations

import typing

from vramguard import _lazy

# Each public name, written once: the module that defines it. Loaded on first use (see
# vramguard._lazy: an eager import here can deadlock across threads).
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

if typing.TYPE_CHECKING:  # generated from _LAZY: tests/project/test_exported_members.py
    from vramguard.resilience._adaptive import adaptive_batch
    from vramguard.resilience._isolate import Isolated, isolated
    from vramguard.resilience._oom import OUT_OF_MEMORY, is_out_of_memory
    from vramguard.resilience._watch import Growth, Watch, watch

    __all__ = [
        "OUT_OF_MEMORY",
        "Growth",
        "Isolated",
        "Watch",
        "adaptive_batch",
        "is_out_of_memory",
        "isolated",
        "watch",
    ]
else:  # hidden from mypy, which then still flags unknown names
    __getattr__, __dir__, __all__ = _lazy.attach(__name__, _LAZY)
