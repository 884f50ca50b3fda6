"""``vramguard check``'s analysis: cache calls placed where they cannot give memory back.

Returns records and never prints; ``vramguard.cli.check`` renders them.
"""

from __future__ import annotations

import typing

from vramguard._lazy import attach

if typing.TYPE_CHECKING:
    from vramguard.lint._check import check_source
    from vramguard.lint._rules import RULES, Finding

# Loaded on first use (see vramguard._lazy: an eager import here can deadlock across threads).
_LAZY = {
    "check_source": "vramguard.lint._check",
    "RULES": "vramguard.lint._rules",
    "Finding": "vramguard.lint._rules",
}

if not typing.TYPE_CHECKING:  # hidden from mypy, which then still flags unknown names
    __getattr__, __dir__ = attach(__name__, _LAZY)


__all__ = ["RULES", "Finding", "check_source"]
