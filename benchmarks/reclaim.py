"""How much memory each release strategy gives back, every scenario against every strategy, in one run.

    .venv/bin/python benchmarks/reclaim.py [--device cpu|cuda] [--repeat 3] [--scenarios 'a;b'] [--json out.json]
        [--markdown out.md] [--quick]

Every (scenario, strategy) cell runs ``--repeat`` times, each time in a fresh child process that
first imports every peer (accelerate, transformers, vramguard's ASR pipeline: an import is not a
leak), runs one warm-up load+run+release cycle (lazy one-time caches are not a leak either), and
then measures: the level before loading, after loading and running, and after the strategy's
release. The objects live on an application object ``app`` (as whisper-plus's pipeline holds its
models); the strategies are what users write today, verbatim, against vramguard.

Per cell: the fraction of the reclaimable memory that came back (1.0 = the level before loading;
reserved memory on CUDA, resident anonymous memory on the host), the bytes still cached (reserved −
allocated), the bytes still referenced (allocated above the level before loading), the release
time, and whether the strategy told the user what stayed and why. Each figure is the median of
the repetitions, with the min and max. On the host, "empty_cache" is ``vramguard.empty_cache("cpu")``
(``malloc_trim(0)``), the closest thing to the CUDA allocator's cache; CPU figures say nothing about
a GPU.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from reclaim_cases import (
    NEEDS_MODELS,
    QUICK_SCENARIOS,
    SCENARIOS,
    STRATEGIES,
    Env,
    available_strategies,
    manual_order,
)

import vramguard

# --- The child: one measured cell ------------------------------------------------------------


def _import_peers() -> None:
    """Every peer the run compares, imported before any measurement (an import is not a leak).
    The scenarios' own libraries (transformers, pyannote) are loaded by the warm-up cycle."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import accelerate.utils  # noqa: F401


def child(scenario: str, strategy: str, env: Env) -> dict[str, Any]:
    _import_peers()
    build = SCENARIOS[scenario]
    run, _ = STRATEGIES[strategy]
    # Warm-up: one cycle released in the right order, so one-time lazy allocations (kernels,
    # thread pools, modules loaded on first use) are counted by no strategy.
    manual_order(lambda: build(env), env)
    gc.enable()
    gc.collect()
    env.empty_cache()
    before = vramguard.snapshot(env.device)
    scope, told = run(lambda: build(env), env)
    took = time.perf_counter() - env.release_started_s
    after = vramguard.snapshot(env.device)  # the user's scope still alive: what their names hold counts
    gc.enable()
    loaded = env.loaded_snapshot
    assert loaded is not None
    del scope
    return {
        "before": before.to_dict(),
        "loaded": loaded.to_dict(),
        "after": after.to_dict(),
        "release_s": took,
        "told": told,
    }


# --- The parent: run every cell, summarise -----------------------------------------------------


def figures(result: dict[str, Any]) -> dict[str, float | int | None]:
    """The cell's figures from one child's three snapshots."""
    before, loaded, after = (result[k]["reserved_bytes"] for k in ("before", "loaded", "after"))
    reclaimable = None if loaded is None or before is None else loaded - before
    fraction = None
    if reclaimable is not None and after is not None and reclaimable > 0:
        fraction = (loaded - after) / reclaimable
    alloc_before, alloc_after = result["before"]["allocated_bytes"], result["after"]["allocated_bytes"]
    referenced = None if alloc_before is None or alloc_after is None else max(0, alloc_after - alloc_before)
    cached_before, cached_after = result["before"]["cached_bytes"], result["after"]["cached_bytes"]
    return {
        "fraction": fraction,
        "reclaimable_bytes": reclaimable,
        # Above the level before loading: on the host the absolute figure also counts pymalloc's
        # arenas and the libraries' own memory, which no strategy is about.
        "cached_bytes": None if cached_before is None or cached_after is None else cached_after - cached_before,
        "referenced_bytes": referenced,
        "release_s": result["release_s"],
    }


def _spread(values: Sequence[float | int | None]) -> dict[str, float | None]:
    present = [float(v) for v in values if v is not None]
    if not present:
        return {"min": None, "median": None, "max": None}
    return {"min": min(present), "median": statistics.median(present), "max": max(present)}


def _forked(scenario: str, strategy: str, args: argparse.Namespace) -> tuple[int, str, str]:
    """One measurement in a child forked from this process, which has imported torch, the peers
    and vramguard and run nothing: the child starts from the heap of a fresh interpreter after
    those imports, without paying for them (a second on these CPUs)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: measure, write one JSON line, and leave without running atexit hooks
        code = 0
        try:
            os.close(read_fd)
            env = Env(torch.device(args.device), Path(args.models) if args.models else None, args.small)
            line = json.dumps(child(scenario, strategy, env)) + "\n"
        except BaseException as error:
            line, code = json.dumps({"error": f"{type(error).__name__}: {error}"}) + "\n", 1
        with os.fdopen(write_fd, "w") as out:
            out.write(line)
        os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe_in:
        text = pipe_in.read()
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return code, text, text if code else ""


def run_cell(scenario: str, strategy: str, args: argparse.Namespace) -> dict[str, Any]:
    runs = []
    for _ in range(args.repeat):
        if args.fork:
            code, out, err = _forked(scenario, strategy, args)
            if code == 0:
                runs.append(json.loads(out.strip().splitlines()[-1]))
                continue
            if args.strict:
                raise SystemExit(f"cell {scenario!r} x {strategy!r} failed: {err}")
            print(f"cell {scenario!r} x {strategy!r} failed: {err}", file=sys.stderr)
            return {"error": err}
        command = [sys.executable, __file__, "--child", scenario, strategy, "--device", args.device]
        if args.models:
            command += ["--models", str(args.models)]
        if args.small:
            command.append("--small")
        env = {**os.environ, "PYANNOTE_METRICS_ENABLED": "false", "HF_HUB_OFFLINE": "1"}
        done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
        if done.returncode != 0:
            if args.strict:
                raise SystemExit(f"cell {scenario!r} x {strategy!r} failed:\n{done.stderr[-4000:]}")
            print(f"cell {scenario!r} x {strategy!r} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
            return {"error": done.stderr[-2000:]}
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    per_run = [figures(r) for r in runs]
    summary = {key: _spread([f[key] for f in per_run]) for key in per_run[0]}
    return {"runs": per_run, "summary": summary, "told": runs[-1]["told"]}


def _mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:.1f}"


def _frac(cell: dict[str, Any]) -> str:
    if "error" in cell:
        return "failed"
    s = cell["summary"]["fraction"]
    if s["median"] is None:
        return "n/a"
    if s["min"] == s["max"]:
        return _two(s["median"])
    return f"{_two(s['median'])} ({_two(s['min'])}–{_two(s['max'])})"


def _two(value: float) -> str:
    return f"{value:.2f}".replace("-0.00", "0.00")


def _mib_spread(cell: dict[str, Any], key: str) -> str:
    s = cell["summary"][key]
    if s["median"] is None:
        return "n/a"
    if s["min"] == s["max"]:
        return _mib(s["median"])
    return f"{_mib(s['median'])} ({_mib(s['min'])}–{_mib(s['max'])})"


def markdown(data: dict[str, Any]) -> str:
    """The run as Markdown: a summary matrix, then one table per scenario."""
    results: dict[str, dict[str, Any]] = data["results"]
    strategies = data["strategies"]
    lines = [
        f"Device: {data['device_label']}. Date: {data['date']}. Repetitions per cell: {data['repeat']} "
        "(median, with min–max in brackets). Command: `" + data["command"] + "`.",
        "",
        "Fraction of the reclaimable memory returned (1.00 = the level before loading):",
        "",
        "| strategy | " + " | ".join(results) + " |",
        "|---|" + "---|" * len(results),
    ]
    for strategy in strategies:
        lines.append(f"| {strategy} | " + " | ".join(_frac(results[s][strategy]) for s in results) + " |")
    for scenario, cells in results.items():
        reclaimable = next(
            (c["summary"]["reclaimable_bytes"]["median"] for c in cells.values() if "summary" in c), None
        )
        lines += [
            "",
            f"**{scenario}** (loading and one run added {_mib(reclaimable)} MiB):",
            "",
            "| strategy | returned | more cached (MiB) | still referenced (MiB) | release (ms) | told why |",
            "|---|---|---|---|---|---|",
        ]
        for strategy in strategies:
            cell = cells[strategy]
            if "error" in cell:
                lines.append(f"| {strategy} | failed | | | | |")
                continue
            ms = cell["summary"]["release_s"]
            took = "n/a"
            if ms["median"] is not None:
                took = f"{ms['median'] * 1000:.0f} ({ms['min'] * 1000:.0f}–{ms['max'] * 1000:.0f})"
            told = cell["told"] or "no"
            lines.append(
                f"| {strategy} | {_frac(cell)} | {_mib_spread(cell, 'cached_bytes')} | "
                f"{_mib_spread(cell, 'referenced_bytes')} | {took} | {told} |"
            )
    return "\n".join(lines) + "\n"


def plot(data: dict[str, Any], path: str) -> None:
    """Median fraction returned per strategy, one group of bars per scenario, min–max as error bars."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    results: dict[str, dict[str, Any]] = data["results"]
    strategies: list[str] = data["strategies"]
    figure = Figure(figsize=(12, 4.8), dpi=80, layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    width = 0.8 / len(strategies)
    for i, strategy in enumerate(strategies):
        xs, ys, low, high = [], [], [], []
        for j, cells in enumerate(results.values()):
            cell = cells.get(strategy, {})
            s = cell.get("summary", {}).get("fraction")
            if not s or s["median"] is None:
                continue
            xs.append(j + (i - len(strategies) / 2 + 0.5) * width)
            ys.append(s["median"])
            low.append(s["median"] - s["min"])
            high.append(s["max"] - s["median"])
        ax.bar(xs, ys, width, yerr=[low, high], label=strategy, capsize=1.5, error_kw={"linewidth": 0.6})
    ax.set_xticks(range(len(results)), list(results), fontsize=8)
    ax.set_ylabel("fraction of the reclaimable memory returned")
    ax.axhline(1.0, color="0.3", linewidth=0.8, linestyle=":")
    ax.set_title(f"{data['device_label'].split(',')[0]}, {data['date']}: median of {data['repeat']}, min–max bars",
                 fontsize=9, loc="left")  # fmt: skip
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0), borderaxespad=0.0)
    figure.savefig(path)


def _device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} ({device}), torch {torch.__version__}"
    return f"CPU (host heap: resident anonymous memory and malloc), torch {torch.__version__}; no GPU figure"


@contextmanager
def _models(args: argparse.Namespace, scenarios: Sequence[str]) -> Iterator[None]:
    if args.models or not NEEDS_MODELS.intersection(scenarios):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="vramguard-reclaim-") as scratch:
        folder = Path(scratch)
        base = "transformers pipeline (whisper-base)" in scenarios
        # Built in a child: this process forks the measured ones and must stay as imports left it.
        subprocess.run([sys.executable, __file__, "--build-models", scratch, *(["--base"] if base else [])], check=True)
        args.models = folder
        try:
            yield
        finally:
            args.models = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", default="auto", help='"auto", "cpu" or "cuda" (default: auto)')
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per cell (default: 3)")
    parser.add_argument("--scenarios", help="scenario names separated by ';' (default: all)")
    parser.add_argument("--strategies", help="strategy names separated by ';' (default: all)")
    parser.add_argument("--quick", action="store_true", help="one small scenario, one repetition")
    parser.add_argument("--strict", action="store_true", help="stop at the first failed cell")
    parser.add_argument("--jobs", type=int, default=1, help="cells measured at once, each in its own process")
    parser.add_argument("--from-json", help="print the tables of a saved run (and --markdown them); measure nothing")
    parser.add_argument(
        "--spawn", dest="fork", action="store_false", default=hasattr(os, "fork"),
        help="start every child as a new interpreter (default where os.fork exists: fork this process, "
        "which has imported the peers and run nothing)",
    )  # fmt: skip
    parser.add_argument("--json", help="write every figure to this file")
    parser.add_argument("--markdown", help="write the tables to this file")
    parser.add_argument("--plot", help="draw the fractions returned into this PNG")
    parser.add_argument("--models", help=argparse.SUPPRESS)
    parser.add_argument("--small", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--build-models", help=argparse.SUPPRESS)
    parser.add_argument("--base", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.build_models:
        from vramguard.asr.testing import build_tiny_diarizer, build_tiny_whisper

        folder = Path(args.build_models)
        build_tiny_whisper(folder / "whisper-tiny", size="tiny")
        if args.base:
            build_tiny_whisper(folder / "whisper-base", size="base")
        build_tiny_diarizer(folder / "diarizer", size="tiny")
        return 0
    device = vramguard.resolve_device(args.device)
    args.device = str(device)
    if args.child:
        env = Env(device, Path(args.models) if args.models else None, args.small)
        print(json.dumps(child(args.child[0], args.child[1], env)))
        return 0
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        table = markdown(saved)
        print(table)
        if args.markdown:
            Path(args.markdown).write_text(table)
        if args.plot:
            plot(saved, args.plot)
        return 0
    if args.quick:
        args.repeat, args.small = 1, True
    if args.repeat < 1:
        raise SystemExit("--repeat must be at least 1")
    scenarios = list(QUICK_SCENARIOS) if args.quick else list(SCENARIOS)
    if args.scenarios:
        scenarios = [s.strip() for s in args.scenarios.split(";")]
        unknown = [s for s in scenarios if s not in SCENARIOS]
        if unknown:
            raise SystemExit(f"unknown scenario(s) {unknown}; known: {list(SCENARIOS)}")
    strategies = available_strategies()
    if args.strategies:
        strategies = [s.strip() for s in args.strategies.split(";")]
        unknown = [s for s in strategies if s not in available_strategies()]
        if unknown:
            raise SystemExit(f"unknown strategy(ies) {unknown}; available: {available_strategies()}")
    label = _device_label(device)
    print(f"device: {label}; {args.repeat} fresh process(es) per cell", flush=True)
    results: dict[str, dict[str, Any]] = {s: {} for s in scenarios}
    if args.fork:
        _import_peers()
    with _models(args, scenarios), concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
        cells = {(sc, st): pool.submit(run_cell, sc, st, args) for sc in scenarios for st in strategies}
        for scenario in scenarios:
            for strategy in strategies:
                cell = cells[scenario, strategy].result()
                results[scenario][strategy] = cell
                print(f"  {scenario:<38} {strategy:<28} returned {_frac(cell)}", flush=True)
            if args.json:  # after each scenario, so a long run that is stopped keeps what it measured
                Path(args.json).write_text(json.dumps(_data(args, device, label, strategies, results), indent=2))
    data = _data(args, device, label, strategies, results)
    table = markdown(data)
    print()
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=2))
    if args.markdown:
        Path(args.markdown).write_text(table)
    if args.plot:
        plot(data, args.plot)
    return 0


def _data(
    args: argparse.Namespace, device: torch.device, label: str, strategies: list[str], results: dict[str, Any]
) -> dict[str, Any]:
    shown = "--quick" if args.quick else f"--device {device.type} --repeat {args.repeat}"
    for option in ("scenarios", "strategies"):
        if getattr(args, option):
            shown += f" --{option} '{getattr(args, option)}'"
    return {
        "device": str(device),
        "device_label": label,
        "date": datetime.date.today().isoformat(),
        "repeat": args.repeat,
        "command": f".venv/bin/python benchmarks/reclaim.py {shown}".strip(),
        "strategies": strategies,
        "code": {name: STRATEGIES[name][1] for name in strategies},
        "results": {scenario: cells for scenario, cells in results.items() if cells},
    }


if __name__ == "__main__":
    raise SystemExit(main())
