"""Each integration, with its framework missing, says exactly what to install."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

CASES = [
    ("vramguard.metrics", "PrometheusCollector()", ("prometheus_client",), "metrics"),
    ("vramguard.integrations.trainer", "", ("transformers",), "trainer"),
    ("vramguard.integrations.lightning", "", ("lightning", "pytorch_lightning"), "lightning"),
    ("vramguard.integrations.notebook", "", ("IPython",), "notebook"),
]


@pytest.mark.parametrize(("module", "call", "blocked", "extra"), CASES)
def test_a_missing_extra_names_its_install(module: str, call: str, blocked: tuple[str, ...], extra: str) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {blocked!r}:
                    raise ImportError(f"blocked {{name}}")
                return None
        sys.meta_path.insert(0, Block())
        import vramguard
        try:
            import {module} as m
            m.{call or "__name__"}
        except vramguard.MissingDependency as error:
            print(error)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert f"pip install 'vramguard[{extra}]'" in result.stdout, result.stdout
