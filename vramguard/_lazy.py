"""Names of a package loaded on first use (PEP 562), shared by every package ``__init__``.

A package whose ``__init__`` imports its own submodules can deadlock against a thread that
imports one of them directly (Python locks a submodule before its parent package), so no
vramguard ``__init__`` imports a submodule at import time: each maps its public names to the
modules that define them and hands the map to :func:`attach`. This module imports nothing of
vramguard's.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping


def attach(package: str, names: Mapping[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``: each name in ``names`` is imported from
    its module on first use and then kept in the package's namespace."""
    namespace = vars(sys.modules[package])

    def __getattr__(name: str) -> object:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *names})

    return __getattr__, __dir__
