"""Every option that takes a time takes it in the same forms: bare seconds (``0.01``, ``2``) or
with a unit (``500ms``, ``1s``, ``2m``), read by the one parser the library has
(:func:`vramguard.core._sizes.parse_duration`); each option sets only its bounds."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from vramguard.core._errors import InvalidArgument
from vramguard.core._sizes import parse_duration

FORMS = "seconds, or with a unit: 500ms, 1s, 2m"


def _shown(seconds: float) -> str:
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"


def duration(what: str, low_s: float, high_s: float) -> Callable[[str], float]:
    """An argparse ``type``: the seconds in the text, from ``low_s`` to ``high_s``; anything else
    is argparse's exit 2 with one line naming the option and the forms."""

    def parse(text: str) -> float:
        try:
            seconds = parse_duration(text, argument=what)
        except InvalidArgument:
            seconds = None
        if seconds is None or not low_s <= seconds <= high_s:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {what} from {_shown(low_s)} to {_shown(high_s)} ({FORMS})"
            )
        return seconds

    parse.__name__ = what  # argparse names the type in some messages
    return parse
