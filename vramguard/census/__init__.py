"""The census: which tensors a session's block created, which survived, who holds them, and
whether ``empty_cache()`` ran before the references were dropped (at run time and in code).

Returns records (:class:`~vramguard.Leak`, :class:`~vramguard.OrderViolation`,
:class:`Finding`); never prints. The session imports it lazily.
"""

from __future__ import annotations

import importlib
import typing

if typing.TYPE_CHECKING:
    from vramguard.census._census import Census
    from vramguard.census._static import RULES, Finding, check_source

# Names load on first use: a package whose __init__ imports its own submodules can deadlock
# against a thread that imports one of them directly (Python locks a submodule before its
# parent package), so nothing here imports a submodule at import time.
_LAZY = {
    "Census": "vramguard.census._census",
    "RULES": "vramguard.census._static",
    "Finding": "vramguard.census._static",
    "check_source": "vramguard.census._static",
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


__all__ = ["RULES", "Census", "Finding", "check_source"]
