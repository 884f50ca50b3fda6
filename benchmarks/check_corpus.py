"""``vramguard check`` over real code: the installed sources of transformers, accelerate, diffusers,
pyannote.audio and torch.

    .venv/bin/python benchmarks/check_corpus.py                      # every package above
    .venv/bin/python benchmarks/check_corpus.py --packages accelerate --findings

Prints, per package and in total: files checked, lines, findings per rule, the wall time and the
time per 1,000 lines. A package that is not installed is skipped with a line saying so. Goal: all
of transformers in under 20 s. Files without a cache call are read but not parsed (every rule
needs one), which is where most of the speed comes from; the time is wall-clock on whatever
else the machine is doing.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections import Counter
from pathlib import Path

from vramguard.lint import RULES
from vramguard.lint._run import CheckResult, check_paths

PACKAGES = {
    "transformers": "transformers",
    "accelerate": "accelerate",
    "diffusers": "diffusers",
    "pyannote.audio": "pyannote.audio",
    "torch": "torch",
}


def _location(module: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _line(name: str, result: CheckResult, seconds: float) -> str:
    counts = Counter(f.code for f in result.findings)
    per_rule = " ".join(f"{code}={counts[code]}" for code in RULES)
    per_kline = 1000 * seconds / max(result.lines_checked, 1)
    return (
        f"{name:<15} files={result.files_checked:<6} lines={result.lines_checked:<9} "
        f"findings={len(result.findings):<3} "
        f"{per_rule}  {seconds:6.2f} s  {per_kline * 1000:.2f} ms/1000 lines  unparsable={len(result.errors)}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", default=",".join(PACKAGES), help="comma-separated, from: " + ", ".join(PACKAGES))
    parser.add_argument("--findings", action="store_true", help="print every finding")
    args = parser.parse_args(argv)
    total_files = total_lines = 0
    total_seconds = 0.0
    totals: Counter[str] = Counter()
    for name in [p.strip() for p in args.packages.split(",") if p.strip()]:
        folder = _location(PACKAGES.get(name, name))
        if folder is None:
            print(f"{name:<15} skipped: not installed")
            continue
        start = time.perf_counter()
        result = check_paths([folder])
        seconds = time.perf_counter() - start
        print(_line(name, result, seconds), flush=True)
        if args.findings:
            for finding in result.findings:
                print(f"    {finding}")
        total_files += result.files_checked
        total_lines += result.lines_checked
        total_seconds += seconds
        totals.update(f.code for f in result.findings)
    per_rule = " ".join(f"{code}={totals[code]}" for code in RULES)
    per_kline = 1000 * total_seconds / max(total_lines, 1)
    print(
        f"{'total':<15} files={total_files:<6} lines={total_lines:<9} findings={sum(totals.values()):<3} {per_rule}  "
        f"{total_seconds:6.2f} s  {per_kline * 1000:.2f} ms/1000 lines"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
