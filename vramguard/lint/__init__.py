"""``vramguard check``'s analysis: cache calls placed where they cannot give memory back.

Returns records and never prints; ``vramguard.cli.check`` renders them.
"""

from __future__ import annotations

from vramguard.lint._check import check_source
from vramguard.lint._rules import RULES, Finding

__all__ = ["RULES", "Finding", "check_source"]
