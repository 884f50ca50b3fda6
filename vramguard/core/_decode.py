"""Reading records back from JSON: each key checked for presence and type, with its path named.

A report file is user input (hand-edited, truncated, written by another version): a bad key gives a
:class:`ReportFormatError` naming the key's path and what is accepted, never a ``KeyError`` or a
``TypeError`` from deep inside, and never a record holding a value its type does not allow.
"""

from __future__ import annotations

import math
from typing import Any, Final

from vramguard.core._errors import ReportFormatError

MAX_INT: Final = 2**63 - 1
"""The largest magnitude a byte or count figure may have: what the allocator's int64 can hold
(and below the 2**1024 a float conversion would overflow at)."""

_INT = f"an int from {-MAX_INT} to {MAX_INT}"
_MISSING: Final = object()


class Fields:
    """The keys of one JSON object of a report, read with checks; ``where`` is its path."""

    def __init__(self, data: object, where: str = "") -> None:
        if not isinstance(data, dict):
            raise ReportFormatError(where or "(top level)", data, "a JSON object")
        self.data: dict[str, Any] = data
        self.where = where

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def _get(self, key: str, default: object) -> object:
        value = self.data.get(key, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                raise ReportFormatError(self.path(key), None, "a value (the key is required)", missing=True)
            return default
        return value

    def integer(self, key: str, default: object = _MISSING, *, nullable: bool = False) -> Any:
        """An int of at most :data:`MAX_INT` in magnitude (``None`` too when ``nullable``)."""
        return check_int(self._get(key, default), self.path(key), nullable=nullable)

    def number(self, key: str, default: object = _MISSING) -> float:
        """A finite number, as a float."""
        return check_float(self._get(key, default), self.path(key))

    def string(self, key: str, default: object = _MISSING, *, nullable: bool = False) -> Any:
        value = self._get(key, default)
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            raise ReportFormatError(self.path(key), value, "a string" + (" or null" if nullable else ""))
        return value

    def flag(self, key: str, default: object = _MISSING) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise ReportFormatError(self.path(key), value, "true or false")
        return value

    def array(self, key: str, default: object = _MISSING) -> list[Any]:
        value = self._get(key, default)
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ReportFormatError(self.path(key), value, "a JSON array")
        return value

    def strings(self, key: str, default: object = _MISSING) -> tuple[str, ...]:
        """A JSON array of strings, as a tuple."""
        items = self.array(key, default)
        for index, item in enumerate(items):
            if not isinstance(item, str):
                raise ReportFormatError(f"{self.path(key)}[{index}]", item, "a string")
        return tuple(items)

    def objects(self, key: str, default: object = _MISSING) -> list[Fields]:
        """A JSON array of objects, each as :class:`Fields`."""
        return [Fields(item, f"{self.path(key)}[{i}]") for i, item in enumerate(self.array(key, default))]

    def child(self, key: str) -> Fields:
        return Fields(self._get(key, _MISSING), self.path(key))


def check_int(value: object, where: str, *, nullable: bool = False) -> Any:
    """``value`` if it is an int (not a bool) of at most :data:`MAX_INT` in magnitude."""
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_INT:
        raise ReportFormatError(where, value, _INT + (" or null" if nullable else ""))
    return value


def check_float(value: object, where: str) -> float:
    """``value`` as a float if it is a finite number of at most :data:`MAX_INT` in magnitude."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ReportFormatError(where, value, "a finite number")
    if isinstance(value, int) and abs(value) > MAX_INT:
        raise ReportFormatError(where, value, "a finite number")
    number = float(value)
    if not math.isfinite(number) or abs(number) > MAX_INT:
        raise ReportFormatError(where, value, "a finite number")
    return number
