"""The gpu_session argument list and table in README.md and docs/sessions.md, from the one place
the arguments are written (``vramguard.core._options.ARGUMENTS``).

    .venv/bin/python scripts/options_table.py          # rewrite both files between their markers
    .venv/bin/python scripts/options_table.py --check  # exit 1 when either is out of date (a test runs this)
"""

from __future__ import annotations

import sys
from pathlib import Path

from vramguard.core._options import ARGUMENTS

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- options:start -->", "<!-- options:end -->"
FILES = (ROOT / "README.md", ROOT / "docs" / "sessions.md")


def signature() -> str:
    return "gpu_session(name=None, *, " + ", ".join(f"{a.name}={a.default}" for a in ARGUMENTS) + ")"


def block() -> str:
    rows = [f"| `{a.name}` | `{a.default}` | {a.help} |" for a in ARGUMENTS]
    return "\n".join(
        [
            START,
            f"`{signature()}`",
            "",
            "| argument | default | what it does |",
            "|---|---|---|",
            *rows,
            "",
            "`options=` a `vramguard.SessionOptions` (built once with `SessionOptions.from_arguments(...)`) "
            "instead of the keyword arguments.",
            END,
        ]
    )


def rewritten(text: str) -> str | None:
    """``text`` with its block replaced, or None when it has no markers."""
    if START not in text or END not in text:
        return None
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return head + block() + tail


def main(argv: list[str]) -> int:
    stale = []
    for path in FILES:
        text = path.read_text(encoding="utf-8")
        new = rewritten(text)
        if new is None:
            print(f"{path.relative_to(ROOT)}: no {START} ... {END} markers", file=sys.stderr)
            return 1
        if new != text:
            stale.append(path)
            if "--check" not in argv:
                path.write_text(new, encoding="utf-8")
    if stale and "--check" in argv:
        names = ", ".join(str(p.relative_to(ROOT)) for p in stale)
        print(f"out of date: {names}; run .venv/bin/python scripts/options_table.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
