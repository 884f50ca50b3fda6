"""Reports built by hand, so the renderers' output is the same on every machine (imported by the tests)."""

from __future__ import annotations

from typing import Any

from vramguard import Leak, MemorySnapshot, ReleaseReport, ReleaseStep, SessionReport, Timeline

MIB = 2**20


def snap(allocated: int | None, reserved: int | None, t: float = 0.0) -> MemorySnapshot:
    return MemorySnapshot(device="cpu", time_s=t, allocated_bytes=allocated, reserved_bytes=reserved, rss_bytes=None)


STEPS = (
    ReleaseStep("drop", 0.0001, 64 * MIB, 0, "1 owned reference(s) dropped"),
    ReleaseStep("gc", 0.05, 0, 0, "12 unreachable objects"),
    ReleaseStep("malloc_trim", 0.002, 0, 96 * MIB, ""),
)


def session_report(**changes: Any) -> SessionReport:
    """A host session: 100 MiB before, 300 MiB at its peak, 64 MiB leaked with one holder."""
    fields: dict[str, Any] = {
        "name": "encode",
        "device": "cpu",
        "before": snap(100 * MIB, 150 * MIB),
        "at_exit": snap(228 * MIB, 310 * MIB),
        "after": snap(164 * MIB, 214 * MIB),
        "peak_allocated_bytes": 300 * MIB,
        "peak_reserved_bytes": 350 * MIB,
        "kept_bytes": 0,
        "leaked_bytes": 64 * MIB,
        "release_steps": STEPS,
        "duration_s": 0.25,
        "leaks": (Leak(64 * MIB, "float32 tensor [4096, 4096]", "encode.py:12", ("cache['last'] (dict)",)),),
        "notes": ("a note with [brackets]",),
    }
    fields.update(changes)
    return SessionReport(**fields)


MODEL = "global __main__.PIPE.model"


def model_leaks(count: int = 117) -> tuple[Leak, ...]:
    """A leaked model: one 1.5 MiB embedding and ``count - 1`` parameters of 128 KiB, all held by
    ``PIPE.model`` (117 make 16 MiB, as a Whisper model's 117 parameters would)."""
    embedding = Leak(
        3 * MIB // 2,
        "Parameter float32[768, 512]",
        None,
        (f"{MODEL}.embed_tokens.weight",),
        MODEL,
    )
    layers = tuple(
        Leak(
            128 * 1024,
            "Parameter float32[256, 128]",
            None,
            (f"{MODEL}.layers[{i}].fc1.weight",),
            MODEL,
        )
        for i in range(count - 1)
    )
    return (embedding, *layers)


CACHE_LEAK = Leak(
    MIB,
    "float32[512, 512] cpu",
    "cache.py:7",
    ("global __main__.CACHE['k'][0]",),
    "global __main__.CACHE",
)


def timeline(points: int = 40) -> Timeline:
    """A rise to 300 MiB, an empty_cache call, then the release."""
    samples = []
    for i in range(points):
        t = i * 0.01
        allocated = (100 + min(i, 20) * 10) * MIB if i < 30 else 164 * MIB
        samples.append((t, allocated, allocated + 50 * MIB, None))
    end = (points - 1) * 0.01
    marks = (
        (0.0, "enter"),
        (0.15, "empty_cache"),
        (end - 0.08, "exit"),
        (end - 0.08, "release:drop"),
        (end - 0.07, "release:gc"),
        (end - 0.02, "release:malloc_trim"),
    )
    return Timeline(0.01, tuple(samples), marks)


def release_report() -> ReleaseReport:
    return ReleaseReport(
        device="cpu",
        before=snap(228 * MIB, 310 * MIB),
        after=snap(164 * MIB, 214 * MIB),
        steps=STEPS,
        dropped=("Pipeline.model (Linear)",),
        survivors=("Pipeline.model (Linear): still referenced (1 other reference(s))",),
        duration_s=0.05,
    )
