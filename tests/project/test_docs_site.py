"""The built site shows the public API as users import it: headings under ``vramguard.``, no private
module path and no raw Sphinx role in the visible text, the roles rendered as links; wide tables and
code scroll in their own box."""

from __future__ import annotations

import html
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _extension() -> object:
    """docs/_ext/sphinx_roles.py, loaded by path as mkdocstrings loads it."""
    pytest.importorskip("griffe")
    spec = importlib.util.spec_from_file_location("sphinx_roles", ROOT / "docs" / "_ext" / "sphinx_roles.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _visible(page: str) -> str:
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.DOTALL)
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


@pytest.mark.slow
def test_the_api_page_names_public_paths_and_links_the_roles(site: Path) -> None:
    page = (site / "api" / "index.html").read_text()
    text = _visible(page)
    assert re.findall(r"vramguard(?:\.\w+)*\._\w+", text) == []
    assert re.findall(r":(?:func|class|meth|attr|mod|exc|data):`", text) == []
    for name in ("gpu_session", "SessionReport", "isolated", "park", "LeakError"):
        assert f'id="vramguard.{name}"' in page
    # gpu_session's docstring says :func:`vramguard.isolated`; the site links it
    assert 'href="#vramguard.isolated"' in page


@pytest.mark.slow
def test_wide_tables_and_code_scroll_inside_the_page(site: Path) -> None:
    css = (site / "stylesheets" / "extra.css").read_text()
    assert 'href="../stylesheets/extra.css"' in (site / "benchmarks" / "index.html").read_text()
    rules = dict(re.findall(r"([^{}]+)\{([^}]*)\}", re.sub(r"/\*.*?\*/", "", css, flags=re.DOTALL)))
    table = next(body for selector, body in rules.items() if "table" in selector)
    code = next(body for selector, body in rules.items() if "pre" in selector)
    assert "overflow-x: auto" in table and "overflow-x: auto" in code


def test_a_role_becomes_a_link_to_the_public_name_or_plain_code() -> None:
    rewrite = _extension().rewrite  # type: ignore[attr-defined]
    import griffe

    package = griffe.load("vramguard", search_paths=[str(ROOT)])
    session = package["_api.gpu_session"]
    records = package["core._records"]
    assert rewrite(package, session, "see :func:`vramguard.isolated`.") == (
        'see <autoref identifier="vramguard.isolated" optional><code>vramguard.isolated</code></autoref>.'
    )
    # a name the package exports is linked under its public path; ~ shows the last part
    assert 'identifier="vramguard.SessionReport"' in rewrite(package, records, ":class:`SessionReport`")
    assert rewrite(package, session, ":class:`~vramguard.InvalidArgument`").endswith(
        "><code>InvalidArgument</code></autoref>"
    )
    # a target that does not resolve is code, never a broken link
    assert rewrite(package, session, ":func:`no_such_thing`") == "<code>no_such_thing</code>"
