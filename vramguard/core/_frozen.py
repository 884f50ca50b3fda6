"""Frozen records built on a hot path without their dataclass's ``__init__``."""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any, TypeVar

_R = TypeVar("_R")
_KNOWN: dict[type, tuple[frozenset[str], bool]] = {}
"""Per record class :func:`build` made: the fields whose default is a factory, and whether the
class has a ``__post_init__``."""


def build(cls: type[_R], **values: Any) -> _R:
    """A frozen record of ``cls`` from ``values``, without the dataclass's ``__init__``: that
    sets each field through ``object.__setattr__`` (20 fields: a few µs), and a session per
    inference step builds its records at every step. A field not given reads its default from
    the class (a dataclass keeps each plain default as a class attribute), so only the given
    values are stored; a field whose default is a factory must be given. The record's
    ``__post_init__`` runs; the values are not checked otherwise (the fields' types are the
    caller's to keep; tests/core/test_records_build.py checks the uses against ``__init__``)."""
    known = _KNOWN.get(cls)
    if known is None:
        factories = frozenset(f.name for f in fields(cls) if f.default_factory is not MISSING)  # type: ignore[arg-type]
        known = _KNOWN[cls] = (factories, hasattr(cls, "__post_init__"))
    if known[0] and not known[0] <= values.keys():  # a factory's one value would be shared
        missing = ", ".join(sorted(known[0] - values.keys()))
        raise TypeError(f"build() needs {missing} for {cls.__name__}: their defaults are factories, not values")
    made = object.__new__(cls)
    made.__dict__.update(values)
    if known[1]:
        made.__post_init__()  # type: ignore[attr-defined]
    return made
