"""How much memory each release strategy gives back, every scenario against every strategy, in one run.

    .venv/bin/python benchmarks/reclaim.py [--device cpu|cuda] [--repeat 3] [--scenarios 'a;b'] [--json out.json]
        [--markdown out.md] [--quick]

Every (scenario, strategy) cell runs ``--repeat`` times, each time in a fresh child process that
first imports every peer (accelerate, transformers, vramguard's ASR pipeline: an import is not a
leak), runs one warm-up cycle of the strategy measured, whatever it left then dropped, collected and
trimmed (lazy one-time caches, and the strategy's own code loaded on first use, are not a leak
either), and then measures: the level before loading, after loading and running, and after the strategy's
release. The objects live on an application object ``app`` (as whisper-plus's pipeline holds its
models); the strategies are what users write today, verbatim, against vramguard.

Per cell: the fraction of the reclaimable memory that came back (1.0 = the level before loading;
reserved memory on CUDA; on the host the resident set, anonymous memory and mapped files, since
transformers maps a safetensors checkpoint rather than copying it), the bytes still cached (reserved −
allocated), the bytes still referenced (allocated above the level before loading), the release
time, and whether the strategy told the user what stayed and why. Each figure is the median of
the repetitions, with the min and max. On the host, "empty_cache" is ``vramguard.empty_cache("cpu")``
(``malloc_trim(0)``), the closest thing to the CUDA allocator's cache; CPU figures say nothing about
a GPU.

On CUDA (``--device cuda``) every cell is also read through NVML: this process's device memory
(``MemorySnapshot.process_used_bytes``: torch's reserved bytes plus the CUDA context and whatever
else the driver holds for the process) beside torch's reserved bytes, each with its own fraction.
Every child there is a new interpreter: a forked child cannot use CUDA once its parent has
initialised it, and spawning keeps that from depending on anything the parent or an import of
it does (accelerate and transformers 5 did not, on the host). ``--quick`` on CUDA measures the plain
model and the reference cycle, six children at a time (each reads its own process only). The
GPU's name and the torch and CUDA versions are read in the children, which alone touch CUDA. A
scenario that needs pyannote.audio is skipped, with a line saying so, where it is not installed.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from asr_memory import write_clip
from bench_env import environment, label, resolve
from reclaim_cases import (
    CLIP,
    CLIP_S,
    NEEDS_MODELS,
    QUICK_SCENARIOS,
    SCENARIOS,
    STRATEGIES,
    Env,
    available_strategies,
)
from reclaim_tables import fraction_text, markdown, plot, summarise

import vramguard

# --- The child: one measured cell ------------------------------------------------------------


def _import_peers(scenarios: Sequence[str] = ()) -> None:
    """Every peer the run compares, imported before any measurement (an import is not a leak),
    and transformers where the run has a model scenario: imported once in the parent, every
    forked child starts with it instead of paying seconds for each cell. Not pyannote.audio: its
    import starts a telemetry thread, and a process with threads must not fork (the children
    import it themselves). The warm-up cycle loads whatever the imports leave lazy."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import accelerate.utils  # noqa: F401

        if NEEDS_MODELS.intersection(scenarios):
            import transformers  # noqa: F401


def on_main_arena() -> bool | None:
    """Whether this thread allocates from glibc's main arena (a fresh chunk below the program
    break); None off glibc. ``malloc_trim(0)`` returns the top of the main arena only: a thread
    arena's top chunk (up to the trim threshold, 64 MiB) stays resident after any release."""
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        malloc, free, sbrk = libc.malloc, libc.free, libc.sbrk
    except (OSError, AttributeError):
        return None
    malloc.restype, malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    sbrk.restype, sbrk.argtypes = ctypes.c_void_p, [ctypes.c_ssize_t]
    free.restype, free.argtypes = None, [ctypes.c_void_p]
    chunk, brk = malloc(64), sbrk(0)
    free(chunk)
    return None if chunk is None or brk is None else bool(chunk < brk)


def child(scenario: str, strategy: str, env: Env) -> dict[str, Any]:
    _import_peers()
    build = SCENARIOS[scenario]
    run, _ = STRATEGIES[strategy]
    # Warm-up: one cycle of the strategy measured, then whatever it left dropped, collected and
    # trimmed, so one-time lazy allocations (kernels, thread pools, modules loaded on first use,
    # the strategy's own code: park's first use loads parking's modules) are counted by no one.
    left, _ = run(lambda: build(env), env)
    del left
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
    measured = {
        "before": before.to_dict(),
        "loaded": loaded.to_dict(),
        "after": after.to_dict(),
        "release_s": took,
        "told": told,
        "device": str(env.device),
        "main_arena": on_main_arena(),
    }
    if env.device.type == "cuda":  # read after the measurement: it names the GPU this child used
        measured["environment"] = environment(env.device)
    return measured


# --- The parent: run every cell, summarise -----------------------------------------------------


class _Run:
    """One measurement in flight: a child process writing its JSON line to ``out``."""

    def __init__(self, cell: tuple[str, str], out: Path, pid: int | None, popen: subprocess.Popen[bytes] | None):
        self.cell, self.out, self.pid, self.popen = cell, out, pid, popen

    def poll(self) -> int | None:
        """The child's exit code once it has ended, else None (never blocks)."""
        if self.popen is not None:
            return self.popen.poll()
        assert self.pid is not None
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        return None if pid == 0 else os.waitstatus_to_exitcode(status)

    def result(self, code: int) -> dict[str, Any]:
        text = self.out.read_text() if self.out.exists() else ""
        errors = self.out.with_suffix(".err")
        if code == 0 and text.strip():
            parsed: dict[str, Any] = json.loads(text.strip().splitlines()[-1])
            return parsed
        detail = errors.read_text()[-2000:] if errors.exists() else ""
        return {"error": (text.strip() or f"exit status {code}") + ("\n" + detail if detail else "")}


def _start(scenario: str, strategy: str, args: argparse.Namespace, out: Path) -> _Run:
    """Start one measurement. Forked children are forked from the main thread, always: a child
    forked from a worker thread keeps that thread's glibc arena, whose top chunk ``malloc_trim(0)``
    never returns (glibc trims the top of the main arena only), which left 0–40 MiB resident at
    random in every strategy's cells (see docs/benchmarks.md)."""
    if args.fork:
        pid = os.fork()
        if pid == 0:  # the child: measure, write one JSON line, and leave without running atexit hooks
            code = 0
            try:
                env = Env(torch.device(args.device), Path(args.models) if args.models else None, args.small)
                line = json.dumps(child(scenario, strategy, env)) + "\n"
            except BaseException as error:
                line, code = json.dumps({"error": f"{type(error).__name__}: {error}"}) + "\n", 1
            out.write_text(line)
            os._exit(code)
        return _Run((scenario, strategy), out, pid, None)
    command = [sys.executable, __file__, "--child", scenario, strategy, "--device", args.device]
    if args.models:
        command += ["--models", str(args.models)]
    if args.small:
        command.append("--small")
    with out.open("wb") as stdout, out.with_suffix(".err").open("wb") as stderr:
        popen = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=os.environ.copy())
    return _Run((scenario, strategy), out, None, popen)


def run_cells(
    cells: Sequence[tuple[str, str]], args: argparse.Namespace, done: Callable[[tuple[str, str], dict[str, Any]], None]
) -> None:
    """Measure every cell ``args.repeat`` times, ``args.jobs`` children at once, all started from
    this (the main) thread; ``done`` gets each cell's summary once its last repetition ended."""
    queue = [(cell, i) for cell in cells for i in range(args.repeat)]
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {cell: [] for cell in cells}
    failed: set[tuple[str, str]] = set()
    running: list[_Run] = []
    with tempfile.TemporaryDirectory(prefix="vramguard-reclaim-runs-") as scratch:
        while queue or running:
            while queue and len(running) < max(1, args.jobs):
                (cell, i) = queue.pop(0)
                if cell not in failed:
                    running.append(_start(*cell, args, Path(scratch) / f"{len(queue)}-{i}.json"))
            ended = [(run, code) for run in running if (code := run.poll()) is not None]
            if not ended:
                time.sleep(0.02)
                continue
            for run, code in ended:
                running.remove(run)
                result = run.result(code)
                if "error" in result:
                    message = f"cell {run.cell[0]!r} x {run.cell[1]!r} failed: {result['error']}"
                    if args.strict:
                        for other in running:  # our own children, by their ids
                            if other.pid is not None:
                                os.kill(other.pid, 9)
                                os.waitpid(other.pid, 0)
                            elif other.popen is not None:
                                other.popen.kill()
                                other.popen.wait()
                        raise SystemExit(message)
                    print(message, file=sys.stderr)
                    failed.add(run.cell)
                    done(run.cell, {"error": result["error"]})
                    continue
                runs[run.cell].append(result)
                if len(runs[run.cell]) == args.repeat:
                    done(run.cell, summarise(runs[run.cell]))


def _device_label(device: torch.device, env: dict[str, Any] | None = None) -> str:
    """The table's device line. On CUDA it comes from a child's reading: this process does not
    touch CUDA. ``torch.cuda.get_device_name`` initialises it (torch/cuda/__init__.py:704, through
    ``get_device_properties``' ``_lazy_init()`` at :737), after which a forked child's first CUDA
    call raises "Cannot re-initialize CUDA in forked subprocess" (``_lazy_init``, :518)."""
    if device.type == "cuda":
        if env is None:
            return f"{device} (named by the children, which alone use CUDA)"
        return f"{label(env)}; torch's reserved bytes and NVML's figure for the process"
    return f"CPU (host: resident set, anonymous and mapped files; malloc), torch {torch.__version__}; no GPU figure"


ASR_SCENARIO = "ASR + diarization pipeline"


def pyannote_missing() -> str | None:
    """Why the ASR + diarization scenario cannot run here, or None."""
    try:
        found = importlib.util.find_spec("pyannote.audio") is not None
    except ModuleNotFoundError:
        found = False
    return None if found else "pyannote.audio is not installed (its diarizer needs it)"


@contextmanager
def _models(args: argparse.Namespace, scenarios: Sequence[str]) -> Iterator[None]:
    if args.models or not NEEDS_MODELS.intersection(scenarios):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="vramguard-reclaim-") as scratch:
        folder = Path(scratch)
        base = "transformers pipeline (whisper-base)" in scenarios
        command = [sys.executable, __file__, "--build-models", scratch, *(["--base"] if base else [])]
        # Built in a child: this process forks the measured ones and must stay as imports left it.
        subprocess.run(command + (["--diarizer"] if ASR_SCENARIO in scenarios else []), check=True)
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
    parser.add_argument("--quick", action="store_true", help="one small scenario (CUDA: two), one repetition")
    parser.add_argument("--strict", action="store_true", help="stop at the first failed cell")
    parser.add_argument("--jobs", type=int, help="cells measured at once, each in its own process (default: 1; "
                        "--quick on CUDA: 6)")  # fmt: skip
    parser.add_argument("--from-json", help="print the tables of a saved run (and --markdown them); measure nothing")
    parser.add_argument(
        "--spawn", dest="fork", action="store_false", default=hasattr(os, "fork"),
        help="start every child as a new interpreter (default where os.fork exists: fork this process, "
        "which has imported the peers and run nothing; on CUDA always a new interpreter)",
    )  # fmt: skip
    parser.add_argument("--json", help="write every figure to this file")
    parser.add_argument("--markdown", help="write the tables to this file")
    parser.add_argument("--plot", help="draw the fractions returned into this PNG")
    parser.add_argument("--models", help=argparse.SUPPRESS)
    parser.add_argument("--small", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--build-models", help=argparse.SUPPRESS)
    parser.add_argument("--base", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--diarizer", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    # Offline and quiet, in this process (which forks the measured children) and in spawned ones.
    os.environ.update({"PYANNOTE_METRICS_ENABLED": "false", "HF_HUB_OFFLINE": "1"})
    if args.build_models:
        from vramguard.asr.testing import build_tiny_diarizer, build_tiny_whisper

        folder = Path(args.build_models)
        build_tiny_whisper(folder / "whisper-tiny", size="tiny")
        if args.base:
            build_tiny_whisper(folder / "whisper-base", size="base")
        if args.diarizer:
            build_tiny_diarizer(folder / "diarizer", size="tiny")
        write_clip(folder / CLIP, CLIP_S)
        return 0
    device = resolve(args.device, "reclaim.py")
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
    cuda = device.type == "cuda"
    if cuda:
        args.fork = False
    if args.quick:
        args.repeat, args.small = 1, True
    if args.jobs is None:
        args.jobs = 6 if args.quick and cuda else 1
    if args.repeat < 1:
        raise SystemExit("--repeat must be at least 1")
    scenarios = list(QUICK_SCENARIOS) if args.quick else list(SCENARIOS)
    if args.quick and cuda:
        scenarios.append("reference cycle")  # where only a collection frees the model
    if args.scenarios:
        scenarios = [s.strip() for s in args.scenarios.split(";")]
        unknown = [s for s in scenarios if s not in SCENARIOS]
        if unknown:
            raise SystemExit(f"unknown scenario(s) {unknown}; known: {list(SCENARIOS)}")
    skipped: dict[str, str] = {}
    missing = pyannote_missing() if ASR_SCENARIO in scenarios else None
    if missing is not None:
        scenarios.remove(ASR_SCENARIO)
        skipped[ASR_SCENARIO] = missing
        print(f"scenario {ASR_SCENARIO!r} skipped: {missing}", flush=True)
    strategies = available_strategies()
    if args.strategies:
        strategies = [s.strip() for s in args.strategies.split(";")]
        unknown = [s for s in strategies if s not in available_strategies()]
        if unknown:
            raise SystemExit(f"unknown strategy(ies) {unknown}; available: {available_strategies()}")
    print(f"device: {_device_label(device)}; {args.repeat} fresh process(es) per cell", flush=True)
    results: dict[str, dict[str, Any]] = {s: {} for s in scenarios}
    order = [(sc, st) for sc in scenarios for st in strategies]
    finished: dict[tuple[str, str], dict[str, Any]] = {}
    seen: dict[str, Any] = {}

    def done(cell: tuple[str, str], summary: dict[str, Any]) -> None:
        """Print the cells in order as they end; save the JSON after each finished scenario, so a
        long run that is stopped keeps what it measured."""
        env = summary.pop("environment", None)
        if env is not None and "env" not in seen:
            seen["env"] = env
            print(f"device: {_device_label(device, env)}", flush=True)
        finished[cell] = summary
        while order and order[0] in finished:
            scenario, strategy = order.pop(0)
            results[scenario][strategy] = finished[scenario, strategy]
            print(f"  {scenario:<38} {strategy:<28} returned {fraction_text(results[scenario][strategy])}", flush=True)
            if args.json and (not order or order[0][0] != scenario):
                data = _data(args, device, seen.get("env"), strategies, results, skipped)
                Path(args.json).write_text(json.dumps(data, indent=2))

    if args.fork:
        _import_peers(scenarios)
    with _models(args, scenarios):
        run_cells([(sc, st) for sc in scenarios for st in strategies], args, done)
    data = _data(args, device, seen.get("env"), strategies, results, skipped)
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
    args: argparse.Namespace,
    device: torch.device,
    env: dict[str, Any] | None,
    strategies: list[str],
    results: dict[str, Any],
    skipped: dict[str, str],
) -> dict[str, Any]:
    shown = f"--device {device.type} " + ("--quick" if args.quick else f"--repeat {args.repeat}")
    if args.jobs > 1:
        shown += f" --jobs {args.jobs}"
    for option in ("scenarios", "strategies"):
        if getattr(args, option):
            shown += f" --{option} '{getattr(args, option)}'"
    data = {
        "device": str(device),
        "device_label": _device_label(device, env),
        "date": datetime.date.today().isoformat(),
        "repeat": args.repeat,
        "command": f".venv/bin/python benchmarks/reclaim.py {shown}".strip(),
        "strategies": strategies,
        "code": {name: STRATEGIES[name][1] for name in strategies},
        "results": {scenario: cells for scenario, cells in results.items() if cells},
    }
    if env is not None:
        data["environment"] = env
    if skipped:
        data["skipped"] = skipped
    return data


if __name__ == "__main__":
    raise SystemExit(main())
