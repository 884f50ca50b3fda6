"""How much memory each release strategy gives back, every scenario against every strategy, in one run.

    .venv/bin/python benchmarks/reclaim.py [--device cpu|cuda] [--repeat 3] [--scenarios a,b] [--json out.json]
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
import dataclasses
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
import wave
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

import vramguard

ATTRS = ("model", "out", "extra")


class App:
    """The user's application object: a model, its last output and whatever else the scenario keeps."""

    def __init__(self, device: torch.device) -> None:
        self.device = device  # a torch.device, never the string "cuda" whisper-plus's guard compares with
        self.model: Any = None
        self.out: Any = None
        self.extra: Any = None


@dataclasses.dataclass
class Env:
    """What a child knows: the device, where the models were built, and the clock of the release."""

    device: torch.device
    models: Path | None
    small: bool
    loaded_snapshot: vramguard.MemorySnapshot | None = None
    release_started_s: float = 0.0

    def loaded(self) -> None:
        """Called by a strategy once the workload is loaded and has run: the release starts now."""
        gc.disable()  # no automatic collection between this reading and the strategy's own steps
        self.loaded_snapshot = vramguard.snapshot(self.device)
        self.release_started_s = time.perf_counter()

    def empty_cache(self) -> None:
        """The user's ``torch.cuda.empty_cache()`` on this device (``malloc_trim(0)`` on the host)."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        else:
            vramguard.empty_cache(self.device)


# --- Scenarios: build an App on the device, loaded and run once ----------------------------------


def _encoder(env: Env) -> torch.nn.Module:
    width, layers = (128, 2) if env.small else (512, 6)
    layer = torch.nn.TransformerEncoderLayer(
        d_model=width, nhead=8, dim_feedforward=4 * width, batch_first=True, dropout=0.0
    )
    model = torch.nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)
    return model.to(env.device)


def _batch(env: Env, model: torch.nn.Module) -> torch.Tensor:
    width = next(model.parameters()).shape[-1]
    return torch.randn(8, 128, width, device=env.device)


def plain(env: Env) -> App:
    """A model and its output."""
    app = App(env.device)
    app.model = _encoder(env)
    with torch.inference_mode():
        app.out = app.model(_batch(env, app.model))
    return app


def cycle(env: Env) -> App:
    """A model caught in a reference cycle: only ``gc.collect()`` frees it once dropped."""
    app = plain(env)
    app.model.__dict__["owner_ref"] = app.model  # a module that refers to itself (pytorch #50185)
    return app


def hook(env: Env) -> App:
    """A model held by a forward-hook closure that keeps the last activations on the model."""
    app = App(env.device)
    model = _encoder(env)

    def keep_activation(module: torch.nn.Module, inputs: Any, output: Any) -> None:
        model.last_activation = output  # the closure holds ``model``: model -> hooks -> closure -> model

    model.register_forward_hook(keep_activation)
    with torch.inference_mode():
        app.out = model(_batch(env, model))
    app.model = model
    return app


def traceback_(env: Env) -> App:
    """A failed forward pass kept as ``app.extra``: its traceback's frames hold the activations
    (and the frame holding ``app`` closes a cycle through it)."""
    app = App(env.device)
    app.model = _encoder(env)

    def forward(model: torch.nn.Module, x: torch.Tensor) -> None:
        hidden = model(x)
        hidden2 = hidden * 2
        raise RuntimeError(f"shape check failed after {tuple(hidden2.shape)}")

    try:
        with torch.inference_mode():
            forward(app.model, _batch(env, app.model))
    except RuntimeError as error:
        app.extra = error
    return app


def autograd(env: Env) -> App:
    """An output that keeps its autograd graph (the saved activations of a training forward)."""
    app = App(env.device)
    app.model = _encoder(env).train()
    app.out = app.model(_batch(env, app.model)).sum()
    return app


def object_heavy(env: Env) -> App:
    """A model beside a tokenizer-like heap of small Python objects: a vocabulary and merge table."""
    app = plain(env)
    count = 20_000 if env.small else 400_000
    vocab = {f"tok{i:07d}" + "ab" * (i % 5): i for i in range(count)}
    merges = [(f"m{i}", f"n{i}", i) for i in range(count)]
    app.extra = (vocab, merges)
    return app


def _audio() -> dict[str, Any]:
    import numpy as np

    from vramguard.asr.testing import sample_audio_path

    with wave.open(str(sample_audio_path())) as handle:
        frames = handle.readframes(handle.getnframes())
        rate = handle.getframerate()
    return {"raw": np.frombuffer(frames, dtype=np.int16).astype(np.float32) / 32768.0, "sampling_rate": rate}


def _transformers_pipeline(env: Env, size: str) -> App:
    import transformers

    assert env.models is not None
    app = App(env.device)
    app.model = transformers.pipeline("automatic-speech-recognition", model=str(env.models / f"whisper-{size}"),
                                      device=env.device)  # fmt: skip
    app.out = app.model(
        _audio(), return_timestamps=True, chunk_length_s=30, batch_size=1, generate_kwargs={"max_new_tokens": 8}
    )
    return app


def whisper_tiny(env: Env) -> App:
    """A transformers ASR pipeline with a tiny Whisper."""
    return _transformers_pipeline(env, "tiny")


def whisper_base(env: Env) -> App:
    """A transformers ASR pipeline with whisper-base's architecture (74M parameters)."""
    return _transformers_pipeline(env, "base")


def asr(env: Env) -> App:
    """vramguard's ASR + diarization pipeline (tiny Whisper, tiny pyannote), resident."""
    from vramguard.asr import ASRDiarizationPipeline
    from vramguard.asr.testing import sample_audio_path

    assert env.models is not None
    app = App(env.device)
    app.model = ASRDiarizationPipeline.from_pretrained(
        env.models / "whisper-tiny", env.models / "diarizer", device=env.device, generate_kwargs={"max_new_tokens": 8}
    )
    app.out = app.model(sample_audio_path())
    return app


SCENARIOS: dict[str, Callable[[Env], App]] = {
    "plain model": plain,
    "reference cycle": cycle,
    "forward-hook closure": hook,
    "transformers pipeline (tiny Whisper)": whisper_tiny,
    "transformers pipeline (whisper-base)": whisper_base,
    "ASR + diarization pipeline": asr,
    "exception traceback": traceback_,
    "autograd graph": autograd,
    "object-heavy heap": object_heavy,
}
QUICK_SCENARIOS = ("plain model",)
NEEDS_MODELS = {"transformers pipeline (tiny Whisper)", "transformers pipeline (whisper-base)", "ASR + diarization pipeline"}


# --- Strategies: release ``app`` as users write it today ----------------------------------------
# Each returns the user's scope after the release (what the caller's names still hold, measured
# before it goes) and what the strategy told the user about what stayed (None: nothing).

Scope = dict[str, Any]
Outcome = tuple[Scope, str | None]


def bare_del(load: Callable[[], App], env: Env) -> Outcome:
    app = load()
    env.loaded()
    del app
    return {}, None


def whisper_plus_as_written(load: Callable[[], App], env: Env) -> Outcome:
    app = load()
    env.loaded()
    if app.device == "cuda":  # the maintainer's guard: never true, the class never sets that string
        env.empty_cache()
    app.model = app.out = app.extra = None
    return {"app": app}, None


def whisper_plus_as_meant(load: Callable[[], App], env: Env) -> Outcome:
    app = load()
    env.loaded()
    env.empty_cache()  # first, while the attributes still hold everything
    app.model = app.out = app.extra = None
    return {"app": app}, None


def whisperx_readme(load: Callable[[], App], env: Env) -> Outcome:
    app = load()
    env.loaded()
    gc.collect()
    env.empty_cache()
    del app
    return {}, None


def _release_memory(*objects: Any) -> Any:
    from accelerate.utils import release_memory

    return release_memory(*objects)


def accelerate_as_copied(load: Callable[[], App], env: Env) -> Outcome:
    app = load()
    env.loaded()
    _release_memory(app.model, app.out, app.extra)
    return {"app": app}, None


def accelerate_as_documented(load: Callable[[], App], env: Env) -> Outcome:
    app = load()
    env.loaded()
    app.model, app.out, app.extra = _release_memory(app.model, app.out, app.extra)
    return {"app": app}, None


def manual_order(load: Callable[[], App], env: Env) -> Outcome:
    app = load()
    env.loaded()
    del app
    gc.collect()
    env.empty_cache()
    return {}, None


def _told(report: vramguard.SessionReport | vramguard.ReleaseReport | None) -> str:
    if report is None:
        return "no report"
    if isinstance(report, vramguard.ReleaseReport):
        survivors = report.survivors
        return f"{len(survivors)} survivor(s) named" if survivors else "report: every object released"
    if report.leaks:
        holders = {leak.holders[0] for leak in report.leaks if leak.holders}
        return f"{len(report.leaks)} leak(s), {len(holders)} holder(s) named"
    return "report: nothing left" + (f"; {len(report.notes)} note(s)" if report.notes else "")


def vramguard_release(load: Callable[[], App], env: Env) -> Outcome:
    app = load()
    env.loaded()
    report = vramguard.release(app, attrs=ATTRS, device=env.device)
    return {"app": app}, _told(report)


def vramguard_session(load: Callable[[], App], env: Env) -> Outcome:
    with vramguard.gpu_session("bench", device=env.device, leaks="ignore") as session:
        app = session.own(load())
        env.loaded()
        del app
    return {}, _told(session.report)


def vramguard_park(load: Callable[[], App], env: Env) -> Outcome:
    park = getattr(vramguard, "park")
    app = load()
    env.loaded()
    # On the host, parking to host memory would move nothing: park to disk there.
    target = "cpu" if env.device.type == "cuda" else "disk"
    app.out = app.extra = None
    parked = park(app.model, to=target)
    gc.collect()
    env.empty_cache()
    return {"app": app, "parked": parked}, f"parked to {target} (restorable with wake)"


Strategy = Callable[[Callable[[], App], Env], Outcome]
STRATEGIES: dict[str, tuple[Strategy, str]] = {
    "bare del": (bare_del, "del app"),
    "whisper-plus, as written": (
        whisper_plus_as_written,
        'if self.device == "cuda": empty_cache()  (never true); self.model = ... = None',
    ),
    "whisper-plus, as meant": (whisper_plus_as_meant, "empty_cache(); self.model = ... = None"),
    "whisperX README": (whisperx_readme, "gc.collect(); empty_cache(); del app"),
    "accelerate, as copied": (accelerate_as_copied, "release_memory(app.model, app.out, app.extra)"),
    "accelerate, as documented": (
        accelerate_as_documented,
        "app.model, app.out, app.extra = release_memory(app.model, app.out, app.extra)",
    ),
    "manual order": (manual_order, "del app; gc.collect(); empty_cache()"),
    "vramguard.release": (vramguard_release, 'vramguard.release(app, attrs=("model", "out", "extra"))'),
    "vramguard session + own": (vramguard_session, "with gpu_session() as s: app = s.own(load()); ...; del app"),
    "vramguard park": (vramguard_park, 'app.out = app.extra = None; vramguard.park(app.model, to="cpu"|"disk")'),
}
VRAMGUARD = ("vramguard.release", "vramguard session + own", "vramguard park")


def available_strategies() -> list[str]:
    """Every strategy, less ``park`` where ``vramguard.park`` has not landed."""
    return [name for name in STRATEGIES if name != "vramguard park" or hasattr(vramguard, "park")]


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
        except BaseException as error:  # noqa: BLE001 - reported to the parent, which decides
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
        env = {**os.environ, "PYANNOTE_METRICS_ENABLED": "false", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
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
            took = "n/a" if ms["median"] is None else f"{ms['median'] * 1000:.0f} ({ms['min'] * 1000:.0f}–{ms['max'] * 1000:.0f})"
            told = cell["told"] or "no"
            lines.append(
                f"| {strategy} | {_frac(cell)} | {_mib_spread(cell, 'cached_bytes')} | "
                f"{_mib_spread(cell, 'referenced_bytes')} | {took} | {told} |"
            )
    return "\n".join(lines) + "\n"


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
    parser.add_argument("--scenarios", help="comma-separated scenario names (default: all)")
    parser.add_argument("--strategies", help="comma-separated strategy names (default: all)")
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
        table = markdown(json.loads(Path(args.from_json).read_text()))
        print(table)
        if args.markdown:
            Path(args.markdown).write_text(table)
        return 0
    if args.quick:
        args.repeat, args.small = 1, True
    if args.repeat < 1:
        raise SystemExit("--repeat must be at least 1")
    scenarios = list(QUICK_SCENARIOS) if args.quick else list(SCENARIOS)
    if args.scenarios:
        scenarios = [s.strip() for s in args.scenarios.split(",")]
        unknown = [s for s in scenarios if s not in SCENARIOS]
        if unknown:
            raise SystemExit(f"unknown scenario(s) {unknown}; known: {list(SCENARIOS)}")
    strategies = available_strategies()
    if args.strategies:
        strategies = [s.strip() for s in args.strategies.split(",")]
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
