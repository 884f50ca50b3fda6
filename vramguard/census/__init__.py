"""The census: which tensors a session's block created, which survived, who holds them, and
whether ``empty_cache()`` ran before the references were dropped (at run time and in code).

Returns records (:class:`~vramguard.Leak`, :class:`~vramguard.OrderViolation`,
:class:`Finding`); never prints. The session imports it lazily.
"""

from __future__ import annotations

import typing

from vramguard import _lazy

# Each public name, written once: the module that defines it. Loaded on first use (see
# vramguard._lazy: an eager import here can deadlock across threads).
_LAZY = {
    "Census": "vramguard.census._census",
    "RULES": "vramguard.census._static",
    "Finding": "vramguard.census._static",
    "check_source": "vramguard.census._static",
}

if typing.TYPE_CHECKING:  # generated from _LAZY: tests/project/test_exported_members.py
    from vramguard.census._census import Census
    from vramguard.census._static import RULES, Finding, check_source

    __all__ = [
        "RULES",
        "Census",
        "Finding",
        "check_source",
    ]
else:  # hidden from mypy, which then still flags unknown names
    __getattr__, __dir__, __all__ = _lazy.attach(__name__, _LAZY)
