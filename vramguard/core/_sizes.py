"""Byte sizes and durations: parse "512 MiB", "6GiB", "1.5 GB" and print them back for people;
parse "500 ms", "2 min" (the one reader of a time the library and the CLI share)."""

from __future__ import annotations

import math
import numbers
import re
from fractions import Fraction

from vramguard.core._errors import InvalidArgument

_UNITS: dict[str, int] = {
    "b": 1,
    "byte": 1,
    "bytes": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "pb": 10**15,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
    "pib": 2**50,
}
ACCEPTED_UNITS = "B, KB, MB, GB, TB, PB (powers of 1000), KiB, MiB, GiB, TiB, PiB (powers of 1024)"
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)(?:[eE]\+?(\d{1,2}))?\s*([a-zA-Z]*)\s*$")
_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
MAX_SIZE_BYTES = 2**100
"""The largest size :func:`parse_size` accepts: far above any memory (2**63 bytes is 8 EiB), and
small enough that every figure derived from it still converts to a float for printing."""
_MAX_DIGITS = 40
"""A number in a size string has at most this many characters: far above 8 EiB in bytes, and far
below Python's 4,300-digit limit on int conversion (which raised a ValueError naming nothing)."""

SizeLike = int | str


def parse_size(value: SizeLike, *, argument: str = "size") -> int:
    """Return ``value`` in bytes: a non-negative int, or a number with a unit.

    Units are case-insensitive, the space before them optional; a bare number is bytes.
    Fractions round to the nearest byte ("1.5 KiB" is 1536).
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidArgument(argument, value, f"a non-negative int or a string with a unit: {ACCEPTED_UNITS}")
    if isinstance(value, int):
        if not 0 <= value <= MAX_SIZE_BYTES:
            accepted = f"an int from 0 to 2**100, or a string with a unit: {ACCEPTED_UNITS}"
            raise InvalidArgument(argument, value, accepted)
        return value
    if len(value) > 100:
        raise InvalidArgument(argument, value[:40] + "...", f"a short string: a number and a unit ({ACCEPTED_UNITS})")
    match = _PATTERN.match(value)
    unit = match.group(3).lower() if match else ""
    if match is None or unit not in ("", *_UNITS):
        raise InvalidArgument(argument, value, f"a non-negative number with a unit: {ACCEPTED_UNITS}")
    # Exact arithmetic: floats lose bytes above 2**53 ("4611686019 GB").
    if len(match.group(1)) > _MAX_DIGITS:
        accepted = f"a number of at most {_MAX_DIGITS} digits with a unit: {ACCEPTED_UNITS}"
        raise InvalidArgument(argument, value, accepted)
    number = Fraction(match.group(1)) * (10 ** int(match.group(2)) if match.group(2) else 1)
    nbytes = round(number * _UNITS.get(unit, 1))
    if nbytes > MAX_SIZE_BYTES:
        raise InvalidArgument(argument, value, f"a size of at most 2**100 bytes; units: {ACCEPTED_UNITS}")
    return nbytes


_DURATION_UNITS = {"ms": 1e-3, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|sec|min|m|h)?\s*$")
MAX_DURATION_S = 86_400.0
"""The longest duration :func:`parse_duration` accepts: a day."""


def parse_duration(value: object, *, argument: str) -> float:
    """Seconds from a number or a string such as ``"30 s"``, ``"500 ms"``, ``"2 min"``, ``"1 h"``."""
    seconds: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and len(value) <= 64 and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]
    if seconds is None or not math.isfinite(seconds) or not 0 < seconds <= MAX_DURATION_S:
        accepted = 'seconds in (0, 86400]: a number, or a string like "30 s", "500 ms", "2 min", "1 h"'
        raise InvalidArgument(argument, value, accepted)
    return seconds


def format_size(nbytes: int | float | None, *, signed: bool = False) -> str:
    """Format bytes for people, in binary units: 512 B, 64.0 MiB, 1.50 GiB.

    ``None`` prints "n/a" (a value that could not be read); ``signed`` adds "+" to positive values.
    """
    if nbytes is None:
        return "n/a"
    if type(nbytes) is int and type(signed) is bool and -_FAST_BELOW < nbytes < _FAST_BELOW:
        return _format_int(nbytes, signed)  # the common case, without the ABC checks below (1 µs)
    if isinstance(nbytes, bool) or not isinstance(nbytes, numbers.Real):
        raise InvalidArgument("nbytes", nbytes, "an int or a float number of bytes, or None")
    if not isinstance(nbytes, numbers.Integral) and not math.isfinite(nbytes):
        raise InvalidArgument("nbytes", nbytes, "a finite number of bytes (not nan or inf), or None")
    if not isinstance(signed, bool):
        raise InvalidArgument("signed", signed, "True or False")
    try:
        size = float(abs(nbytes))
    except OverflowError:
        raise InvalidArgument("nbytes", nbytes, "a number of bytes a float can hold (below 2**1024), or None") from None
    sign = "-" if nbytes < 0 else ("+" if signed and nbytes > 0 else "")
    index = 0
    while size >= 1024 and index < len(_BINARY) - 1:
        size /= 1024
        index += 1
    if index == 0:
        return f"{sign}{int(size)} B"
    digits = 2 if size < 10 else 1
    return f"{sign}{size:.{digits}f} {_BINARY[index]}"


_FAST_BELOW = 1 << 60


def _format_int(nbytes: int, signed: bool) -> str:
    """:func:`format_size` of an int under 2**60 in magnitude (the same text)."""
    sign = "-" if nbytes < 0 else ("+" if signed and nbytes > 0 else "")
    size = abs(nbytes)
    if size < 1024:
        return f"{sign}{size} B"
    index = (size.bit_length() - 1) // 10  # the loop's unit: size in [1024**index, 1024**(index + 1))
    scaled = float(size) / (1 << (10 * index))  # dividing by 1024 index times is exact: the same float
    digits = 2 if scaled < 10 else 1
    return f"{sign}{scaled:.{digits}f} {_BINARY[index]}"
