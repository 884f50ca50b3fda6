"""``MultiDeviceReport``: what one ``gpu_session(device="all")`` block did on each device, and the total.

One :class:`SessionReport` per device (each measured and released on its own device), and sums
over them. A total is ``None`` only when no device could read that figure; a device that could
not (``None``) adds nothing, and ``incomplete`` lists the figures some device lacked.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vramguard.core import _hooks
from vramguard.core._errors import InvalidArgument
from vramguard.core._records import Leak, Leaks, SessionReport
from vramguard.core._sizes import format_size


def _total(reports: tuple[SessionReport, ...], figure: Callable[[SessionReport], int | None]) -> int | None:
    values = [v for v in (figure(r) for r in reports) if v is not None]
    return sum(values) if values else None


@dataclass(frozen=True)
class MultiDeviceReport:
    """One session over several devices: ``devices`` holds each device's :class:`SessionReport`,
    in the order the devices were given; the ``*_bytes`` properties are their sums.

    ``peak_allocated_bytes`` sums each device's own peak: devices peak at different moments, so
    it bounds the block's simultaneous total from above (on one device it is that device's peak).
    """

    name: str
    devices: tuple[SessionReport, ...]
    duration_s: float
    raised: str | None = None
    evicted: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.devices or not all(isinstance(r, SessionReport) for r in self.devices):
            raise InvalidArgument("devices", self.devices, "one or more SessionReport, one per device")

    @property
    def device_names(self) -> tuple[str, ...]:
        return tuple(r.device for r in self.devices)

    def by_device(self, device: str) -> SessionReport:
        """The report of ``device`` (``"cuda:1"``, ``"cpu"``)."""
        for report in self.devices:
            if report.device == device:
                return report
        raise InvalidArgument("device", device, self.device_names)

    @property
    def peak_allocated_bytes(self) -> int | None:
        return _total(self.devices, lambda r: r.peak_allocated_bytes)

    @property
    def peak_reserved_bytes(self) -> int | None:
        return _total(self.devices, lambda r: r.peak_reserved_bytes)

    @property
    def peak_increase_bytes(self) -> int | None:
        return _total(self.devices, lambda r: r.peak_increase_bytes)

    @property
    def reclaimed_bytes(self) -> int | None:
        return _total(self.devices, lambda r: r.reclaimed_bytes)

    @property
    def cached_bytes_after(self) -> int | None:
        return _total(self.devices, lambda r: r.cached_bytes_after)

    @property
    def kept_bytes(self) -> int:
        return sum(r.kept_bytes for r in self.devices)

    @property
    def leaked_bytes(self) -> int | None:
        return _total(self.devices, lambda r: r.leaked_bytes)

    @property
    def leaks(self) -> Leaks:
        """Every device's leaks, largest first (:attr:`device_leaks` pairs each with its device)."""
        return Leaks(sorted((leak for r in self.devices for leak in r.leaks), key=lambda leak: -leak.nbytes))

    @property
    def device_leaks(self) -> tuple[tuple[str, Leak], ...]:
        """(device, leak) pairs, largest first."""
        pairs = [(r.device, leak) for r in self.devices for leak in r.leaks]
        return tuple(sorted(pairs, key=lambda pair: -pair[1].nbytes))

    @property
    def incomplete(self) -> tuple[str, ...]:
        """The totals some device could not read (they sum the devices that could)."""
        names = ("peak_allocated_bytes", "reclaimed_bytes", "leaked_bytes")
        return tuple(name for name in names if any(getattr(r, name) is None for r in self.devices))

    def plot(self, path: str | os.PathLike[str], **options: Any) -> Path:
        """Write a PNG with one panel per device; needs matplotlib (see :meth:`SessionReport.plot`)."""
        return _hooks.plot(self.devices, path, **options)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict: each device's session and the totals; ``load_report`` reads it back."""
        return {
            "kind": "multi",
            "name": self.name,
            "duration_s": self.duration_s,
            "raised": self.raised,
            "evicted": list(self.evicted),
            "notes": list(self.notes),
            "devices": [r.to_dict() for r in self.devices],
            "total": {
                "peak_allocated_bytes": self.peak_allocated_bytes,
                "peak_reserved_bytes": self.peak_reserved_bytes,
                "peak_increase_bytes": self.peak_increase_bytes,
                "reclaimed_bytes": self.reclaimed_bytes,
                "cached_bytes_after": self.cached_bytes_after,
                "kept_bytes": self.kept_bytes,
                "leaked_bytes": self.leaked_bytes,
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MultiDeviceReport:
        """Rebuild a report written by :meth:`to_dict` (the totals are recomputed, not read)."""
        return cls(
            name=str(data["name"]),
            devices=tuple(SessionReport.from_dict(d) for d in data["devices"]),
            duration_s=float(data["duration_s"]),
            raised=data.get("raised"),
            evicted=tuple(data.get("evicted", ())),
            notes=tuple(data.get("notes", ())),
        )

    def __str__(self) -> str:
        lines = [f"vramguard session {self.name!r} on {len(self.devices)} devices: {self.duration_s * 1000:.1f} ms"]
        lines.append(f"  {'device':<10} {'peak':>12} {'reclaimed':>12} {'leaked':>12}")
        for r in self.devices:
            lines.append(_line(r.device, r.peak_allocated_bytes, r.reclaimed_bytes, r.leaked_bytes))
        lines.append(_line("total", self.peak_allocated_bytes, self.reclaimed_bytes, self.leaked_bytes))
        if self.incomplete:
            lines.append(f"  note: some device could not read {', '.join(self.incomplete)}; totals sum the rest")
        if self.raised:
            lines.append(f"  the block raised {self.raised}")
        lines += [f"  evicted: {e}" for e in self.evicted]
        lines += [f"  note: {n}" for n in self.notes]
        for r in self.devices:
            lines += ["", *(f"  {line}" for line in str(r).splitlines())]
        return "\n".join(lines)


def _line(label: str, peak: int | None, reclaimed: int | None, leaked: int | None) -> str:
    return f"  {label:<10} {format_size(peak):>12} {format_size(reclaimed):>12} {format_size(leaked):>12}"
