"""The ledger: where a process's memory on one device is, every byte on a line with its holder.

:func:`explain` reads the device, the heap (one pass) and the holder search, and returns a
:class:`MemoryLedger`; ``vramguard.report.ledger_text`` renders it. Sits above the census
(whose holder search it uses) and below the report and the faces.
"""

from __future__ import annotations

import typing

from vramguard import _lazy

# Each public name, written once: the module that defines it. Loaded on first use (see
# vramguard._lazy: an eager import here can deadlock across threads).
_LAZY = {
    "explain": "vramguard.ledger._explain",
    "mark": "vramguard.ledger._mark",
    "LedgerLine": "vramguard.ledger._records",
    "MemoryLedger": "vramguard.ledger._records",
    "install_explain_signal": "vramguard.ledger._signal",
}

if typing.TYPE_CHECKING:  # generated from _LAZY: tests/project/test_exported_members.py
    from vramguard.ledger._explain import explain
    from vramguard.ledger._mark import mark
    from vramguard.ledger._records import LedgerLine, MemoryLedger
    from vramguard.ledger._signal import install_explain_signal

    __all__ = [
        "LedgerLine",
        "MemoryLedger",
        "explain",
        "install_explain_signal",
        "mark",
    ]
else:  # hidden from mypy, which then still flags unknown names
    __getattr__, __dir__, __all__ = _lazy.attach(__name__, _LAZY)
