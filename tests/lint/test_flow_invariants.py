"""Invariants of the flow walk on generated programs: it never fails, and findings sit on cache calls."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vramguard.lint import check_source
from vramguard.lint._fix import fix_source

SIMPLE = [
    "torch.cuda.empty_cache()",
    "gc.collect()",
    "del x",
    "x = None",
    "self.m = None",
    "x = load_model('a')",
    "y = x.to('cuda')",
    "use(x, y)",
    "release_memory(x)",
    "pass",
]


def _block(depth: int) -> st.SearchStrategy[list[str]]:
    simple = st.sampled_from(SIMPLE).map(lambda s: [s])
    if depth == 0:
        leaf = simple
    else:
        inner = _block(depth - 1)
        compound = st.tuples(
            st.sampled_from(["if c:", "for i in r:", "while c:", "with ctx:", "try:", "else_if"]), inner, inner
        ).map(_compound)
        leaf = st.one_of(simple, compound, st.sampled_from([["return"], ["break"], ["continue"], ["raise E"]]))
    return st.lists(leaf, min_size=1, max_size=4).map(lambda parts: [line for part in parts for line in part])


def _compound(parts: tuple[str, list[str], list[str]]) -> list[str]:
    head, body, other = parts
    indent = lambda lines: ["    " + line for line in lines]  # noqa: E731
    if head == "try:":
        return ["try:", *indent(body), "except Exception as e:", *indent(other)]
    if head == "else_if":
        return ["if c:", *indent(body), "else:", *indent(other)]
    return [head, *indent(body)]


@settings(max_examples=150, deadline=None)
@given(_block(3))
def test_findings_are_on_cache_call_lines_and_fix_keeps_them_honest(body: list[str]) -> None:
    lines = ["def f(self, x, y, c, r, ctx):", *("    " + line for line in body)]
    source = "\n".join(lines) + "\n"
    try:
        compile(source, "<generated>", "exec")
    except SyntaxError:
        return  # `break` outside a loop and the like
    findings = check_source(source)
    for finding in findings:
        line = lines[finding.line - 1]
        assert "empty_cache" in line or "release_memory" in line, (finding, source)
    fixed = fix_source(source)
    assert len([f for f in check_source(fixed.source) if f.code == "VG001"]) <= len(
        [f for f in findings if f.code == "VG001"]
    )
