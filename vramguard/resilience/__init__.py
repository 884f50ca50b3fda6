"""Keeping a long-running process healthy: out-of-memory recovery (:func:`adaptive_batch`),
hard budgets (``gpu_session(hard=True)``), isolation in a child process (:func:`isolated`)
and a creep watchdog (:func:`watch`).

Beside the core session: it uses the core, the probes and the census, never the report, the
faces or the ASR consumer; the session imports it lazily, only when asked for these.
"""

from __future__ import annotations

from vramguard.resilience._adaptive import adaptive_batch
from vramguard.resilience._isolate import Isolated, isolated
from vramguard.resilience._oom import OUT_OF_MEMORY, is_out_of_memory
from vramguard.resilience._watch import Growth, Watch, watch

__all__ = ["OUT_OF_MEMORY", "Growth", "Isolated", "Watch", "adaptive_batch", "is_out_of_memory", "isolated", "watch"]
