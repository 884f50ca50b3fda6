"""The pieces every rich table of vramguard's is made of: the check that rich is installed, a cell
of user text and a line of styled pieces. rich is imported only when one is made."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from vramguard.core._errors import MissingDependency

if TYPE_CHECKING:
    from rich.text import Text

Piece = str | tuple[str, str]


def require_rich(feature: str = "vramguard's tables") -> None:
    """Raise :class:`MissingDependency` naming the ``cli`` extra when rich is not installed."""
    if importlib.util.find_spec("rich") is None:
        raise MissingDependency("rich", "cli", feature)


def plain(text: str) -> Text:
    """A table cell of user-supplied text (names, holders, notes): rich reads none of it as markup.

    A Text, not ``rich.markup.escape``: that escape loses a backslash before a bracket (``\\[`` prints
    as ``[``) and doubles a trailing one."""
    from rich.text import Text

    return Text(text)


def line(*pieces: Piece, style: str = "") -> Text:
    """A line of plain pieces and ``(text, style)`` pairs: no piece is read as markup."""
    from rich.text import Text

    return Text.assemble(*pieces, style=style)
