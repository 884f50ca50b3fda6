"""No import circle between vramguard's modules, lazy or not.

Every ``import`` and ``from ... import`` in every module counts, those inside functions too (a lazy
import hides a circle from Python, not from a reader); only ``if TYPE_CHECKING:`` blocks are left
out, since they never run. ``from package import name`` is an edge to the submodule ``name`` when
there is one, else to the module the package's lazy ``_LAZY`` map loads ``name`` from, else to the
package itself.
"""

from __future__ import annotations

import itertools

from import_walk import imports

Edge = tuple[str, str]

PENDING: frozenset[Edge] = frozenset()
"""Edges (importer, imported) of circles still being broken (issue 27). The lead empties this set;
nothing may be added to it: a new circle is broken, not listed."""


def edges() -> dict[Edge, list[int]]:
    """Every (importer, imported) pair that runs, with the importing lines."""
    return imports(type_checking=False, lazy=True)


def _shortest_path(graph: dict[str, set[str]], start: str, goal: str) -> list[str] | None:
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for module in frontier:
            for target in sorted(graph.get(module, ())):
                if target == goal:
                    return paths[module] + [goal]
                if target not in paths:
                    paths[target] = paths[module] + [target]
                    following.append(target)
        frontier = following
    return None


def cycles(found: dict[Edge, list[int]]) -> list[list[str]]:
    """One shortest circle through each edge that lies on a circle, each circle once."""
    graph: dict[str, set[str]] = {}
    for a, b in found:
        graph.setdefault(a, set()).add(b)
    seen: set[frozenset[str]] = set()
    out: list[list[str]] = []
    for a, b in sorted(found):
        back = _shortest_path(graph, b, a)
        if back is not None:
            circle = [a, *back]
            key = frozenset(itertools.pairwise(circle))
            if key not in seen:
                seen.add(key)
                out.append(circle)
    return out


def _describe(circle: list[str], found: dict[Edge, list[int]]) -> str:
    steps = [f"{a} --{','.join(map(str, found[(a, b)]))}--> {b}" for a, b in itertools.pairwise(circle)]
    return "\n    ".join(steps)


def test_the_walk_sees_lazy_relative_and_submodule_imports() -> None:
    # Checks the walker on known imports, so an empty result below means no circle, not a blind walk.
    found = edges()
    assert ("vramguard.report.plot", "vramguard.core._records") in found  # module level
    assert ("vramguard.report.json", "vramguard.core._records") in found
    assert ("vramguard.cli.report", "vramguard.report.merge") in found  # function level
    assert ("vramguard.report.text", "vramguard.report._words") in found
    # `from vramguard.report import render`: the package's lazy map says text.py
    assert ("vramguard.integrations.notebook", "vramguard.report.text") in found
    # TYPE_CHECKING-only imports are not edges
    assert ("vramguard.core._hooks", "vramguard.core._records") not in found


def test_no_import_circle_between_modules() -> None:
    found = {edge: lines for edge, lines in edges().items() if edge not in PENDING}
    circles = cycles(found)
    assert circles == [], "import circles:\n  " + "\n  ".join(_describe(c, found) for c in circles)


def test_every_pending_edge_is_still_an_import() -> None:
    # An edge fixed elsewhere leaves PENDING at once, so the set only shrinks.
    assert sorted(PENDING - set(edges())) == []
