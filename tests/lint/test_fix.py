"""``--fix`` moves the drops before the cache call only in the simple cases, and the rewrite is checked."""

from __future__ import annotations

import ast
import textwrap
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from vramguard.lint import check_source
from vramguard.lint._fix import fix_source


def simple_statements(source: str) -> Counter[str]:
    return Counter(
        ast.dump(n) for n in ast.walk(ast.parse(source)) if isinstance(n, ast.stmt) and not hasattr(n, "body")
    )


def test_whisper_plus_method_is_reordered() -> None:
    source = textwrap.dedent(
        """\
        class Pipeline:
            def clear_memory(self):
                if self.device == "cuda":
                    gc.collect()
                    torch.cuda.empty_cache()
                    self.asr_pipeline = None
                    self.diarization_pipeline = None
                return self
        """
    )
    result = fix_source(source)
    assert result.fixed == 1
    assert result.source == source.replace(
        "gc.collect()\n            torch.cuda.empty_cache()\n            self.asr_pipeline = None\n"
        "            self.diarization_pipeline = None\n",
        "self.asr_pipeline = None\n            self.diarization_pipeline = None\n            gc.collect()\n"
        "            torch.cuda.empty_cache()\n",
    )
    assert check_source(result.source) == ()
    assert simple_statements(result.source) == simple_statements(source)


def test_one_line_readme_form() -> None:
    source = "model = load()\ngc.collect(); torch.cuda.empty_cache(); del model\nprint('done')\n"
    result = fix_source(source)
    assert result.source == "model = load()\ndel model; gc.collect(); torch.cuda.empty_cache()\nprint('done')\n"


def test_cases_that_are_not_simple_are_left_alone() -> None:
    untouched = [
        # something between the call and the drop reads it
        "def f(x):\n    torch.cuda.empty_cache()\n    log(x)\n    del x\n",
        # the drop is in another block
        "def f(self):\n    torch.cuda.empty_cache()\n    if self.ready:\n        self.model = None\n",
        # a comment between them
        "def f(x):\n    torch.cuda.empty_cache()\n    # now drop\n    del x\n",
        # two statements on a line mixed with one per line
        "def f(x, y):\n    torch.cuda.empty_cache(); del x\n    del y\n",
        # release_memory(a) is not a call that can be moved after the names' drop
        "def f(a):\n    a = release_memory(a)\n    del a\n",
    ]
    for source in untouched:
        assert fix_source(source).source == source, source
        assert fix_source(source).fixed == 0


NAMES = ["a", "b", "c", "self.m", "self.n", "d['k']"]


@settings(max_examples=60, deadline=None)
@given(
    drops=st.lists(st.sampled_from(NAMES), min_size=1, max_size=5, unique=True),
    collect_before=st.booleans(),
    none=st.lists(st.booleans(), min_size=5, max_size=5),
    one_line=st.booleans(),
)
def test_fixed_source_has_the_same_statements_and_no_vg001(
    drops: list[str], collect_before: bool, none: list[bool], one_line: bool
) -> None:
    statements = (["gc.collect()"] if collect_before else []) + ["torch.cuda.empty_cache()"]
    statements += [
        f"{t} = None" if flag and not t.startswith("d[") else f"del {t}"
        for t, flag in zip(drops, none[: len(drops)], strict=True)
    ]
    body = "; ".join(statements) if one_line else "\n    ".join(statements)
    # What the drops let go of is shown to be device memory: `x = None` on a name of unknown kind and
    # `del d[k]` on a container of unknown items are not drops of device memory.
    shown = "torch.cat((a, b, c)); d['j'] = torch.ones(1, device='cuda')"
    source = f"def f(self, a, b, c, d):\n    {shown}\n    {body}\n    return 1\n"
    assert [f.code for f in check_source(source)] == ["VG001"]
    result = fix_source(source)
    assert result.fixed == 1
    assert check_source(result.source) == ()
    assert simple_statements(result.source) == simple_statements(source)
