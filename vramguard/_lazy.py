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
import types
from collections.abc import Callable, Mapping


def publish(package: str, value: object) -> object:
    """``value`` with ``package`` as its ``__module__`` when it is a class or function defined in a
    private module below it (as httpx does): reprs, ``help()``, tracebacks, pickles and the API docs
    then name the path users import, ``vramguard.SessionReport``, not ``vramguard.core._records``.
    Anything else (a constant, another library's object) is returned untouched."""
    if isinstance(value, (type, types.FunctionType)) and value.__module__.startswith(package + "."):
        value.__module__ = package
    return value


def attach(package: str, names: Mapping[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``: each name in ``names`` is imported from
    its module on first use and then kept in the package's namespace."""
    namespace = vars(sys.modules[package])

    def __getattr__(name: str) -> object:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        # every name whose module is loaded by now, not only this one: an error raised inside
        # vramguard before the program touched ``vramguard.InvalidArgument`` names the public path too
        # (read from the modules' namespaces: a lazy subpackage's own names are not loaded here)
        namespace[name] = publish(package, value)
        for other, where in names.items():
            defined = vars(sys.modules[where]) if where in sys.modules else {}
            if other not in namespace and other in defined:
                namespace[other] = publish(package, defined[other])
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *names})

    return __getattr__, __dir__
