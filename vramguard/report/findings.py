"""``vramguard check``'s findings as text, JSON, SARIF 2.1.0 (code scanning) and GitHub Actions annotations."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vramguard.lint import RULES, Finding

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
RULES_URI = "https://github.com/vramguard/vramguard/blob/main/docs/rules.md"


def render_text(findings: Sequence[Finding]) -> str:
    """One ``path:line:col CODE message`` line per finding."""
    return "".join(f"{f}\n" for f in findings)


def render_json(findings: Sequence[Finding]) -> str:
    """A JSON list of ``{path, line, col, code, message}`` objects."""
    rows = [{"path": f.path, "line": f.line, "col": f.col, "code": f.code, "message": f.message} for f in findings]
    return json.dumps(rows, indent=2) + "\n"


def _uri(path: str) -> str:
    p = Path(path)
    try:
        return p.absolute().relative_to(Path.cwd()).as_posix()
    except ValueError:
        return p.absolute().as_uri()


def sarif_log(findings: Sequence[Finding], version: str) -> dict[str, Any]:
    """A SARIF 2.1.0 log with one run: the rules as the driver's ``rules``, each finding a ``result``."""
    codes = list(RULES)
    rules = [
        {
            "id": code,
            "name": code,
            "shortDescription": {"text": text},
            "helpUri": f"{RULES_URI}#{code.lower()}",
            "defaultConfiguration": {"level": "warning"},
        }
        for code, text in RULES.items()
    ]
    results = [
        {
            "ruleId": f.code,
            "ruleIndex": codes.index(f.code),
            "level": "warning",
            "message": {"text": f.message},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": _uri(f.path)},
                        "region": {"startLine": f.line, "startColumn": f.col},
                    }
                }
            ],
        }
        for f in findings
    ]
    driver = {"name": "vramguard", "version": version, "informationUri": RULES_URI, "rules": rules}
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [{"tool": {"driver": driver}, "results": results}]}


def render_sarif(findings: Sequence[Finding], version: str) -> str:
    return json.dumps(sarif_log(findings, version), indent=2) + "\n"


def _escape(text: str, property_value: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if property_value else text


def render_github(findings: Sequence[Finding]) -> str:
    """GitHub Actions workflow commands: each finding an error annotation on its file and line."""
    return "".join(
        f"::error file={_escape(f.path, True)},line={f.line},col={f.col},title={f.code}::"
        f"{_escape(f'{f.code} {f.message}')}\n"
        for f in findings
    )


def render_statistics(findings: Sequence[Finding]) -> str:
    """Findings per rule, most first, as ruff's ``--statistics`` prints them."""
    counts = Counter(f.code for f in findings)
    return "".join(
        f"{n:>5}  {code}  {RULES[code]}\n" for code, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    )
