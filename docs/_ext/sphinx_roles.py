"""A Griffe extension for the docs build: the docstrings' Sphinx roles (``:func:`vramguard.park```,
``:meth:`to_dict```) become cross-references mkdocstrings renders as links.

The docstrings stay in the Sphinx form that ``help()`` and editors show; only the site rewrites them.
A role whose target resolves becomes an optional autoref (a link where the target is on a page,
plain code where it is not, so a reference to a private helper never fails the strict build); one
that does not resolve becomes plain code.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|mod|exc|data|obj|const):`(?P<tilde>~?)(?P<target>[^`]+)`")


def _lookup(root: griffe.Module, path: str) -> griffe.Object | griffe.Alias | None:
    if path == root.path:
        return root
    if not path.startswith(root.path + "."):
        return None
    try:
        found: griffe.Object | griffe.Alias = root[path[len(root.path) + 1 :]]
    except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None
    return found


def _candidates(obj: griffe.Object, target: str) -> list[str]:
    if target.startswith("."):
        # relative to the package holding the docstring's module (``._walk`` beside ``_holders``)
        module = obj.module
        package = module.path if module.is_package else module.path.rpartition(".")[0]
        return [package + target]
    scopes: list[str] = []
    scope: griffe.Object | None = obj
    while scope is not None:
        scopes.append(scope.path)
        scope = scope.parent
    return [target, *(f"{s}.{target}" for s in scopes)]


def _public(root: griffe.Module, path: str) -> str:
    """``vramguard.X...`` where the package exports ``X`` for the object at ``path`` (the page shows
    the public names)."""
    head, _, rest = path.partition(root.path + ".")
    if head or not rest:
        return path
    parts = rest.split(".")
    for i in range(len(parts), 0, -1):
        canonical = ".".join([root.path, *parts[:i]])
        member = root.members.get(parts[i - 1])
        if member is not None and canonical != member.path:
            try:
                if member.canonical_path == _lookup(root, canonical).canonical_path:  # type: ignore[union-attr]
                    return ".".join([member.path, *parts[i:]])
            except (griffe.AliasResolutionError, griffe.CyclicAliasError, AttributeError):
                continue
    return path


def rewrite(root: griffe.Module, obj: griffe.Object, text: str) -> str:
    def link(match: re.Match[str]) -> str:
        target = match["target"].removesuffix("()")
        shown = target.rpartition(".")[2] if match["tilde"] else target.lstrip(".")
        code = f"<code>{html.escape(shown)}</code>"
        for path in _candidates(obj, target):
            if _lookup(root, path) is not None:
                return f'<autoref identifier="{_public(root, path)}" optional>{code}</autoref>'
        return code

    return ROLE.sub(link, text)


class SphinxRoles(griffe.Extension):
    """Rewrites every docstring of the loaded package once it is fully loaded, so that targets in
    other modules resolve."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = rewrite(pkg, obj, obj.docstring.value)


def _walk(obj: griffe.Object) -> list[griffe.Object]:
    found = [obj]
    for member in obj.members.values():
        if not member.is_alias:
            found.extend(_walk(member))  # type: ignore[arg-type]
    return found
