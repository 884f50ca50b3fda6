"""A session's settings as one frozen, validated value: :class:`SessionOptions`.

``gpu_session(**arguments)`` is the shortcut that builds it once (:meth:`SessionOptions.from_arguments`,
the one place an argument is checked and converted); the session's mechanics take the value,
never the session object. The holder search's bounds (:class:`SearchBounds`) and the ranks'
gather (:class:`GatherSettings`) are values of their own inside it, as httpx holds ``Timeout``
and ``Limits``. :data:`ARGUMENTS` names every argument once, with its default and what it
accepts: the README's and ``docs/sessions.md``'s option lists are checked against it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from vramguard.core._errors import InvalidArgument
from vramguard.core._sampler import HOST_SAMPLE_INTERVAL_S
from vramguard.core._sizes import parse_size
from vramguard.probes import resolve_device

LeakPolicy = Literal["ignore", "warn", "raise"]
LEAK_POLICIES: tuple[LeakPolicy, ...] = ("ignore", "warn", "raise")

DEFAULT_GATHER_TIMEOUT_S = 60.0
"""How long a rank waits at a distributed session's exit for the other ranks (seconds)."""

MAX_GRAPH_NODES = 20_000
"""Nodes visited per census by default; a training step's graph has a few thousand, the PyTorch
FAQ's evaluation loop without ``no_grad`` about ten per kept loss."""
GRAPH_NODES_VAR = "VRAMGUARD_CENSUS_GRAPH_NODES"
"""The environment variable that sets the graph bound (nodes visited per census)."""
_MOST_GRAPH_NODES = 100_000_000


def graph_nodes_bound() -> int:
    """The graph bound: ``VRAMGUARD_CENSUS_GRAPH_NODES`` when set, else :data:`MAX_GRAPH_NODES`."""
    text = os.environ.get(GRAPH_NODES_VAR, "").strip().replace("_", "").replace(",", "")
    if not text:
        return MAX_GRAPH_NODES
    if not text.isdigit() or not 1 <= int(text) <= _MOST_GRAPH_NODES:
        raise InvalidArgument(GRAPH_NODES_VAR, os.environ[GRAPH_NODES_VAR], f"an int from 1 to {_MOST_GRAPH_NODES}")
    return int(text)


@dataclass(frozen=True)
class SearchBounds:
    """How far the holder search goes: ``levels`` steps up from a leak, ``width`` objects per
    leak per level (and 4×``width`` objects scanned per level over all leaks), ``leaks`` walked
    (the largest first), ``graph_nodes`` autograd graph nodes visited to find the tensors kept
    outputs' graphs saved (the latest outputs first; ``VRAMGUARD_CENSUS_GRAPH_NODES``)."""

    levels: int = 24
    width: int = 64
    leaks: int = 256
    graph_nodes: int = field(default_factory=graph_nodes_bound)

    def describe(self, bound: str) -> str:
        if bound == "graph":
            return (
                f"the graph bound ({self.graph_nodes:,} autograd graph nodes per census, the latest outputs' "
                f"first; raise it with the environment variable {GRAPH_NODES_VAR}=...)"
            )
        value, argument = {
            "levels": (f"{self.levels} levels", "holder_levels"),
            "width": (f"{self.width} objects per level", "holder_width"),
        }[bound]
        return f"the {bound} bound ({value}; raise it with gpu_session({argument}=...))"


@dataclass(frozen=True)
class GatherSettings:
    """A distributed session's gather at exit: over ``group`` (None: the default process group),
    waiting at most ``timeout_s`` for the other ranks."""

    group: Any = None
    timeout_s: float = DEFAULT_GATHER_TIMEOUT_S


@dataclass(frozen=True)
class Argument:
    """One argument of ``gpu_session``: its name, its default as written, what it does."""

    name: str
    default: str
    help: str


ARGUMENTS: tuple[Argument, ...] = (
    Argument(
        "device",
        '"auto"',
        '"auto" (the current GPU, else the CPU), "cpu", "cuda", "cuda:N", an int or a torch.device; '
        '"all" or a list gives a MultiDeviceSession',
    ),
    Argument("release", "True", "run the ordered release at exit"),
    Argument("leaks", '"warn"', '"ignore", "warn" (LeakWarning) or "raise" (LeakError) above leak_tolerance'),
    Argument("leak_tolerance", "0", 'a size (0, "512 KiB", "1.5 GB"): leaks up to it are accepted'),
    Argument("max_peak", "None", "a size: the most the block may add at its peak above its start (PeakExceeded)"),
    Argument("census", "True", "track the tensors the block creates, to name leaks and their holders"),
    Argument("strict", "False", "raise ReleaseOrderError on a release-order violation instead of warning"),
    Argument("sample_every", "None", "seconds between samples of a recorded timeline (0, 60]"),
    Argument("record_history", "False", "CUDA: torch's memory history for the block"),
    Argument("holder_levels", "24", "the holder search's steps up from a leak (1 to 100000)"),
    Argument("holder_width", "64", "objects per level the holder search follows (1 to 100000)"),
    Argument("holder_leaks", "256", "leaks whose holders are searched, the largest first (1 to 100000)"),
    Argument("hard", "False", "with max_peak: an allocation past the budget fails inside the block"),
    Argument("isolate", "False", "decorator only: each call runs in a spawned child process"),
    Argument("distributed", "False", "gather every rank's report at exit into cluster_report"),
    Argument("group", "None", "a torch.distributed.ProcessGroup to gather over (implies distributed)"),
    Argument("gather_timeout", "None", "seconds a rank waits for the others at exit (None: 60)"),
)
"""Every argument of ``gpu_session`` (after the name), in the signature's order: written once."""

ARGUMENT_NAMES = frozenset(argument.name for argument in ARGUMENTS)


_BOUNDS: dict[tuple[int, int, int, str | None], SearchBounds] = {}
"""SearchBounds by (levels, width, leaks, the graph bound's variable): a frozen value, made once."""


def _bounds(levels: int, width: int, leaks: int, census: bool) -> SearchBounds:
    # The graph bound is the census's alone: a session without one never reads its variable
    # (an environment lookup is a sizeable part of a bare session's price).
    key = (levels, width, leaks, os.environ.get(GRAPH_NODES_VAR) if census else None)
    found = _BOUNDS.get(key)
    if found is None:
        if len(_BOUNDS) >= 64:  # bounded: a program that varies its bounds per call
            _BOUNDS.clear()
        graph = graph_nodes_bound() if census else MAX_GRAPH_NODES
        found = _BOUNDS[key] = SearchBounds(levels=levels, width=width, leaks=leaks, graph_nodes=graph)
    return found


def _flag(argument: str, value: object) -> bool:
    if value is True or value is False:  # bool has no subclasses: identity is the whole check
        return value
    raise InvalidArgument(argument, value, "True or False")


def _count(argument: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100_000:
        accepted = "an int from 1 to 100000 (a count: the holder search is bounded by work)"
        raise InvalidArgument(argument, value, accepted)
    return value


def gather_settings(distributed: object, group: object, timeout_s: object) -> GatherSettings | None:
    """The ``distributed``, ``group`` and ``gather_timeout`` arguments, checked."""
    _flag("distributed", distributed)
    if group is not None:
        import torch.distributed as dist

        if not dist.is_available() or not isinstance(group, dist.ProcessGroup):
            raise InvalidArgument("group", group, "None or a torch.distributed.ProcessGroup (dist.new_group(...))")
    if timeout_s is not None and (
        isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not 0 < timeout_s <= 86_400
    ):
        raise InvalidArgument("gather_timeout", timeout_s, "None (60 s) or a number of seconds in (0, 86400]")
    if not distributed and group is None:
        return None
    return GatherSettings(group, DEFAULT_GATHER_TIMEOUT_S if timeout_s is None else float(timeout_s))


@dataclass(frozen=True)
class SessionOptions:
    """Everything a session was asked for, converted and checked once (sizes in bytes, the
    device resolved). Build it with :meth:`from_arguments`; ``gpu_session(**arguments)`` does."""

    device: torch.device
    release: bool = True
    leaks: LeakPolicy = "warn"
    leak_tolerance_bytes: int = 0
    max_peak_bytes: int | None = None
    census: bool = True
    strict: bool = False
    sample_every_s: float | None = None
    record_history: bool = False
    bounds: SearchBounds = field(default_factory=SearchBounds)
    hard: bool = False
    isolate: bool = False
    gather: GatherSettings | None = None

    @property
    def sample_interval_s(self) -> float:
        """The sampler's interval: ``sample_every_s`` when a timeline was asked for, else the host's."""
        return self.sample_every_s or HOST_SAMPLE_INTERVAL_S

    @classmethod
    def from_arguments(
        cls,
        *,
        device: Any = "auto",
        release: object = True,
        leaks: object = "warn",
        leak_tolerance: Any = 0,
        max_peak: Any = None,
        census: object = True,
        strict: object = False,
        sample_every: object = None,
        record_history: object = False,
        holder_levels: object = 24,
        holder_width: object = 64,
        holder_leaks: object = 256,
        hard: object = False,
        isolate: object = False,
        distributed: object = False,
        group: object = None,
        gather_timeout: object = None,
    ) -> SessionOptions:
        """Check and convert ``gpu_session``'s arguments (see :data:`ARGUMENTS`); a bad one
        raises :class:`~vramguard.InvalidArgument` naming it and what it accepts."""
        if not isinstance(leaks, str) or leaks not in LEAK_POLICIES:  # `in` on an array compares elementwise
            raise InvalidArgument("leaks", leaks, LEAK_POLICIES)
        for flag, value in (("release", release), ("census", census), ("strict", strict)):
            _flag(flag, value)
        _flag("record_history", record_history)
        if sample_every is not None and (
            isinstance(sample_every, bool) or not isinstance(sample_every, (int, float)) or not 0 < sample_every <= 60
        ):
            raise InvalidArgument("sample_every", sample_every, "None or a number of seconds in (0, 60]")
        resolved = resolve_device(device)
        tolerance = parse_size(leak_tolerance, argument="leak_tolerance")
        limit = None if max_peak is None else parse_size(max_peak, argument="max_peak")
        levels, width = _count("holder_levels", holder_levels), _count("holder_width", holder_width)
        bounds = _bounds(levels, width, _count("holder_leaks", holder_leaks), census is True)
        if record_history and resolved.type != "cuda":
            accepted = "a CUDA device: record_history=True records torch's CUDA memory history"
            raise InvalidArgument("device", device, accepted)
        _flag("hard", hard)
        _flag("isolate", isolate)
        if hard and limit is None:
            raise InvalidArgument("hard", hard, "hard=True only with max_peak=<a size>: the budget it enforces")
        gather = gather_settings(distributed, group, gather_timeout)
        # Built without the frozen dataclass's __init__ (one object.__setattr__ per field): a
        # session per inference step builds one, and this is most of what entering costs.
        made = object.__new__(cls)
        made.__dict__.update(
            device=resolved,
            release=release,
            leaks=leaks,  # checked against LEAK_POLICIES above
            leak_tolerance_bytes=tolerance,
            max_peak_bytes=limit,
            census=census,
            strict=strict,
            sample_every_s=None if sample_every is None else float(sample_every),
            record_history=record_history,
            bounds=bounds,
            hard=hard,
            isolate=isolate,
            gather=gather,
        )
        return made

    def arguments(self) -> dict[str, Any]:
        """The ``gpu_session`` arguments that build this value again (for another device, a child
        process): ``SessionOptions.from_arguments(**options.arguments()) == options``."""
        gather = self.gather
        return {
            "device": self.device,
            "release": self.release,
            "leaks": self.leaks,
            "leak_tolerance": self.leak_tolerance_bytes,
            "max_peak": self.max_peak_bytes,
            "census": self.census,
            "strict": self.strict,
            "sample_every": self.sample_every_s,
            "record_history": self.record_history,
            "holder_levels": self.bounds.levels,
            "holder_width": self.bounds.width,
            "holder_leaks": self.bounds.leaks,
            "hard": self.hard,
            "isolate": self.isolate,
            "distributed": gather is not None,
            "group": None if gather is None else gather.group,
            "gather_timeout": None if gather is None else gather.timeout_s,
        }


_PLAIN = frozenset({str, int, float, bool, type(None), torch.device})
"""The argument types whose values :func:`options_of` may key its cache by."""
_MADE: dict[Any, SessionOptions] = {}
"""Options made from plain arguments, by those arguments (see :func:`options_of`)."""


def options_of(arguments: dict[str, Any]) -> SessionOptions:
    """``SessionOptions.from_arguments(**arguments)``, made once for the same plain arguments
    (strings, numbers, flags, a ``torch.device``): ``with gpu_session("step"):`` in a loop checks
    them at its first step only. The value is frozen, so sharing it changes nothing; the key holds
    what else the value depends on (the device as resolved now, the graph bound's variable where a
    census reads it), and an argument of another type (a process group) is checked at every call."""
    values = tuple(arguments.values())
    kinds = tuple(map(type, values))  # True == 1, and 1 is no flag: the types are in the key
    if not _PLAIN.issuperset(kinds):  # an object (a process group, a str subclass): checked each time
        return SessionOptions.from_arguments(**arguments)
    graph = os.environ.get(GRAPH_NODES_VAR) if arguments.get("census", True) is not False else None
    # The device as resolved now, not as written: "auto", "cuda" and an index-less torch.device
    # mean the current CUDA device, which torch.cuda.set_device changes (per thread). An argument
    # it refuses raises here as from_arguments would.
    device = resolve_device(arguments.get("device", "auto"))
    key = (tuple(arguments), values, kinds, graph, device)  # the order the arguments came in: an entry per order
    found = _MADE.get(key)
    if found is None:
        found = SessionOptions.from_arguments(**arguments)
        if len(_MADE) >= 64:  # bounded: a program that varies its arguments per call
            _MADE.clear()
        _MADE[key] = found
    return found
