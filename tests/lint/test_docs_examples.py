"""docs/rules.md's examples: every "Wrong" block is found by its own rule, every "Right" block is clean."""

from __future__ import annotations

from pathlib import Path

from vramguard.lint._run import check_text
from vramguard.lint._sources import markdown_snippets

RULES_MD = Path(__file__).parents[2] / "docs" / "rules.md"


def test_each_wrong_example_is_found_and_each_right_one_is_clean() -> None:
    text = RULES_MD.read_text(encoding="utf-8")
    lines = text.splitlines()
    findings = check_text(text, RULES_MD)
    assert sorted(f.code for f in findings) == ["VG001", "VG002", "VG003", "VG004", "VG005"]
    for finding in findings:
        heading = next(line for line in reversed(lines[: finding.line]) if line.startswith("## "))
        assert heading.startswith(f"## {finding.code}:"), (finding, heading)
        label = next(line for line in reversed(lines[: finding.line]) if line.startswith(("Wrong", "Right")))
        assert label.startswith("Wrong"), (finding, label)
    blocks = [s for s in markdown_snippets(text) if "empty_cache" in s.source or "release_memory" in s.source]
    assert len(blocks) >= 10  # a wrong and a right example of each rule
