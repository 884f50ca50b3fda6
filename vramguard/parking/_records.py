"""The record of a park or a wake: what moved, where, how long, and the memory measured around it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from vramguard.core._sizes import format_size

Target = Literal["cpu", "disk", "discard"]


@dataclass(frozen=True)
class ParkReport:
    """One :func:`vramguard.park` or :func:`vramguard.wake`.

    ``modules``: the parked modules (attribute path and type). ``tensors`` / ``storages``: how
    many tensor objects and distinct storages moved (tied weights and views share one), and
    ``nbytes`` their bytes. ``device``: where the storages live(d) on the device side; ``to``:
    where a park put them (``path`` for ``"disk"``). The memory figures are measured on
    ``device`` before and after, never computed: ``allocated_freed_bytes`` is the drop in
    allocated bytes (negative on a wake: memory taken), ``reserved_returned_bytes`` the drop in
    reserved bytes (handed back to the device, or to the OS on the host), and
    ``host_rss_change_bytes`` the change in the process's resident set. ``None``: not readable.
    """

    kind: Literal["park", "wake"]
    to: Target
    device: str
    modules: tuple[str, ...]
    tensors: int
    storages: int
    nbytes: int
    duration_s: float
    allocated_freed_bytes: int | None
    reserved_returned_bytes: int | None
    host_rss_change_bytes: int | None
    path: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def bandwidth_bytes_per_s(self) -> float | None:
        """Bytes moved per second (None for a discard's park, which moves nothing)."""
        if self.duration_s <= 0 or (self.kind == "park" and self.to == "discard"):
            return None
        return self.nbytes / self.duration_s

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["bandwidth_bytes_per_s"] = self.bandwidth_bytes_per_s
        return data

    def __str__(self) -> str:
        where = f"{self.to} {self.path}" if self.path else self.to
        direction = f"{self.device} -> {where}" if self.kind == "park" else f"{where} -> {self.device}"
        speed = self.bandwidth_bytes_per_s
        rate = f" ({format_size(int(speed))}/s)" if speed is not None else ""
        line = (
            f"{self.kind} {', '.join(self.modules)}: {format_size(self.nbytes)} in {self.storages} storage(s), "
            f"{direction}, {self.duration_s * 1000:.1f} ms{rate}; allocated "
            f"{format_size(self.allocated_freed_bytes, signed=True)} freed, reserved "
            f"{format_size(self.reserved_returned_bytes, signed=True)} returned, RSS "
            f"{format_size(self.host_rss_change_bytes, signed=True)}"
        )
        return "\n".join([line, *(f"  note: {note}" for note in self.notes)])
