"""The holder walk: level by level up the referrers :class:`~._holders.HolderSearch` indexes and
scans, from every leak at once, to the roots; then each leak's paths, group and owner rendered.

Each level, the largest leaks' nodes are scanned first, one batched heap scan for all of them;
what does not fit in a level's scan (4×``width`` nodes) is cut at the width bound, the same on
any machine. A walk stops for a leak at :data:`MAX_HOLDERS` roots, or :data:`EXTRA_LEVELS`
levels past its first root (a shorter path through a user's name may follow).
"""

from __future__ import annotations

import sys
import types

import torch

from vramguard.census._frames import is_library
from vramguard.census._holders import Holders, HolderSearch
from vramguard.census._owners import (
    GRAPH,
    holds_directly,
    is_element,
    is_indexed,
    is_module,
    owner_label,
    path_rank,
    via_compile,
)
from vramguard.census._render import Edge, render_path
from vramguard.census._scan import is_a

MAX_HOLDERS = 3
EXTRA_LEVELS = 2


def walk(search: HolderSearch) -> list[Holders]:
    """What ``search`` found for each of its groups, in the order they were added."""
    return _Walk(search).run()


class _Walk:
    def __init__(self, search: HolderSearch) -> None:
        self.search = search

    def run(self) -> list[Holders]:
        """Walk every group and render what it found.

        Every leaked tensor's own referrers are read, whatever the bounds: its direct holder is
        never cut. Beyond that, the first ``bounds.leaks`` groups (the largest, as added) scan
        the heap; the others ride on what those scans found: a list of 10,000 losses costs the
        walks of the largest few, and every loss is named through the list."""
        bounds = self.search.bounds
        groups = range(len(self.search.groups))
        searching = min(len(self.search.groups), bounds.leaks)
        start: Edge = ("", "")
        came = [{i: (-1, start) for i in self.search.groups[g]} for g in groups]
        frontier = [list(self.search.groups[g]) for g in groups]
        # A root is (root, child, edge), not a node of ``came``: one root (a module's globals, a
        # frame) reached through two children is two holders (``global m.MODEL`` and ``global m.OUT``).
        roots: list[list[tuple[int, int, Edge]]] = [[] for _ in groups]
        first_root: list[int | None] = [None for _ in groups]
        revisits = [False for _ in groups]
        cut: list[tuple[str, int] | None] = [None for _ in groups]
        active = set(groups)
        per_level = 4 * bounds.width
        self.search.scan([n for g in groups for n in frontier[g] if self.search.needs_scan(n)])
        for level in range(bounds.levels):
            if not active:
                break
            if self.search.want_modules:
                self.search.index_modules()
            # The largest leaks first (groups are added largest first), each walking group's
            # first node before anyone's second: what does not fit in this level's scan is cut
            # at the width bound, the same on any machine.
            wanted: dict[int, None] = {}
            walking = sorted(g for g in active if g < searching)
            for g in walking:
                first = next((n for n in frontier[g] if self.search.needs_scan(n)), None)
                if first is not None:
                    wanted[first] = None
            for g in walking:
                for n in frontier[g]:
                    if len(wanted) >= per_level:
                        break
                    if self.search.needs_scan(n):
                        wanted[n] = None
            self.search.scan(list(wanted))
            if not wanted and all(g >= searching for g in active) and level > 0:
                break  # only riders left, waiting for scans no one will make
            for g in sorted(active):
                following: list[int] = []
                for node in frontier[g]:
                    if self.search.needs_scan(node):
                        if g >= searching:
                            following.append(node)  # a rider waits for a walking group's scan
                        elif cut[g] is None:
                            cut[g] = ("width", node)
                        continue
                    for parent, kind, label in self.search.parents(node):
                        if kind == "local" or parent in self.search.foreign or self.search.is_root(parent):
                            if all(r != parent or c != node for r, c, _ in roots[g]):
                                roots[g].append((parent, node, (kind, label)))
                            if first_root[g] is None:
                                first_root[g] = level
                            continue
                        if parent in came[g]:
                            revisits[g] = True
                            continue
                        came[g][parent] = (node, (kind, label))
                        if len(following) < bounds.width:
                            following.append(parent)
                        elif cut[g] is None:
                            cut[g] = ("width", node)
                frontier[g] = following
                found = first_root[g]
                enough = len(roots[g]) >= MAX_HOLDERS or (found is not None and level - found >= EXTRA_LEVELS)
                if enough or not following:
                    active.discard(g)
        for g in active:
            if frontier[g] and cut[g] is None:
                cut[g] = ("levels" if g < searching else "leaks", frontier[g][0])
        return [self._result(g, came[g], roots[g], cut[g], revisits[g]) for g in groups]

    def _chain(self, came: dict[int, tuple[int, Edge]], root: tuple[int, int, Edge]) -> tuple[list[int], list[Edge]]:
        chain, edges = [root[0], root[1]], [root[2]]
        node = root[1]
        while True:
            child, edge = came[node]
            if child < 0:
                break
            edges.append(edge)
            chain.append(child)
            node = child
        return chain, edges

    def _render(self, chain: list[int], edges: list[Edge]) -> str:
        search = self.search
        return render_path(
            [search.objs[i] for i in chain], edges, search.module_names, search.parameter_name, search.positions
        )

    def _group_of(self, chain: list[int], edges: list[Edge]) -> tuple[str, str | None] | None:
        """The holder path of the object that owns the tensor, and what it is when it is a named
        owner (see :mod:`._owners`)."""
        objs = [self.search.objs[i] for i in chain]
        last = len(chain) - 1
        for i in range(1, last):
            obj, before = objs[i], objs[i - 1]
            label = owner_label(obj)
            if is_module(obj) or label is not None or (is_indexed(obj, before) and is_element(objs[i + 1])):
                return self._render(chain[: i + 1], edges[:i]), label
            if issubclass(type(obj), torch.Tensor) and edges[i][0] == "saved":
                return self._render(chain[: i + 1], edges[:i]), GRAPH
        if last >= 1 and edges[-1][0] == "saved":
            return None
        tensor = objs[-1]
        if last >= 1 and _has_graph(tensor) and self._saves_leaks(chain[-1]):
            return self._render(chain, edges), GRAPH
        if last >= 2 and edges[-1][0] == "scan" and holds_directly(objs[-2], objs[-3]):
            return self._render(chain[:-1], edges[:-1]), None
        return None

    def _saves_leaks(self, index: int) -> bool:
        """True when the walk knows a leaked tensor that this output's graph saved."""
        return index in self.search.saving

    def _result(
        self,
        group: int,
        came: dict[int, tuple[int, Edge]],
        roots: list[tuple[int, int, Edge]],
        cut: tuple[str, int] | None,
        revisit: bool,
    ) -> Holders:
        if any(id(self.search.objs[r]) == self.search.kept_id for r, _, _ in roots):
            return Holders((), kept=True)
        if roots and all(r in self.search.foreign for r, _, _ in roots):
            return Holders((), rooted=True, foreign=True)
        found: list[tuple[tuple[int, int], str, tuple[str, str | None] | None]] = []
        for root in roots:
            chain, edges = self._chain(came, root)
            text = self._render(chain, edges)
            if via_compile(text):
                text += " (via torch.compile)"
            if all(text != t for _, t, _ in found):
                found.append((path_rank(text, self._library_root(chain[0])), text, self._group_of(chain, edges)))
        if found:
            found.sort(key=lambda item: item[0])  # the user's names first; globals, classes, locals, graphs
            paths = tuple(text for _, text, _ in found)
            owner, kind = found[0][2] or (None, None)
            return Holders(paths, group=owner, owner_kind=kind, rooted=True)
        starts = set(self.search.groups[group])
        seen = [self.search.objs[i] for i in came if i not in starts]
        names = ", ".join(dict.fromkeys(type(o).__qualname__ for o in seen))
        if cut is not None:
            return Holders((self._cut_message(cut, names),))
        if not seen and self.search.graph_cut:
            what = type(self.search.objs[self.search.groups[group][0]]).__qualname__
            return Holders(
                (
                    f"not searched: {self.search.bounds.describe('graph')} ran out before the graphs that may save "
                    f"this {what} (no Python object refers to it)",
                )
            )
        if not seen:
            return Holders(("no Python referrer: held from native code",))
        note = "a reference cycle" if revisit else "objects"
        return Holders((f"unreachable from any global or live frame: {note} through {names} (gc.collect() frees it)",))

    def _cut_message(self, cut: tuple[str, int], names: str) -> str:
        """Which bound stopped the walk, whose referrers it cut, and how to raise it."""
        bound, node = cut
        what = type(self.search.objs[node]).__qualname__
        through = f" (reached through {names})" if names else ""
        if bound == "leaks":
            return (
                f"not searched: the leaks bound ({self.search.bounds.leaks} leaks, the largest, are walked; raise it "
                f"with gpu_session(holder_leaks=...)) cut the referrers of a {what}{through}"
            )
        stopped = f"holder search stopped at {self.search.bounds.describe(bound)}"
        return f"{stopped}: the referrers of a {what}{through} were cut"

    def _library_root(self, index: int) -> bool:
        """The root is a library's: an installed package's module globals, a frame of its code."""
        root = self.search.objs[index]
        if is_a(root, types.FrameType):
            return is_library(root.f_code.co_filename)
        name = self.search.module_names.get(id(root))
        module = sys.modules.get(name) if name is not None else None
        filename = getattr(module, "__file__", None)
        return is_a(filename, str) and name != "__main__" and is_library(filename)



def _has_graph(tensor: object) -> bool:
    try:
        return getattr(tensor, "grad_fn", None) is not None
    except Exception:
        return False
