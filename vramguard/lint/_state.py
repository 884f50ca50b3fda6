"""The abstract state of the flow walk, and what a scope's walk leaves for the rules.

One :class:`State` per program point: what each local holds, what was moved to the CPU, the cache
calls whose later drops are watched, and the drops seen since. Paths join with :func:`merge`.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from vramguard.lint._evidence import container_key, device_containers, used_as_memory


@dataclass(frozen=True)
class Open:
    """A cache call whose later drops are watched on this path."""

    call: int  # index into Scope.calls
    held: frozenset[str]  # names bound (and not known to be scalars) when the call ran
    offloaded: frozenset[str]  # targets moved to the CPU before the call
    changed: frozenset[str] = frozenset()  # targets rebound or dropped since the call


@dataclass(frozen=True)
class Drop:
    """A drop after a cache call; ``healable`` while only release steps followed it."""

    call: int
    line: int
    col: int
    target: str
    text: str
    healable: bool = True


@dataclass
class State:
    kinds: dict[str, str] = field(default_factory=dict)  # local -> "device" | "scalar" | "other"
    offloaded: frozenset[str] = frozenset()
    opens: frozenset[Open] = frozenset()
    drops: frozenset[Drop] = frozenset()
    dropped_in_iteration: bool = False
    after_failure: bool = False  # reached only through an except block of a try whose body leaves the loop

    def copy(self) -> State:
        return replace(self, kinds=dict(self.kinds))


def merge(*states: State | None) -> State | None:
    """The state after paths join: what holds on all of them, watched calls and drops of any."""
    alive = [s for s in states if s is not None]
    if not alive:
        return None
    if len(alive) == 1:
        return alive[0].copy()
    kinds: dict[str, str] = {}
    for name in set().union(*(s.kinds for s in alive)):
        seen = {s.kinds.get(name) for s in alive}
        kinds[name] = seen.pop() if len(seen) == 1 else "other"  # type: ignore[assignment]
    opens: dict[int, Open] = {}
    for s in alive:
        for o in s.opens:
            had = opens.get(o.call)
            opens[o.call] = o if had is None else Open(o.call, had.held & o.held, had.offloaded & o.offloaded,
                                                       had.changed | o.changed)  # fmt: skip
    return State(
        kinds=kinds,
        offloaded=frozenset.intersection(*(s.offloaded for s in alive)),
        opens=frozenset(opens.values()),
        drops=frozenset().union(*(s.drops for s in alive)),
        dropped_in_iteration=all(s.dropped_in_iteration for s in alive),
        after_failure=all(s.after_failure for s in alive),
    )


@dataclass
class Loop:
    breaks: list[State] = field(default_factory=list)
    continues: list[State] = field(default_factory=list)


@dataclass(frozen=True)
class Context:
    in_except: bool = False
    every_iteration: bool = False  # unconditionally inside a loop body
    loop: Loop | None = None
    loop_targets: frozenset[str] = frozenset()  # a call given one of these empties one device per item
    loop_names: frozenset[str] = frozenset()  # names the enclosing loops use or bind on every iteration
    release_loop: bool = False  # `for _ in range(3): empty_cache(); gc.collect()`: a repeat, no work between


@dataclass
class Scope:
    """What the walk of one scope found, for the rules to turn into findings."""

    is_function: bool
    scalar_attrs: frozenset[str]
    nonlocal_names: set[str] = field(default_factory=set)
    calls: list[tuple[ast.Call, str]] = field(default_factory=list)  # every cache call and its source text
    drops: set[Drop] = field(default_factory=set)  # drops that reach the end of a path unhealed
    in_except: list[int] = field(default_factory=list)  # VG003
    every_iteration: list[int] = field(default_factory=list)  # VG005
    alive_locals: dict[str, list[int]] = field(default_factory=dict)  # VG004: local -> calls it outlives
    releasing: list[int] = field(default_factory=list)  # VG002
    later_names: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> its last position
    escaped: frozenset[str] = frozenset()  # locals stored on an object or in a container: del frees nothing
    parts: dict[str, frozenset[str]] = field(default_factory=dict)  # local -> locals bound to its attributes
    lines: Callable[[int], int] | None = None  # a snippet's line -> the file's line
    source_lines: tuple[str, ...] = ()  # to turn ast's UTF-8 byte offsets into character columns
    vararg: str | None = None
    single_statement: bool = False  # the body is one statement (after a docstring)
    body: list[ast.stmt] = field(default_factory=list)
    module: ast.Module | None = None
    _used_as_memory: frozenset[str] | None = None
    _device_containers: frozenset[str] | None = None

    def used_as_memory(self, name: str) -> bool:
        """Whether the scope uses ``name`` as a model or tensor (read once, on first need)."""
        if self._used_as_memory is None:
            self._used_as_memory = used_as_memory(self.body)
        return name in self._used_as_memory

    def holds_device_items(self, container: ast.expr) -> bool:
        """Whether the code puts tensors or models in this container: a local in this scope, an attribute anywhere."""
        key = container_key(container)
        if key is None:
            return False
        if self._device_containers is None:
            self._device_containers = device_containers(self.body) | frozenset(
                k for k in device_containers([self.module] if self.module else []) if k.startswith(".")
            )
        return key in self._device_containers

    def file_line(self, line: int) -> int:
        """The file's line for a line of the source walked."""
        return line if self.lines is None else self.lines(line)
