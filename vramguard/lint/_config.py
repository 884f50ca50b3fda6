"""``[tool.vramguard.check]`` in ``pyproject.toml``: the defaults the command line overrides."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vramguard.core._errors import InvalidArgument, MissingDependency
from vramguard.lint._rules import RULES

OUTPUT_FORMATS = ("text", "json", "sarif", "github")
_KEYS = ("select", "ignore", "exclude", "extend-exclude", "output-format", "respect-gitignore")


@dataclass(frozen=True)
class CheckConfig:
    """What to check and how to show it; ``source`` is the pyproject.toml read, if any."""

    select: tuple[str, ...] = tuple(RULES)
    ignore: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    output_format: str = "text"
    respect_gitignore: bool = True
    source: Path | None = field(default=None, compare=False)

    @property
    def codes(self) -> frozenset[str]:
        """The rules that run: the selected ones minus the ignored ones."""
        return frozenset(self.select) - frozenset(self.ignore)


def rule_codes(argument: str, values: Any) -> tuple[str, ...]:
    """Rule codes from a list or a comma-separated string; a prefix (``VG``, ``VG00``) selects every match."""
    items = values.split(",") if isinstance(values, str) else values
    if not isinstance(items, (list, tuple)):
        raise InvalidArgument(argument, values, "a list of rule codes such as ['VG001', 'VG003']")
    codes: list[str] = []
    for item in items:
        code = str(item).strip().upper()
        if code in {"ALL", ""}:
            codes += list(RULES) if code else []
            continue
        matched = [c for c in RULES if c.startswith(code)]
        if not matched:
            raise InvalidArgument(argument, item, ["ALL", *RULES])
        codes += matched
    return tuple(dict.fromkeys(codes))


def find_pyproject(start: Path) -> Path | None:
    """The nearest ``pyproject.toml`` in ``start`` or a folder above it."""
    for folder in (start.absolute(), *start.absolute().parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def _toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib
        except ImportError as error:
            raise MissingDependency("tomli", None, "reading [tool.vramguard.check]") from error
    with path.open("rb") as file:
        data: dict[str, Any] = tomllib.load(file)
    return data


def _strings(argument: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(argument, value, "a list of strings")
    return tuple(value)


def load_config(pyproject: Path | None) -> CheckConfig:
    """The configuration in a ``pyproject.toml`` (defaults when it has no ``[tool.vramguard.check]``)."""
    if pyproject is None:
        return CheckConfig()
    table = _toml(pyproject).get("tool", {}).get("vramguard", {}).get("check", {})
    config = CheckConfig(source=pyproject)
    for key, value in table.items():
        argument = f"[tool.vramguard.check] {key}"
        if key not in _KEYS:
            raise InvalidArgument(argument, value, _KEYS)
        if key == "select":
            config = replace(config, select=rule_codes(argument, value))
        elif key == "ignore":
            config = replace(config, ignore=rule_codes(argument, value))
        elif key in {"exclude", "extend-exclude"}:
            config = replace(config, exclude=config.exclude + _strings(argument, value))
        elif key == "output-format":
            if value not in OUTPUT_FORMATS:
                raise InvalidArgument(argument, value, OUTPUT_FORMATS)
            config = replace(config, output_format=value)
        else:
            if not isinstance(value, bool):
                raise InvalidArgument(argument, value, "true or false")
            config = replace(config, respect_gitignore=value)
    return config
