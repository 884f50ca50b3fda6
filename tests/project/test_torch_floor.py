"""The torch floor in pyproject.toml is the one docs/torch-versions.md argues for, and every private
torch name vramguard uses has its row on that page, so a new private call cannot land without one."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "torch-versions.md"
PRIVATE_MODULES = ("torch._C", "torch.accelerator", "torch.cuda.memory")
"""Modules whose every name used needs a row (``torch.cuda.memory``: its ``_`` names only)."""


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def pyproject_floor() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    line = re.search(r"^dependencies = \[(.*)\]$", text, flags=re.MULTILINE)
    assert line, "pyproject.toml has no one-line dependencies list"
    floor = re.search(r'"torch>=([\d.]+)"', line.group(1))
    assert floor, "the dependencies do not say torch>=X.Y"
    return floor.group(1)


def page_floor(page: str) -> str:
    floor = re.search(r"^\*\*Floor: `torch>=([\d.]+)`\*\*$", page, flags=re.MULTILINE)
    assert floor, "docs/torch-versions.md does not state **Floor: `torch>=X.Y`**"
    return floor.group(1)


def required_versions(page: str) -> list[tuple[str, str]]:
    """(API, first version) of each table row marked required."""
    rows = []
    for line in page.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[3].startswith("required"):
            rows.append((cells[0], cells[2]))
    return rows


def _dotted(node: ast.AST) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def _private(module: str, name: str) -> str | None:
    """The name to look up on the page, or None where ``module.name`` needs no row."""
    for prefix in PRIVATE_MODULES:
        if module == prefix:
            return None if prefix == "torch.cuda.memory" and not name.startswith("_") else f"{module}.{name}"
    return None


def private_names(source: str) -> tuple[set[str], list[int]]:
    """The private torch names ``source`` uses, and the lines where one of those modules is used
    under another name (bound, passed on, aliased), which the scan cannot follow."""
    tree = ast.parse(source)
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    found: set[str] = set()
    opaque: list[int] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if full in PRIVATE_MODULES:
                    opaque.append(node.lineno)
                elif (name := _private(node.module, alias.name)) is not None:
                    found.add(name)
        elif isinstance(node, ast.Import):
            opaque += [node.lineno for alias in node.names if alias.name in PRIVATE_MODULES and alias.asname]
        elif isinstance(node, ast.Attribute):
            dotted = _dotted(node)
            if dotted is None:
                continue
            module, _, name = dotted.rpartition(".")
            if (private := _private(module, name)) is not None:
                found.add(private)
            elif dotted in PRIVATE_MODULES and not isinstance(parents.get(node), ast.Attribute):
                call = parents.get(node)
                if (
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Name)
                    and call.func.id in {"getattr", "hasattr"}
                    and len(call.args) >= 2
                    and call.args[0] is node
                    and isinstance(call.args[1], ast.Constant)
                    and isinstance(call.args[1].value, str)
                ):
                    if (private := _private(dotted, call.args[1].value)) is not None:
                        found.add(private)
                else:
                    opaque.append(node.lineno)
    return found, opaque


def test_the_scan_finds_every_form_of_a_private_name() -> None:
    source = """
import torch
import torch._C as C
from torch._C import _host_emptyCache
from torch.cuda.memory import _snapshot, memory_stats
from torch.cuda import memory
torch._C._storage_Use_Count(1)
torch.accelerator.empty_host_cache()
torch.cuda.memory._record_memory_history(enabled=None)
torch.cuda.memory.memory_snapshot()
getattr(torch._C, "_cuda_clearCublasWorkspaces", None)
hasattr(torch.cuda.memory, "_set_allocator_settings")
binding = torch._C
"""
    found, opaque = private_names(source)
    assert found == {
        "torch._C._host_emptyCache",
        "torch.cuda.memory._snapshot",
        "torch._C._storage_Use_Count",
        "torch.accelerator.empty_host_cache",
        "torch.cuda.memory._record_memory_history",
        "torch._C._cuda_clearCublasWorkspaces",
        "torch.cuda.memory._set_allocator_settings",
    }
    assert opaque == [3, 6, 13]


def test_the_torch_floor_in_pyproject_is_the_one_the_page_states() -> None:
    page = PAGE.read_text()
    assert pyproject_floor() == page_floor(page)


def test_no_required_api_is_newer_than_the_floor_and_one_needs_it() -> None:
    page = PAGE.read_text()
    floor = _version(page_floor(page))
    rows = required_versions(page)
    assert len(rows) > 10, "the table lost its required rows"
    versions = {}
    for api, cell in rows:
        number = re.fullmatch(r"(?:≤ )?(\d+\.\d+)", cell)
        assert number, f"{api}: a required row names one version ('2.2' or '≤ 2.1'), not {cell!r}"
        versions[api] = _version(number.group(1))
    too_new = {api: v for api, v in versions.items() if v > floor}
    assert not too_new, f"required APIs newer than the floor {floor}: {too_new}; raise it or guard them"
    assert floor in versions.values(), f"no required API needs {floor}: the floor is higher than the code needs"


def test_every_private_torch_name_vramguard_uses_has_a_row() -> None:
    page = PAGE.read_text()
    used: dict[str, list[str]] = {}
    for path in sorted((ROOT / "vramguard").rglob("*.py")):
        found, opaque = private_names(path.read_text())
        where = path.relative_to(ROOT)
        assert not opaque, f"{where}:{opaque}: a private torch module under another name; name it in full"
        for name in found:
            used.setdefault(name, []).append(str(where))
    assert "torch.cuda.memory._record_memory_history" in used, "the scan found nothing: is it broken?"
    missing = {name: files for name, files in used.items() if not re.search(rf"`{re.escape(name)}\b", page)}
    assert not missing, f"add a row to docs/torch-versions.md for: {missing}"
