"""``vramguard check``'s analysis: cache calls placed where they cannot give memory back.

Returns records and never prints; ``vramguard.cli.check`` renders them.
"""

from __future__ import annotations

import importlib
import typing

if typing.TYPE_CHECKING:
    from vramguard.lint._check import check_source
    from vramguard.lint._rules import RULES, Finding

# Names load on first use: a package whose __init__ imports its own submodules can deadlock
# against a thread that imports one of them directly (Python locks a submodule before its
# parent package), so nothing here imports a submodule at import time.
_LAZY = {
    "check_source": "vramguard.lint._check",
    "RULES": "vramguard.lint._rules",
    "Finding": "vramguard.lint._rules",
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


__all__ = ["RULES", "Finding", "check_source"]
