"""The records sessions and releases produce: frozen dataclasses, sizes in bytes, times in seconds.

Each record has ``to_dict()`` (JSON-safe) and a plain-text ``__str__``; rich tables and plots
live in :mod:`vramguard.report`.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterable
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from vramguard.core import _hooks
from vramguard.core._decode import Fields, check_float, check_int
from vramguard.core._errors import ReportFormatError, VramGuardError
from vramguard.core._sizes import format_size
from vramguard.core._words import words_for
from vramguard.probes import MemorySnapshot

_R = TypeVar("_R")
_POST_INIT: dict[type, bool] = {}
"""Per record class that :func:`build` made: whether it has a ``__post_init__``."""


def build(cls: type[_R], **values: Any) -> _R:
    """A frozen record of ``cls`` from ``values``, without the dataclass's ``__init__``: that
    sets each field through ``object.__setattr__`` (20 fields: a few µs), and a session per
    inference step builds its records at every step. A field not given reads its default from
    the class (a dataclass keeps each plain default as a class attribute), so only the given
    values are stored. The record's ``__post_init__`` runs; the values are not checked otherwise
    (the fields' types are the caller's to keep; a test checks each use against ``__init__``)."""
    post = _POST_INIT.get(cls)
    if post is None:
        if any(f.default_factory is not MISSING for f in fields(cls)):  # type: ignore[arg-type]
            raise TypeError(f"build() makes records whose defaults are values, not {cls.__name__}")
        post = _POST_INIT[cls] = hasattr(cls, "__post_init__")
    made = object.__new__(cls)
    made.__dict__.update(values)
    if post:
        made.__post_init__()  # type: ignore[attr-defined]
    return made


@dataclass(frozen=True)
class ReleaseStep:
    """One step of the release procedure: how long it took and what it freed.

    ``allocated_freed_bytes`` is the drop in allocated bytes across the step (live memory the
    step let go); ``reserved_freed_bytes`` the drop in reserved bytes (memory handed back to the
    device or the OS). Negative values mean the figure grew during the step.
    """

    name: str
    duration_s: float
    allocated_freed_bytes: int | None
    reserved_freed_bytes: int | None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> ReleaseStep:
        """Rebuild a step written by :meth:`to_dict`; a bad key raises :class:`ReportFormatError`."""
        read = _fields(data)
        return cls(
            name=read.string("name"),
            duration_s=read.number("duration_s"),
            allocated_freed_bytes=read.integer("allocated_freed_bytes", nullable=True),
            reserved_freed_bytes=read.integer("reserved_freed_bytes", nullable=True),
            detail=read.string("detail", ""),
        )


SCHEMA = 1
"""The version of the report JSON: ``"schema": 1``. Files without the key are schema 0 (the same
layout, written before the key existed); :func:`vramguard.load_report` reads both."""
_SCHEMAS = (0, 1)


def _fields(data: Any) -> Fields:
    return data if isinstance(data, Fields) else Fields(data)


def _check_schema(read: Fields) -> None:
    schema = read.data.get("schema", 0)
    if isinstance(schema, bool) or schema not in _SCHEMAS:
        raise ReportFormatError(read.path("schema"), schema, "0 (no key) or 1: this vramguard reads schemas 0 and 1")


NO_HOLDER = "holder not found"
"""The group of leaks whose holders the census could not name."""


@dataclass(frozen=True)
class Leak:
    """A tensor storage allocated inside a session that survived its release.

    ``holders``: the paths that still reach it. ``group``: the holder path of the module or
    container that holds it (``"global __main__.PIPE.model"`` for a tensor held by
    ``"global __main__.PIPE.model.encoder.layers[0].fc1.weight"``); ``None`` when not known, and
    then the leak is grouped by its first holder path (see :class:`LeakGroup`). ``owner_kind``:
    what the group's owner is when it is more than a module or a container (``"KV cache, 24
    layers"``, ``"model output CausalLMOutputWithPast"``, ``"Adam state"``, ``"output with its
    autograd graph, 2 saved tensors"``); ``None`` otherwise. It is apart from ``group`` so that
    the group's path is the same from one session to the next.
    """

    nbytes: int
    description: str
    created_at: str | None
    holders: tuple[str, ...]
    group: str | None = None
    owner_kind: str | None = None

    @property
    def group_holder(self) -> str:
        """The holder path this leak is grouped under: ``group``, else its first holder, else
        ``"holder not found"``."""
        if self.group:
            return self.group
        return self.holders[0] if self.holders else NO_HOLDER

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["holders"] = list(self.holders)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Leak:
        """Rebuild a leak written by :meth:`to_dict` (files written before ``group`` or
        ``owner_kind`` read them as ``None``)."""
        read = _fields(data)
        return cls(
            nbytes=read.integer("nbytes"),
            description=read.string("description"),
            created_at=read.string("created_at", None, nullable=True),
            holders=read.strings("holders", ()),
            group=read.string("group", None, nullable=True),
            owner_kind=read.string("owner_kind", None, nullable=True),
        )

    def __str__(self) -> str:
        where = f" created at {self.created_at}" if self.created_at else ""
        held = "; ".join(self.holders) if self.holders else NO_HOLDER
        return f"{format_size(self.nbytes)} {self.description}{where} — held by {held}"


def _within(path: str, group: str) -> bool:
    """Whether holder ``path`` names ``group`` or something inside it (``group.attr``,
    ``group[0]``, ``group (dict)``, ``... of group``)."""
    start = path.find(group)
    while start >= 0:
        end = start + len(group)
        before_ok = start == 0 or path[start - 1] == " "
        after_ok = end == len(path) or path[end] in ".[ ("
        if before_ok and after_ok:
            return True
        start = path.find(group, start + 1)
    return False


@dataclass(frozen=True)
class LeakGroup:
    """The leaks one module or container holds: ``holder`` its path, ``nbytes`` their total,
    ``count`` how many tensor storages, ``leaks`` them, largest first; ``owner_kind`` what the
    owner is (see :attr:`Leak.owner_kind`), or ``None``.

    Built by :attr:`Leaks.groups` (``SessionReport.leak_groups``) from each leak's
    :attr:`Leak.group_holder`.
    """

    holder: str
    nbytes: int
    count: int
    leaks: tuple[Leak, ...]
    owner_kind: str | None = None

    @classmethod
    def of(cls, holder: str, leaks: Iterable[Leak]) -> LeakGroup:
        """The group of ``leaks`` under ``holder``: totals counted, leaks sorted largest first,
        the owner's kind from the largest leak that has one."""
        ordered = tuple(sorted(leaks, key=lambda leak: -leak.nbytes))
        kind = next((leak.owner_kind for leak in ordered if leak.owner_kind), None)
        return cls(holder, sum(leak.nbytes for leak in ordered), len(ordered), ordered, kind)

    @property
    def other_holders(self) -> tuple[str, ...]:
        """Holder paths of the group's leaks beyond the one the group is named by (someone else
        holds them too, e.g. a live output's graph), in order. A leak's first path is the one its
        group came from, so it is never repeated here."""
        seen: dict[str, None] = {}
        for leak in self.leaks:
            for path in leak.holders[1:] if leak.group else leak.holders:
                if not _within(path, self.holder):
                    seen.setdefault(path, None)
        return tuple(seen)

    def to_dict(self) -> dict[str, Any]:
        return {
            "holder": self.holder,
            "owner_kind": self.owner_kind,
            "nbytes": self.nbytes,
            "count": self.count,
            "tensors": [leak.to_dict() for leak in self.leaks],
        }

    @classmethod
    def from_dict(cls, data: Any) -> LeakGroup:
        """Rebuild a group written by :meth:`to_dict`."""
        read = _fields(data)
        return cls(
            holder=read.string("holder"),
            nbytes=read.integer("nbytes"),
            count=read.integer("count"),
            leaks=tuple(Leak.from_dict(x) for x in read.objects("tensors", ())),
            owner_kind=read.string("owner_kind", None, nullable=True),
        )

    def lines(self, *, verbose: bool = False) -> list[str]:
        """The group as text: one line, the other holders under it, and with ``verbose`` each
        tensor under it. A named owner's line says what it is first ("leak: KV cache, 24 layers,
        1.50 GiB, held by global __main__.PKV"); a lone tensor keeps :class:`Leak`'s line."""
        if self.owner_kind:
            lines = [f"leak: {self.owner_kind}, {format_size(self.nbytes)}, held by {self.holder}"]
        elif self.count == 1:
            return [f"leak: {self.leaks[0]}"]
        else:
            held = f"— {NO_HOLDER}" if self.holder == NO_HOLDER else f"held by {self.holder}"
            lines = [f"leak: {format_size(self.nbytes)} in {self.count} tensors {held}"]
        lines += [f"    also held by {path}" for path in self.other_holders]
        if verbose:
            lines += [f"    {leak}" for leak in self.leaks]
        return lines

    def __str__(self) -> str:
        return "\n".join(self.lines(verbose=True))


class Leaks(tuple[Leak, ...]):
    """``SessionReport.leaks``: a tuple of :class:`Leak` (it compares equal to a plain tuple of
    the same leaks) whose ``str()`` lists the leaks grouped by holder, each tensor under its group."""

    __slots__ = ()

    @property
    def groups(self) -> tuple[LeakGroup, ...]:
        """The leaks grouped by :attr:`Leak.group_holder`: largest total first, ties by holder."""
        by_holder: dict[str, list[Leak]] = {}
        for leak in self:
            by_holder.setdefault(leak.group_holder, []).append(leak)
        groups = (LeakGroup.of(holder, leaks) for holder, leaks in by_holder.items())
        return tuple(sorted(groups, key=lambda group: (-group.nbytes, group.holder)))

    def lines(self, *, verbose: bool = False) -> list[str]:
        """One line per group (see :meth:`LeakGroup.lines`), largest first."""
        return [line for group in self.groups for line in group.lines(verbose=verbose)]

    def __str__(self) -> str:
        return "\n".join(self.lines(verbose=True))


@dataclass(frozen=True)
class OrderViolation:
    """``empty_cache()`` ran while memory that was freed later in the block was still referenced."""

    call_site: str
    bytes_left_cached: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> OrderViolation:
        read = _fields(data)
        return cls(call_site=read.string("call_site"), bytes_left_cached=read.integer("bytes_left_cached"))

    def __str__(self) -> str:
        return (
            f"empty_cache() at {self.call_site} ran before the references were dropped: "
            f"{format_size(self.bytes_left_cached)} freed afterwards stayed cached"
        )


@dataclass(frozen=True)
class Timeline:
    """Memory over time: samples of (t_s, allocated, reserved, nvml process used) and marks.

    ``t_s`` counts from the session's entry. ``marks`` are (t_s, label) pairs: "enter", "exit",
    each release step ("release:gc", ...) and each empty_cache call.
    """

    interval_s: float
    samples: tuple[tuple[float, int | None, int | None, int | None], ...]
    marks: tuple[tuple[float, str], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "interval_s": self.interval_s,
            "samples": [list(s) for s in self.samples],
            "marks": [list(m) for m in self.marks],
        }

    @classmethod
    def from_dict(cls, data: Any) -> Timeline:
        read = _fields(data)
        samples = []
        for index, sample in enumerate(read.array("samples")):
            where = f"{read.path('samples')}[{index}]"
            if not isinstance(sample, list) or len(sample) != 4:
                raise ReportFormatError(where, sample, "[t_s, allocated, reserved, nvml used]")
            t_s = check_float(sample[0], f"{where}[0]")
            figures = [check_int(v, f"{where}[{i}]", nullable=True) for i, v in enumerate(sample[1:], 1)]
            samples.append((t_s, figures[0], figures[1], figures[2]))
        marks = []
        for index, mark in enumerate(read.array("marks")):
            where = f"{read.path('marks')}[{index}]"
            if not isinstance(mark, list) or len(mark) != 2 or not isinstance(mark[1], str):
                raise ReportFormatError(where, mark, "[t_s, label]")
            marks.append((check_float(mark[0], f"{where}[0]"), mark[1]))
        return cls(interval_s=read.number("interval_s"), samples=tuple(samples), marks=tuple(marks))


def _diff(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a - b


@dataclass(frozen=True)
class ReleaseReport:
    """What :func:`vramguard.release` did and what came back.

    ``reclaimed_bytes``: the drop in reserved bytes across the release (memory given back to
    the device or the OS). ``cached_bytes_after``: reserved − allocated afterwards.
    ``survivors``: values dropped from attributes that are still alive after the release
    (someone else holds them).
    """

    device: str
    before: MemorySnapshot
    after: MemorySnapshot
    steps: tuple[ReleaseStep, ...]
    dropped: tuple[str, ...] = ()
    evicted: tuple[str, ...] = ()
    survivors: tuple[str, ...] = ()
    duration_s: float = 0.0

    @property
    def reclaimed_bytes(self) -> int | None:
        return _diff(self.before.reserved_bytes, self.after.reserved_bytes)

    @property
    def freed_allocated_bytes(self) -> int | None:
        return _diff(self.before.allocated_bytes, self.after.allocated_bytes)

    @property
    def cached_bytes_after(self) -> int | None:
        return self.after.cached_bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "kind": "release",
            "device": self.device,
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "steps": [s.to_dict() for s in self.steps],
            "dropped": list(self.dropped),
            "evicted": list(self.evicted),
            "survivors": list(self.survivors),
            "duration_s": self.duration_s,
            "reclaimed_bytes": self.reclaimed_bytes,
            "freed_allocated_bytes": self.freed_allocated_bytes,
            "cached_bytes_after": self.cached_bytes_after,
        }

    @classmethod
    def from_dict(cls, data: Any) -> ReleaseReport:
        """Rebuild a report written by :meth:`to_dict` (any schema in ``_SCHEMAS``); a missing
        or malformed key raises :class:`ReportFormatError` naming it."""
        read = _fields(data)
        _check_schema(read)
        return cls(
            device=read.string("device"),
            before=MemorySnapshot.from_dict(read.child("before")),
            after=MemorySnapshot.from_dict(read.child("after")),
            steps=tuple(ReleaseStep.from_dict(step) for step in read.objects("steps")),
            dropped=read.strings("dropped", ()),
            evicted=read.strings("evicted", ()),
            survivors=read.strings("survivors", ()),
            duration_s=read.number("duration_s", 0.0),
        )

    def __str__(self) -> str:
        lines = [
            f"vramguard release on {self.device} ({self.duration_s * 1000:.1f} ms)",
            f"  allocated  {format_size(self.before.allocated_bytes)} -> {format_size(self.after.allocated_bytes)}",
            f"  reserved   {format_size(self.before.reserved_bytes)} -> {format_size(self.after.reserved_bytes)}",
            f"  reclaimed  {_reclaimed(self.reclaimed_bytes)}; "
            f"{words_for(self.device).cached} {format_size(self.cached_bytes_after)}",
        ]
        lines += _steps_text(self.steps, self.device)
        lines += [f"  dropped: {d}" for d in self.dropped]
        lines += [f"  evicted: {e}" for e in self.evicted]
        lines += [f"  still alive elsewhere: {s}" for s in self.survivors]
        return "\n".join(lines)


def _row(label: str, allocated: int | None, reserved: int | None) -> str:
    return f"  {label:<10} {format_size(allocated):>14} {format_size(reserved):>14}"


def _reclaimed(nbytes: int | None) -> str:
    """A release gives back, or nothing: memory that grew while it ran is said so, never a
    negative reclaim (the pytest plugin's table shows "—" for it)."""
    if nbytes is not None and nbytes < 0:
        return f"— (grew {format_size(-nbytes)} during the release)"
    return format_size(nbytes)


def _steps_text(steps: tuple[ReleaseStep, ...], device: str) -> list[str]:
    words = words_for(device)
    lines = []
    for step in steps:
        detail = f"  ({step.detail})" if step.detail else ""
        lines.append(
            f"  step {step.name:<12} {step.duration_s * 1000:8.2f} ms  "
            f"{words.allocated} {format_size(step.allocated_freed_bytes, signed=True):>11} freed  "
            f"{words.reserved} {format_size(step.reserved_freed_bytes, signed=True):>11} returned{detail}"
        )
    return lines


@dataclass(frozen=True)
class SessionReport:
    """What one ``gpu_session`` block did to memory.

    ``before``: at entry. ``at_exit``: when the block ended, before the release. ``after``: after
    the release. ``peak_allocated_bytes``/``peak_reserved_bytes``: the allocator's peak over the
    block on CUDA (reset at entry; nested sessions fold theirs into the outer's); on the host the
    highest sampled figure, raised by the kernel's resident high-water mark (``VmHWM``, reset per
    session; its rise above the entry's resident set is added to both entry figures, so a spike
    between two samples counts; see docs/memory-model.md). ``peak_increase_bytes``:
    the peak above ``before.allocated_bytes`` — what ``max_peak`` limits.
    ``reclaimed_bytes``: the drop in reserved bytes across the release. ``cached_bytes_after``:
    reserved − allocated after the release. ``leaked_bytes``: allocated after − allocated
    before − kept bytes, never below 0 (with the census on, the survivors' storage bytes; on
    the host, figures under ``HOST_NOISE_FLOOR_BYTES`` count as 0 without the census).
    """

    name: str
    device: str
    before: MemorySnapshot
    at_exit: MemorySnapshot
    after: MemorySnapshot
    peak_allocated_bytes: int | None
    peak_reserved_bytes: int | None
    kept_bytes: int
    leaked_bytes: int | None
    release_steps: tuple[ReleaseStep, ...]
    duration_s: float
    released: bool = True
    concurrent: bool = False
    evicted: tuple[str, ...] = ()
    leaks: tuple[Leak, ...] = Leaks()
    """A :class:`Leaks` tuple (a plain tuple passed in is converted), largest first; ``str()``
    of it lists the leaks grouped by holder with their tensors."""
    order_violations: tuple[OrderViolation, ...] = ()
    timeline: Timeline | None = None
    raised: str | None = None
    notes: tuple[str, ...] = field(default=())
    memory_history: Any = field(default=None, compare=False, repr=False)
    """torch's memory snapshot with the block's history (``record_history=True``, CUDA); not
    part of :meth:`to_dict`: write it with :meth:`dump_snapshot`."""
    cycles: tuple[str, ...] = ()
    """With the census on: one line per tensor storage created in the block that only a
    reference cycle held, freed by the release's ``gc.collect()``, naming the cycle's types."""

    def __post_init__(self) -> None:
        if not isinstance(self.leaks, Leaks):
            object.__setattr__(self, "leaks", Leaks(self.leaks))

    @property
    def leak_groups(self) -> tuple[LeakGroup, ...]:
        """The leaks grouped by the module or container that holds them, largest first."""
        return Leaks(self.leaks).groups

    @property
    def peak_increase_bytes(self) -> int | None:
        return _diff(self.peak_allocated_bytes, self.before.allocated_bytes)

    @property
    def reclaimed_bytes(self) -> int | None:
        return _diff(self.at_exit.reserved_bytes, self.after.reserved_bytes)

    @property
    def cached_bytes_after(self) -> int | None:
        return self.after.cached_bytes

    def plot(self, path: str | os.PathLike[str], **options: Any) -> Path:
        """Write a PNG of this report (the timeline if recorded, else bars); needs matplotlib.

        Options go to :func:`vramguard.report.plot.plot_report`. The record never imports its
        renderer: the report layer lends the records its plotter when it is loaded.
        """
        return _hooks.plot([self], path, **options)

    def dump_snapshot(self, path: str | os.PathLike[str]) -> Path:
        """Write torch's memory snapshot of the block as the pickle pytorch.org/memory_viz opens."""
        if self.memory_history is None:
            raise VramGuardError(
                f"session {self.name!r} has no memory history to dump: run it on a CUDA device "
                "with gpu_session(..., record_history=True)"
            )
        target = Path(path)
        with target.open("wb") as file:
            pickle.dump(self.memory_history, file)
        return target

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict; :func:`vramguard.report.load_report` reads it back."""
        return {
            "schema": SCHEMA,
            "kind": "session",
            "name": self.name,
            "device": self.device,
            "before": self.before.to_dict(),
            "at_exit": self.at_exit.to_dict(),
            "after": self.after.to_dict(),
            "peak_allocated_bytes": self.peak_allocated_bytes,
            "peak_reserved_bytes": self.peak_reserved_bytes,
            "peak_increase_bytes": self.peak_increase_bytes,
            "kept_bytes": self.kept_bytes,
            "leaked_bytes": self.leaked_bytes,
            "reclaimed_bytes": self.reclaimed_bytes,
            "cached_bytes_after": self.cached_bytes_after,
            "release_steps": [s.to_dict() for s in self.release_steps],
            "duration_s": self.duration_s,
            "released": self.released,
            "concurrent": self.concurrent,
            "evicted": list(self.evicted),
            "leaks": [leak.to_dict() for leak in self.leaks],
            "leak_groups": [group.to_dict() for group in self.leak_groups],
            "order_violations": [v.to_dict() for v in self.order_violations],
            "timeline": None if self.timeline is None else self.timeline.to_dict(),
            "raised": self.raised,
            "notes": list(self.notes),
            "cycles": list(self.cycles),
        }

    @classmethod
    def from_dict(cls, data: Any) -> SessionReport:
        """Rebuild a report written by :meth:`to_dict` (any schema in ``_SCHEMAS``); a missing
        or malformed key raises :class:`ReportFormatError` naming it and what is accepted."""
        read = _fields(data)
        _check_schema(read)
        timeline = read.data.get("timeline")
        return cls(
            name=read.string("name"),
            device=read.string("device"),
            before=MemorySnapshot.from_dict(read.child("before")),
            at_exit=MemorySnapshot.from_dict(read.child("at_exit")),
            after=MemorySnapshot.from_dict(read.child("after")),
            peak_allocated_bytes=read.integer("peak_allocated_bytes", nullable=True),
            peak_reserved_bytes=read.integer("peak_reserved_bytes", nullable=True),
            kept_bytes=read.integer("kept_bytes"),
            leaked_bytes=read.integer("leaked_bytes", nullable=True),
            release_steps=tuple(ReleaseStep.from_dict(s) for s in read.objects("release_steps")),
            duration_s=read.number("duration_s"),
            released=read.flag("released", True),
            concurrent=read.flag("concurrent", False),
            evicted=read.strings("evicted", ()),
            leaks=Leaks(Leak.from_dict(x) for x in read.objects("leaks", ())),
            order_violations=tuple(OrderViolation.from_dict(v) for v in read.objects("order_violations", ())),
            timeline=None if timeline is None else Timeline.from_dict(read.child("timeline")),
            raised=read.string("raised", None, nullable=True),
            notes=read.strings("notes", ()),
            cycles=read.strings("cycles", ()),
        )

    def __str__(self) -> str:
        flags = " (concurrent sessions on this device: figures are process-wide)" if self.concurrent else ""
        words = words_for(self.device)
        lines = [
            f"vramguard session {self.name!r} on {self.device}: {self.duration_s * 1000:.1f} ms{flags}",
            f"  {'':<10} {words.allocated:>14} {words.reserved:>14}",
            _row("before", self.before.allocated_bytes, self.before.reserved_bytes),
            _row("peak", self.peak_allocated_bytes, self.peak_reserved_bytes),
            _row("at exit", self.at_exit.allocated_bytes, self.at_exit.reserved_bytes),
            _row("after", self.after.allocated_bytes, self.after.reserved_bytes),
            f"  reclaimed {_reclaimed(self.reclaimed_bytes)}, {words.cached} {format_size(self.cached_bytes_after)}, "
            f"kept {format_size(self.kept_bytes)}, leaked {format_size(self.leaked_bytes)}",
        ]
        if words.legend:
            lines.append(f"  ({words.legend})")
        if not self.released:
            lines.append("  release was off (release=False)")
        lines += _steps_text(self.release_steps, self.device)
        lines += [f"  evicted: {e}" for e in self.evicted]
        lines += [f"  {line}" for line in Leaks(self.leaks).lines()]
        for violation in self.order_violations:
            lines.append(f"  order: {violation}")
        if self.raised:
            lines.append(f"  the block raised {self.raised}")
        lines += [f"  note: {n}" for n in self.notes]
        lines += [f"  cycle: {c}" for c in self.cycles]
        return "\n".join(lines)
