"""Moved to :mod:`vramguard.lint`; kept so that ``from vramguard.census import check_source`` still works."""

from __future__ import annotations

from vramguard.lint import RULES, Finding, check_source

__all__ = ["RULES", "Finding", "check_source"]
