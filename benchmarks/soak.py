"""A long-running process stays flat: many sessions, census on and off alternately, each loading a
small model, running it and releasing it; resident memory, threads, open files and live tensors
compared between the first and the last window of sessions.

    .venv/bin/python benchmarks/soak.py [--sessions 10000] [--window 1000] [--warmup 200] [--json out.json]

The warm-up sessions run first and are not counted: the first sessions of a process load
modules and fill caches once (see shared/host-memory.md). Resident memory is psutil's RSS after
each session; a window's figure is its median. tests/resilience/test_soak_flat.py runs a
reduced form (``VRAMGUARD_SOAK_SESSIONS`` sets its count).
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass

import psutil
import torch

import vramguard
from vramguard.census._scan import heap_tensors

MiB = 1024 * 1024


def _state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return _model().state_dict()


def _model() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 8))


def _saved() -> bytes:
    buffer = io.BytesIO()
    torch.save(_state_dict(), buffer)
    return buffer.getvalue()


SAVED = _saved()


def one_session(census: bool) -> None:
    """Load the small model from its saved bytes, run it, release it: nothing may survive."""
    with vramguard.gpu_session("soak", device="cpu", leaks="raise", census=census) as session:
        model = session.own(_model(), evict=True)
        model.load_state_dict(torch.load(io.BytesIO(SAVED), weights_only=True))
        with torch.no_grad():
            out = model(torch.randn(16, 64))
        assert out.shape == (16, 8)
        del model, out


ONE_OFF_OBJECTS = 8
"""Objects the last window may hold beyond the first: a cache made once, on first use (inside
pytest one appears). A session that left one object behind would add one per session."""


@dataclass(frozen=True)
class Window:
    """One window of sessions: medians and counts after its sessions."""

    first_session: int
    rss_median_bytes: int
    threads: int
    open_files: int
    live_tensors: int
    live_objects: int
    """gc-tracked objects after a collection: flat when sessions leave nothing behind."""
    duration_s: float


@dataclass(frozen=True)
class Soak:
    sessions: int
    window: int
    first: Window
    last: Window

    @property
    def rss_drift_bytes(self) -> int:
        return self.last.rss_median_bytes - self.first.rss_median_bytes

    def flat(self, max_drift_bytes: int = MiB) -> bool:
        f, last = self.first, self.last
        return (
            self.rss_drift_bytes <= max_drift_bytes
            and last.threads <= f.threads
            and last.open_files <= f.open_files
            and last.live_tensors <= f.live_tensors
            and last.live_objects <= f.live_objects + ONE_OFF_OBJECTS
        )

    def lines(self) -> list[str]:
        f, last = self.first, self.last
        per = (f.duration_s + last.duration_s) / (2 * self.window) * 1000
        return [
            f"{self.sessions} sessions (census on and off alternately), windows of {self.window}, on cpu",
            f"rss median: first window {f.rss_median_bytes / MiB:.2f} MiB, last {last.rss_median_bytes / MiB:.2f} MiB, "
            f"drift {self.rss_drift_bytes / MiB:+.3f} MiB (bound +1 MiB); live objects {f.live_objects:,} -> "
            f"{last.live_objects:,} ({last.live_objects - f.live_objects:+,})",
            f"threads {f.threads} -> {last.threads}; open files {f.open_files} -> {last.open_files}; "
            f"live tensors {f.live_tensors} -> {last.live_tensors}",
            f"{per:.2f} ms per session; flat: {self.flat()}",
        ]


def _window(process: psutil.Process, start: int, count: int) -> Window:
    began = time.perf_counter()
    rss: list[int] = []
    for index in range(start, start + count):
        one_session(census=index % 2 == 0)
        rss.append(process.memory_info().rss)
    duration = time.perf_counter() - began
    gc.collect()
    return Window(
        first_session=start,
        rss_median_bytes=int(statistics.median(rss)),
        threads=process.num_threads(),
        open_files=len(process.open_files()),
        live_tensors=len(heap_tensors()),
        live_objects=len(gc.get_objects()),
        duration_s=duration,
    )


def soak(sessions: int, window: int, warmup: int) -> Soak:
    """Run ``warmup`` uncounted sessions, then ``sessions``; the first and last ``window`` compared."""
    if not 0 < window <= sessions // 2:
        raise ValueError(f"window={window} must be in (0, sessions // 2 = {sessions // 2}]")
    process = psutil.Process()
    for index in range(warmup):
        one_session(census=index % 2 == 0)
    first = _window(process, 0, window)
    for index in range(window, sessions - window):
        one_session(census=index % 2 == 0)
    last = _window(process, sessions - window, window)
    return Soak(sessions, window, first, last)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--window", type=int, default=1_000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    if not 0 < args.window <= args.sessions // 2:
        parser.error(f"--window {args.window} must be from 1 to --sessions // 2 ({args.sessions // 2})")
    if args.warmup < 0:
        parser.error(f"--warmup {args.warmup} must be 0 or more")
    result = soak(args.sessions, args.window, args.warmup)
    for line in result.lines():
        print(line)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({**asdict(result), "rss_drift_bytes": result.rss_drift_bytes, "flat": result.flat()}, out)
    return 0 if result.flat() else 1


if __name__ == "__main__":
    sys.exit(main())
