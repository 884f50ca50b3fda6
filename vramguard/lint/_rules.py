"""The rules of ``vramguard check`` and the record of one violation.

Every rule is about a call that empties the allocator's cache (the *cache calls* below) placed
where it cannot give the memory back; ``docs/rules.md`` has a wrong and a right example of each.
"""

from __future__ import annotations

from dataclasses import dataclass

RULES: dict[str, str] = {
    "VG001": "empty_cache() before the references are dropped",
    "VG002": "release_memory() empties the cache while the caller's names still hold the objects",
    "VG003": "empty_cache() inside an except block, while the traceback still holds the failed frames",
    "VG004": "empty_cache() while a local that holds a tensor or model is still alive and unused afterwards",
    "VG005": "empty_cache() on every iteration of a loop",
}

# The calls that empty a device cache: torch.{cuda,mps,xpu,...}.empty_cache(), vramguard.empty_cache(),
# accelerate's clear_device_cache() and release_memory(), Accelerator.free_memory(), diffusers'
# free_memory() and the backend_empty_cache() test helper of transformers and diffusers.
CACHE_CALLS = frozenset({"empty_cache", "clear_device_cache", "release_memory", "free_memory", "backend_empty_cache"})
# The ones that take the caller's objects as arguments (and so cannot drop the caller's names).
RELEASING_CALLS = frozenset({"release_memory", "free_memory"})


@dataclass(frozen=True)
class Finding:
    """One rule violation at a place in a file; ``line`` and ``col`` count from 1."""

    path: str
    line: int
    col: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col} {self.code} {self.message}"
