"""The summary of ``scripts/gpu-check.sh``: ``summary.md`` from the run's JUnit XML, its steps and
its benchmarks' markdown, and the verdict as the exit code.

Issue 24's 13 points are matched to their tests by name: ``test_gpu_pointNN_<what>``, NN the
point's number on two digits (parametrized ids such as ``[cuda]`` allowed). A point passes when
one of its tests passed and none failed; it is "no test found" when no test carries its number.

The verdict (exit 0) is: every step exited 0, no test failed or errored, and, on a real run, every
point has a test and at least one gpu test passed (so a machine where CUDA went unseen and every
test skipped does not pass). A dry run (no GPU) passes on its plumbing alone.
"""

from __future__ import annotations

import argparse
import re
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from gpu_deps import CANNOT_TRAVEL

POINTS: tuple[tuple[int, str], ...] = (
    (1, "small-pool gpu test"),
    (2, "leak figure (requested bytes, cuBLAS workspace)"),
    (3, "block diff before CUDA init"),
    (4, "NCCL gather device"),
    (5, "wake syncs the model's device"),
    (6, "hard budget = base + budget"),
    (7, "empty_cache is process-wide"),
    (8, "memory history python stacks / traces only when wanted"),
    (9, "one pinned buffer per park, returned"),
    (10, "isolated() results never on the parent's GPU"),
    (11, "availability without cuInit"),
    (12, "NVML v2 memory info"),
    (13, "cuBLAS workspace in reserved, not the context"),
)
"""Issue 24's points, with short titles."""

POINT_TEST = re.compile(r"^test_gpu_point(\d{2})_")
LOG_TAIL_LINES = 25
NOT_RUN = "not-run"
"""The return code a step records when it was left out on purpose (the dry run's benchmarks)."""


@dataclass(frozen=True)
class TestResult:
    """One testcase of the JUnit XML."""

    classname: str
    name: str
    outcome: str
    """"passed", "failed", "error" or "skipped"."""
    message: str
    """The skip reason or the failure's first line; empty for a pass."""

    @property
    def point(self) -> int | None:
        found = POINT_TEST.match(self.name)
        return int(found.group(1)) if found and 1 <= int(found.group(1)) <= len(POINTS) else None

    @property
    def nodeid(self) -> str:
        return f"{self.classname}::{self.name}" if self.classname else self.name


@dataclass(frozen=True)
class PointRow:
    number: int
    title: str
    verdict: str
    """"passed", "failed", "skipped" or "no test found"."""
    detail: str
    tests: tuple[str, ...]


@dataclass(frozen=True)
class Step:
    """A step of the run as the script recorded it: ``rc`` None when it left no code (NOT_RUN)."""

    name: str
    rc: int | None
    duration_s: int
    limit_s: int
    log: Path
    command: str

    @property
    def state(self) -> str:
        if self.rc is None:
            return "not run: dry run"
        if self.rc in (124, 137):
            return f"TIMED OUT after {self.duration_s} s (limit {self.limit_s} s)"
        if self.rc != 0:
            return f"FAILED (exit {self.rc}) after {self.duration_s} s"
        return f"passed in {self.duration_s} s"


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def parse_junit(xml_text: str) -> list[TestResult]:
    """Every testcase of a pytest JUnit XML report, in its order."""
    results = []
    for case in ET.fromstring(xml_text).iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            element = case.find(tag)
            if element is not None:
                outcome = "failed" if tag == "failure" else tag
                message = element.get("message") or _first_line(element.text)
                break
        results.append(TestResult(case.get("classname", ""), case.get("name", ""), outcome, _first_line(message)))
    return results


def point_rows(results: list[TestResult]) -> list[PointRow]:
    """One row a point: its tests' outcomes folded into one verdict."""
    rows = []
    for number, title in POINTS:
        mine = [r for r in results if r.point == number]
        outcomes = Counter(r.outcome for r in mine)
        bad = [r for r in mine if r.outcome in ("failed", "error")]
        skipped = sorted({r.message for r in mine if r.outcome == "skipped"})
        if not mine:
            verdict, detail = "no test found", ""
        elif bad:
            verdict, detail = "failed", "; ".join(f"{r.name}: {r.message}" for r in bad)
        elif outcomes["passed"]:
            verdict, detail = "passed", f"{outcomes['passed']} passed"
            if skipped:
                detail += f", {outcomes['skipped']} skipped: {'; '.join(skipped)}"
        else:
            verdict, detail = "skipped", "; ".join(skipped)
        rows.append(PointRow(number, title, verdict, detail, tuple(r.name for r in mine)))
    return rows


def read_steps(text: str) -> list[Step]:
    """The script's step records: name, rc, seconds, limit, log, command, tab-separated."""
    steps = []
    for line in text.splitlines():
        if line.strip():
            name, rc, duration, limit, log, command = line.split("\t", 5)
            steps.append(Step(name, None if rc == NOT_RUN else int(rc), int(duration), int(limit), Path(log), command))
    return steps


def _shown(command: str, work: str) -> str:
    return command.replace(f"{work.rstrip('/')}/", "") if work else command


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _log_tail(step: Step) -> str:
    try:
        lines = step.log.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-LOG_TAIL_LINES:]) or "(empty log)"


def points_section(rows: list[PointRow], dry_run: bool) -> list[str]:
    lines = ["## Issue 24's points", "", "| point | what | result | tests |", "| --- | --- | --- | --- |"]
    for row in rows:
        result = row.verdict if not row.detail else f"{row.verdict}: {row.detail}"
        tests = ", ".join(f"`{name}`" for name in row.tests) or "—"
        lines.append(f"| {row.number:02d} | {_cell(row.title)} | {_cell(result)} | {_cell(tests)} |")
    if dry_run:
        lines += ["", "Dry run: no CUDA device here, so every gpu test is skipped."]
    return [*lines, ""]


def others_section(results: list[TestResult]) -> list[str]:
    others = [r for r in results if r.point is None]
    counts = Counter(r.outcome for r in others)
    summary = ", ".join(f"{counts[k]} {k}" for k in ("passed", "failed", "error", "skipped") if counts[k])
    lines = ["## The other gpu tests", "", f"{len(others)} tests: {summary or 'none'}.", ""]
    bad = [r for r in others if r.outcome in ("failed", "error")]
    if bad:
        lines += [f"- {r.outcome.upper()} `{r.nodeid}`: {r.message}" for r in bad] + [""]
    reasons = Counter(r.message for r in others if r.outcome == "skipped")
    if reasons:
        lines += ["Skip reasons:", ""] + [f"- {n} × {reason}" for reason, n in reasons.most_common()] + [""]
    return lines


def benchmark_section(step: Step, work: str = "") -> list[str]:
    lines = [f"### {step.name}", "", f"`{_shown(step.command, work)}`", "", step.state, ""]
    if step.rc is None:
        return lines
    markdown = next((Path(word) for word in step.command.split() if word.endswith(".md")), None)
    if step.rc == 0 and markdown is not None and markdown.is_file():
        return [*lines, markdown.read_text().strip(), ""]
    if step.rc == 0:
        lines += ["(its markdown was not written)", ""]
    return [*lines, "Last lines of its output:", "", "```text", _log_tail(step), "```", ""]


def cannot_travel_section(results: list[TestResult]) -> list[str]:
    lines = ["## What could not travel to the machine", ""]
    for name, why in CANNOT_TRAVEL.items():
        skipped = [r for r in results if r.outcome == "skipped" and name in r.message]
        lines.append(f"- **{name}**: {why}. gpu tests skipped for it: {len(skipped)}.")
    return [*lines, ""]


def shortfalls(steps: list[Step], results: list[TestResult], rows: list[PointRow], dry_run: bool) -> list[str]:
    """Why the run did not pass; empty when it did."""
    why = [f"step {s.name}: {s.state}" for s in steps if s.rc not in (None, 0)]
    why += [f"{r.outcome} {r.nodeid}" for r in results if r.outcome in ("failed", "error")]
    if not dry_run:
        why += [f"point {row.number:02d}: no test found" for row in rows if row.verdict == "no test found"]
        if not any(r.outcome == "passed" for r in results):
            why.append("no gpu test passed")
    return why


def render(
    header: str, steps: list[Step], results: list[TestResult] | None, dry_run: bool, work: str = ""
) -> tuple[str, list[str]]:
    """The summary's markdown and the reasons the run did not pass (empty: it passed). ``work``:
    the run's scratch folder, left out of the paths shown (they are then the archive's)."""
    rows = point_rows(results or [])
    failures = shortfalls(steps, results or [], rows, dry_run)
    if results is None:
        failures.append("no JUnit XML: the gpu tests left no report")
    title = "# vramguard GPU check" + (" — DRY RUN (no GPU: nothing here is a GPU figure)" if dry_run else "")
    lines = [title, "", f"**{'PASSED' if not failures else 'NOT PASSED'}**", ""]
    lines += [f"- {reason}" for reason in failures] + ([""] if failures else [])
    lines += ["## Environment", "", header.strip(), ""]
    lines += ["## Steps", "", "| step | result | command |", "| --- | --- | --- |"]
    lines += [f"| {s.name} | {_cell(s.state)} | `{_cell(_shown(s.command, work))}` |" for s in steps] + [""]
    lines += points_section(rows, dry_run)
    if results is None:
        lines += ["## The other gpu tests", "", "No JUnit XML was written (see the tests step's log).", ""]
    else:
        lines += others_section(results)
    lines += cannot_travel_section(results or [])
    benchmarks = [s for s in steps if s.name.startswith("bench-")]
    if benchmarks:
        lines += ["## Benchmarks (reduced, CUDA)", ""]
        for step in benchmarks:
            lines += benchmark_section(step, work)
    tests = next((s for s in steps if s.name == "tests"), None)
    if tests is not None and tests.rc not in (None, 0):
        lines += ["## The gpu tests' last lines", "", "```text", _log_tail(tests), "```", ""]
    return "\n".join(lines), failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--junit", type=Path, required=True)
    parser.add_argument("--header", type=Path, required=True)
    parser.add_argument("--steps", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", default="", help="the scratch folder, left out of the paths shown")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    header = args.header.read_text() if args.header.is_file() else "(the environment header was not written)"
    steps = read_steps(args.steps.read_text()) if args.steps.is_file() else []
    try:
        results: list[TestResult] | None = parse_junit(args.junit.read_text())
    except (OSError, ET.ParseError):
        results = None
    text, failures = render(header, steps, results, args.dry_run, args.work)
    args.out.write_text(text)
    for reason in failures:
        print(f"not passed: {reason}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
