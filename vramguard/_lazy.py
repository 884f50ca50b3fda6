"""Names of a package loaded on first use (PEP 562), shared by every package ``__init__``.

A package whose ``__init__`` imports its own submodules can deadlock against a thread that
imports one of them directly (Python locks a submodule before its parent package), so no
vramguard ``__init__`` imports a submodule at import time. Each writes its public names once, in
a map ``_LAZY = {name: module that defines it}``, and hands it to :func:`attach`, which returns
the package's ``__getattr__``, ``__dir__`` and ``__all__``. Type checkers and IDEs cannot read a
map: each ``__init__`` also shows them the same names in an ``if TYPE_CHECKING:`` block,
generated from the map (tests/project/test_exported_members.py prints it and fails when the two
differ). This module imports nothing of vramguard's.
"""

from __future__ import annotations

import importlib
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence


def publish(package: str, value: object) -> object:
    """``value`` with ``package`` as its ``__module__`` when it is a class or function defined in a
    private module below it (as httpx does): reprs, ``help()``, tracebacks, pickles and the API docs
    then name the path users import, ``vramguard.SessionReport``, not ``vramguard.core._records``.
    Anything else (a constant, another library's object) is returned untouched."""
    if isinstance(value, (type, types.FunctionType)) and value.__module__.startswith(package + "."):
        # typing (3.11+) keeps a function's @overload variants under its module: they move with it,
        # or typing.get_overloads (and the tools reading it) would find none under the new name
        variants: Sequence[Callable[..., object]] = ()
        if sys.version_info >= (3, 11) and isinstance(value, types.FunctionType):
            variants = typing.get_overloads(value)
        value.__module__ = package
        for variant in variants:
            variant.__module__ = package
            typing.overload(variant)
    return value


def attach(
    package: str, names: Mapping[str, str], *, own: Sequence[str] = ()
) -> tuple[Callable[[str], object], Callable[[], list[str]], list[str]]:
    """The ``__getattr__``, ``__dir__`` and ``__all__`` of ``package``: each name in ``names`` is
    imported from its module on first use and then kept in the package's namespace; ``__all__``
    is those names and ``own`` (names the ``__init__`` defines itself, such as ``__version__``),
    and ``dir()`` shows exactly them."""
    namespace = vars(sys.modules[package])
    exported = sorted({*names, *own})

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
        return list(exported)

    return __getattr__, __dir__, list(exported)
