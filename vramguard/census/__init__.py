"""The census: which tensors a session's block created, which survived, who holds them, and
whether ``empty_cache()`` ran before the references were dropped (at run time and in code).

Returns records (:class:`~vramguard.Leak`, :class:`~vramguard.OrderViolation`,
:class:`Finding`); never prints. The session imports it lazily.
"""

from __future__ import annotations

from vramguard.census._census import Census
from vramguard.census._static import RULES, Finding, check_source

__all__ = ["RULES", "Census", "Finding", "check_source"]
