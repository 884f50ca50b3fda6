"""``vramguard check``'s analysis: cache calls placed where they cannot give memory back.

Returns records and never prints; ``vramguard.cli.check`` renders them.
"""

from __future__ import annotations

import typing

from vramguard import _lazy

# Each public name, written once: the module that defines it. Loaded on first use (see
# vramguard._lazy: an eager import here can deadlock across threads).
_LAZY = {
    "check_source": "vramguard.lint._check",
    "RULES": "vramguard.lint._rules",
    "Finding": "vramguard.lint._rules",
}

if typing.TYPE_CHECKING:  # generated from _LAZY: tests/project/test_exported_members.py
    from vramguard.lint._check import check_source
    from vramguard.lint._rules import RULES, Finding

    __all__ = [
        "RULES",
        "Finding",
        "check_source",
    ]
else:  # hidden from mypy, which then still flags unknown names
    __getattr__, __dir__, __all__ = _lazy.attach(__name__, _LAZY)
