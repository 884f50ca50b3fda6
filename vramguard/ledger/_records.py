"""The ledger's records: one device at one moment, every byte on a line with its holder.

Plain frozen dataclasses, built by :func:`vramguard.explain` and rendered by
``vramguard.report.ledger_text``; :meth:`MemoryLedger.to_dict` and
:meth:`MemoryLedger.from_dict` round-trip them through JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vramguard.core._errors import ReportFormatError

ROLES = ("parameters", "gradients", "optimizer state", "buffers", "activations saved for backward", "other")
"""The roles a tensor line is split by, in this order."""

FORMAT = "vramguard-ledger/1"
RESIDUAL = "residual"
"""The category of the last line: what no other line explains (negative when lines overlap)."""


@dataclass(frozen=True)
class LedgerLine:
    """One line of the ledger: ``nbytes`` held by ``holder``, and what would give it back.

    ``category`` says what kind of memory it is ("tensors", "cached free", "mapped file"...).
    ``roles`` splits a tensor line's bytes by role (``("parameters", n)``, ...). ``storage_bytes``
    is the exact storage bytes of the tensors on the line (on CUDA ``nbytes`` is the allocator's
    blocks, rounded up from them); ``None`` on lines that are not tensors.
    """

    category: str
    nbytes: int
    holder: str
    returned_by: str
    roles: tuple[tuple[str, int], ...] = ()
    storage_bytes: int | None = None
    storages: int | None = None
    detail: str | None = None

    def role_bytes(self, role: str) -> int:
        """The bytes of this line in ``role`` (0 when the line has none)."""
        return sum(n for r, n in self.roles if r == role)


@dataclass(frozen=True)
class MemoryLedger:
    """Every byte one device held at one moment, line by line; the lines add up to ``total_bytes``.

    The last line is always the residual (``category == "residual"``): the part of the total no
    other line explains, stated rather than hidden. ``total_bytes`` is the resident set on the
    host and NVML's figure for this process on CUDA (the allocator's reserved bytes where NVML
    cannot say; ``notes`` then says so).
    """

    device: str
    total_bytes: int
    total_source: str
    lines: tuple[LedgerLine, ...]
    taken_at_s: float
    duration_s: float
    notes: tuple[str, ...] = field(default=())

    @property
    def residual_bytes(self) -> int:
        """The residual line's bytes."""
        return sum(line.nbytes for line in self.lines if line.category == RESIDUAL)

    @property
    def residual_fraction(self) -> float | None:
        """|residual| / total, or None for an empty total."""
        return abs(self.residual_bytes) / self.total_bytes if self.total_bytes else None

    def lines_of(self, category: str) -> tuple[LedgerLine, ...]:
        """The lines of one category, in ledger order (largest first within tensors)."""
        return tuple(line for line in self.lines if line.category == category)

    def by_category(self) -> dict[str, int]:
        """Bytes per category, in ledger order (the residual last); the values add up to the total."""
        totals: dict[str, int] = {}
        for line in self.lines:
            totals[line.category] = totals.get(line.category, 0) + line.nbytes
        return totals

    def held_by(self, text: str) -> tuple[LedgerLine, ...]:
        """The lines whose holder contains ``text``."""
        return tuple(line for line in self.lines if text in line.holder)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``json.dumps(ledger.to_dict())``)."""
        return {
            "format": FORMAT,
            "device": self.device,
            "total_bytes": self.total_bytes,
            "total_source": self.total_source,
            "residual_bytes": self.residual_bytes,
            "taken_at_s": self.taken_at_s,
            "duration_s": self.duration_s,
            "notes": list(self.notes),
            "lines": [
                {
                    "category": line.category,
                    "nbytes": line.nbytes,
                    "holder": line.holder,
                    "returned_by": line.returned_by,
                    "roles": {role: n for role, n in line.roles},
                    "storage_bytes": line.storage_bytes,
                    "storages": line.storages,
                    "detail": line.detail,
                }
                for line in self.lines
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MemoryLedger:
        """The ledger :meth:`to_dict` wrote; :class:`~vramguard.ReportFormatError` otherwise."""
        if data.get("format") != FORMAT:
            raise ReportFormatError("format", data.get("format"), repr(FORMAT), missing="format" not in data)
        try:
            lines = tuple(
                LedgerLine(
                    category=str(item["category"]),
                    nbytes=int(item["nbytes"]),
                    holder=str(item["holder"]),
                    returned_by=str(item["returned_by"]),
                    roles=tuple((str(r), int(n)) for r, n in dict(item.get("roles") or {}).items()),
                    storage_bytes=None if item.get("storage_bytes") is None else int(item["storage_bytes"]),
                    storages=None if item.get("storages") is None else int(item["storages"]),
                    detail=None if item.get("detail") is None else str(item["detail"]),
                )
                for item in data["lines"]
            )
            return cls(
                device=str(data["device"]),
                total_bytes=int(data["total_bytes"]),
                total_source=str(data["total_source"]),
                lines=lines,
                taken_at_s=float(data["taken_at_s"]),
                duration_s=float(data["duration_s"]),
                notes=tuple(str(n) for n in data.get("notes", ())),
            )
        except KeyError as error:
            raise ReportFormatError(str(error.args[0]), None, "a ledger written by to_dict()", missing=True) from error
        except (TypeError, ValueError) as error:
            raise ReportFormatError("lines", str(error), "a ledger written by to_dict()") from error
