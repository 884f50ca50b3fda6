"""Byte sizes: parse "512 MiB", "6GiB", "1.5 GB" and print them back for people."""

from __future__ import annotations

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

SizeLike = int | str


def parse_size(value: SizeLike, *, argument: str = "size") -> int:
    """Return ``value`` in bytes: a non-negative int, or a number with a unit.

    Units are case-insensitive, the space before them optional; a bare number is bytes.
    Fractions round to the nearest byte ("1.5 KiB" is 1536).
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidArgument(argument, value, f"a non-negative int or a string with a unit: {ACCEPTED_UNITS}")
    if isinstance(value, int):
        if value < 0:
            raise InvalidArgument(argument, value, f"a non-negative int or a string with a unit: {ACCEPTED_UNITS}")
        return value
    match = _PATTERN.match(value)
    unit = match.group(3).lower() if match else ""
    if match is None or unit not in ("", *_UNITS):
        raise InvalidArgument(argument, value, f"a non-negative number with a unit: {ACCEPTED_UNITS}")
    # Exact arithmetic: floats lose bytes above 2**53 ("4611686019 GB").
    number = Fraction(match.group(1)) * (10 ** int(match.group(2)) if match.group(2) else 1)
    return round(number * _UNITS.get(unit, 1))


def format_size(nbytes: int | float | None, *, signed: bool = False) -> str:
    """Format bytes for people, in binary units: 512 B, 64.0 MiB, 1.50 GiB.

    ``None`` prints "n/a" (a value that could not be read); ``signed`` adds "+" to positive values.
    """
    if nbytes is None:
        return "n/a"
    sign = "-" if nbytes < 0 else ("+" if signed and nbytes > 0 else "")
    size = float(abs(nbytes))
    index = 0
    while size >= 1024 and index < len(_BINARY) - 1:
        size /= 1024
        index += 1
    if index == 0:
        return f"{sign}{int(size)} B"
    digits = 2 if size < 10 else 1
    return f"{sign}{size:.{digits}f} {_BINARY[index]}"
