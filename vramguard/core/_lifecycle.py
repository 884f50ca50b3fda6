"""A session's entry and exit: registering the run, the census, the ordered release, the report.

The session object (:mod:`vramguard.core._session`) is the API; these are its mechanics."""

from __future__ import annotations

import logging
import time
import weakref
from typing import Any

import torch

from vramguard.core import _collect, _hooks, _release
from vramguard.core._history import record_history as _history
from vramguard.core._leak_figure import HOST_NOISE_FLOOR_BYTES, allocator_leak
from vramguard.core._options import SearchBounds, SessionOptions
from vramguard.core._policy import add_note, enforce
from vramguard.core._records import Leak, OrderViolation, SessionReport, Timeline, build
from vramguard.core._run import (
    _active,
    _active_lock,
    _enter_host_peak,
    _exit_host_peak,
    _fold_host_hwm,
    _max,
    _owner,
    _Run,
    device_key,
    reset_host_peak,
)
from vramguard.core._sampler import SAMPLER, Subscription
from vramguard.core._sizes import format_size
from vramguard.core._tensors import storage_bytes
from vramguard.probes import (
    MemorySnapshot,
    is_host,
    malloc_trim,
    read_resident_peak,
    reset_peak,
    resident_peak_resettable,
    seed_workspaces,
    take,
    take_host_and_peak,
)

_log = logging.getLogger("vramguard")



_watched: dict[weakref.ref[Any], _Run] = {}
"""The active runs by a weak reference to their session object."""
_abandoned: list[weakref.ref[Any]] = []
"""Weak references whose session object died while its run was still registered: a generator
dropped inside its block, a block whose exit itself failed for want of stack (``RecursionError``
in a decorated recursive function). The weakref's callback is this list's C-level ``append``:
it runs no Python code, so it works at any stack depth and never raises."""


def sweep_abandoned() -> None:
    """Take every run whose session object died out of everything process-wide (the registry,
    the sampler, the listeners, the census's epoch and hooks). Runs at each entry and exit."""
    while _abandoned:
        try:
            ref = _abandoned.pop()
        except IndexError:  # another thread took the last one
            return
        run = _watched.pop(ref, None)
        if run is not None:
            detach(run)
            if run.census is not None:
                run.census.abort()


def start(options: SessionOptions, name: str, owner: object) -> _Run:
    """Enter: register the run, reset the peaks, start the census and the sampler. A failed
    entry leaves nothing behind. ``owner`` is the object whose death abandons the run (the
    session object: see :func:`sweep_abandoned`)."""
    dev = options.device
    host = is_host(dev)
    key = device_key(dev)
    me = _owner()
    record = options.sample_every_s is not None
    subscription = None
    # The host's peak is the kernel's resident high-water mark where it can be reset; the sampler
    # (a thread reading malloc every 5 ms: 0.8 ms of a 19 ms inference step) then runs only for a
    # timeline. Where the mark cannot be reset, the sampler is the peak.
    if record or (host and not resident_peak_resettable()):
        subscription = Subscription(dev, options.sample_interval_s, record, nvml=record)
    if host and options.max_peak_bytes is not None:
        # A limit wants every byte the block touches: free pages the process still holds would
        # take allocations without raising the resident mark. Trimmed only for limited sessions:
        # at every step of a loop the page faults it causes cost more than the session.
        malloc_trim()
    if not host and not options.census:
        seed_workspaces(dev)  # once per device: which workspace-sized blocks predate every session
    # The host's resident high-water mark is reset just before the entry reading, whose resident
    # set is then where the block's spike starts (the reading is statm's; no second read).
    host_reset = host and reset_host_peak(dev)
    before = take(dev, nvml=True)
    run = _Run(name, dev, me, time.monotonic(), before, subscription)
    if host_reset:
        rss = before.rss_bytes
        run.host_rss_entry_bytes = rss if rss is not None else read_resident_peak().rss_bytes
    sweep_abandoned()  # before the registry is read: a dead session is nobody's concurrent block
    run.session_ref = weakref.ref(owner, _abandoned.append)
    _watched[run.session_ref] = run
    with _active_lock:
        others = _active.setdefault(key, [])
        for other in others:
            # Fold everyone's peak so far before the reset below wipes it.
            other.fold_peak(before.peak_allocated_bytes, before.peak_reserved_bytes)
            if other.owner != me:
                other.concurrent = run.concurrent = True
        others.append(run)
    try:
        # torch's peak counters are process-wide: a session resets them at entry (and so
        # does every nested one); max_memory_allocated() read elsewhere sees the reset.
        reset_peak(dev)
        # The run's own floors start at the entry's figures (nothing has folded into them yet).
        run.peak_floor_allocated, run.peak_floor_reserved = before.allocated_bytes, before.reserved_bytes
        if options.census:
            run.census = _start_census(dev, options.strict, options.bounds)
            if host_reset and run.census.took_inventory:
                _enter_host_peak(run)  # again, after the census's heap scan: its lists are not the block's
        if subscription is not None:
            SAMPLER.subscribe(subscription)
        if record:
            # Timeline marks for the block's empty_cache calls (the release's own are release:*).
            def on_empty_cache(device: torch.device, depth: int) -> None:
                if device == dev:
                    run.mark("empty_cache")

            run.listener = on_empty_cache
            _hooks.empty_cache_listeners.append(on_empty_cache)
        if options.record_history:
            _history(True)
            run.history_on = True
        run.mark("enter")
    except BaseException:
        # A failed entry leaves nothing behind: no registry entry, listener, sampler or census.
        detach(run)
        if run.census is not None:
            run.census.abort()
        raise
    return run


def finish(options: SessionOptions, run: _Run, exc: BaseException | None) -> SessionReport | None:
    """Exit: measure and release; the report, or None when measuring failed inside a block that
    raised (its own exception then carries a note). The block's own exception is never replaced."""
    try:
        return measure_and_release(options, run, exc)
    except BaseException as failure:
        # Whatever failed (a device error in synchronize, an interrupt), nothing stays
        # registered, and the block's own exception is never replaced by an error of ours; a
        # Ctrl-C (or SystemExit) is the user's, and always comes through.
        detach(run)
        if run.census is not None:
            run.census.abort()
        _hooks.take_interrupt()  # superseded by what is raised now
        if exc is None or not isinstance(failure, Exception):
            raise
        problem = f"{type(failure).__name__}: {failure}"
        add_note(exc, f"vramguard could not measure or release the failed block: {problem}")
        return None


def conclude(options: SessionOptions, report: SessionReport, exc: BaseException | None) -> None:
    """After the report is published: a deferred Ctrl-C, the logger and listeners, then the
    limits (a block that raised is never judged: its report goes on its exception as a note)."""
    sweep_abandoned()
    interrupt = _hooks.take_interrupt()
    if interrupt is not None and interrupt is not exc:
        # A Ctrl-C that landed in one of the census's gc callbacks during the block or its
        # release (Python drops exceptions there): raised now, the block's exception as context.
        if exc is not None and interrupt.__context__ is None:
            interrupt.__context__ = exc
        raise interrupt
    _announce(options, report)
    if exc is not None:
        # Never swallow or replace the block's exception: attach the report to it.
        add_note(exc, f"vramguard report for the failed block:\n{report}")
        return
    enforce(options, report)


def summary_line(report: SessionReport) -> str:
    """One line for the ``vramguard`` logger: the session, its peak, what came back, what leaked."""
    raised = f", raised {report.raised}" if report.raised else ""
    return (
        f"session {report.name!r} on {report.device}: peak {format_size(report.peak_increase_bytes, signed=True)}, "
        f"reclaimed {format_size(report.reclaimed_bytes)}, leaked {format_size(report.leaked_bytes)} "
        f"in {report.duration_s * 1000:.1f} ms{raised}"
    )


def _announce(options: SessionOptions, report: SessionReport) -> None:
    """Tell the ``vramguard`` logger (info: the summary; warning: a leak above the tolerance, with
    its holders, unless leaks="ignore") and the report listeners (the metrics). A listener that
    raises is logged, never allowed to break the user's block."""
    if _log.isEnabledFor(logging.INFO):
        _log.info(summary_line(report))
    leaked = report.leaked_bytes or 0
    if options.leaks != "ignore" and leaked > options.leak_tolerance_bytes and _log.isEnabledFor(logging.WARNING):
        held = "; ".join(str(leak) for leak in report.leaks[:5]) or "no tensor named (census off)"
        _log.warning("session %r leaked %s: %s", report.name, format_size(leaked), held)
    for listener in tuple(_hooks.report_listeners):
        try:
            listener(report)
        except Exception:
            _log.exception("a vramguard report listener failed")


def detach(run: _Run) -> tuple[bool, Any]:
    """Take the run out of everything process-wide; idempotent. Returns whether another
    owner was active on the device, and the memory history if this run had it on."""
    if run.listener is not None:
        if run.listener in _hooks.empty_cache_listeners:
            _hooks.empty_cache_listeners.remove(run.listener)
        run.listener = None
    history = None
    if run.history_on:
        run.history_on = False
        history = _history(False)
    subscription = run.subscription
    if subscription is not None:
        SAMPLER.unsubscribe(subscription, join=subscription.record)
    with _active_lock:
        runs = _active.get(device_key(run.device), [])
        if run in runs:
            runs.remove(run)
        concurrent = run.concurrent or any(other.owner != run.owner for other in runs)
    if run.session_ref is not None:
        # Last: a detach that failed part-way (no stack left) is finished by sweep_abandoned.
        _watched.pop(run.session_ref, None)
        run.session_ref = None
    return concurrent, history


def measure_and_release(options: SessionOptions, run: _Run, exc: BaseException | None) -> SessionReport:
    """The exit reading, the census's look, the ordered release and the report."""
    dev = run.device
    host = is_host(dev)
    run.mark("exit")
    if run.listener is not None:
        _hooks.empty_cache_listeners.remove(run.listener)
        run.listener = None
    # The block's end, and its resident peak, before the census and the release run.
    if run.at_exit is None and host and run.host_rss_entry_bytes is not None:
        at_exit, hwm = take_host_and_peak()  # both from one read of /proc
        run.host_hwm_floor_bytes = _max(run.host_hwm_floor_bytes, hwm)
    else:
        at_exit = run.at_exit if run.at_exit is not None else take(dev, nvml=False)
        _fold_host_hwm([run])
    census = run.census
    if census is not None:
        census.stop(run.kept)
    evicted: list[str] = []
    owned_refs: list[tuple[str, weakref.ref[Any]]] = []

    def drop_owned() -> str:
        count = len(run.owned)
        for obj, evict in run.owned:
            if evict:
                assert isinstance(obj, torch.nn.Module)
                evicted.append(_release.evict_module(obj, dev))
            try:
                owned_refs.append((type(obj).__name__, weakref.ref(obj)))
            except TypeError:
                pass  # not weak-referenceable (a list, a dict): cannot be checked afterwards
        run.owned.clear()
        return f"{count} owned reference(s) dropped"

    drop = drop_owned if run.owned else _nothing_owned

    if options.release:
        if census is not None:
            collect = _collect.census_policy(census, run.kept)
        else:
            floor = HOST_NOISE_FLOOR_BYTES if host else 0
            collect = _collect.allocator_policy(dev, run.before, run.kept, floor)
        # A block that handed the session something to own (a model, a pipeline) is releasing
        # it for good: the host heap is always trimmed. Only blocks that own nothing (a step of
        # an inference loop, measured) trim past the floor, so a loop does not pay for a trim
        # and the faults after it at every step.
        # On CUDA the same holds for emptying the cache (the cudaFree now and the cudaMalloc at
        # the next step): only past a floor of cache growth since the block's entry.
        floor_bytes = 0 if run.owned or run.owns_for_good else _release.empty_floor_bytes(dev)
        steps, after = _release.run_release(
            dev,
            drop,
            start=at_exit,
            mark=None if run.marks is None else run.mark,
            collect=collect,
            trim_floor_bytes=floor_bytes,
            entry=run.before,
        )
    else:
        drop()
        # Nothing was released: on the host the exit reading is the final one (NVML is CUDA only).
        steps, after = (), at_exit if host else take(dev, nvml=True)
    concurrent, history = detach(run)
    subscription = run.subscription
    peak_allocated = _max(
        run.peak_floor_allocated,
        at_exit.peak_allocated_bytes,
        at_exit.allocated_bytes,
        subscription.peak_allocated_bytes if subscription else None,
    )
    peak_reserved = _max(
        run.peak_floor_reserved,
        at_exit.peak_reserved_bytes,
        at_exit.reserved_bytes,
        subscription.peak_reserved_bytes if subscription else None,
    )
    peak_allocated, peak_reserved, host_note = _exit_host_peak(
        run, peak_allocated, peak_reserved, options.sample_interval_s
    )
    key = device_key(dev)
    if _active.get(key):  # read without the lock first: most sessions have none beside them
        with _active_lock:
            for other in _active.get(key, []):
                other.fold_peak(peak_allocated, peak_reserved)
    kept_bytes = storage_bytes(run.kept, dev) if run.kept else 0
    notes: list[str] = [*run.steps, *after.notes]
    if host_note is not None:
        notes.append(host_note)
    leaks: tuple[Leak, ...] = ()
    violations: tuple[OrderViolation, ...] = ()
    leaked: int | None
    cycles: tuple[str, ...] = ()
    if census is not None:
        notes += _owned_notes(census, owned_refs, run.kept)
        leaks, violations = census.finish(run.kept)
        cycles = census.cycles
        notes += census.unattributed
        leaked = sum(leak.nbytes for leak in leaks)
        if host:
            notes += _unattributed_host(run.before, after, kept_bytes + leaked)
    else:
        figure = allocator_leak(dev, run.before, after, kept_bytes)
        leaked = figure.leaked_bytes
        notes += figure.notes
    run.kept.clear()
    timeline = None
    if subscription is not None and subscription.record:
        # The last sample is the final figures, stamped now: after a release whose last steps read
        # nothing, the reading is older than their marks, and a timeline must end after them.
        subscription.close(time.monotonic(), after.allocated_bytes, after.reserved_bytes, after.process_used_bytes)
        timeline = Timeline(subscription.interval_s, tuple(subscription.samples), tuple(run.marks or ()))
    return build(
        SessionReport,
        name=run.name,
        device=key,
        before=run.before,
        at_exit=at_exit,
        after=after,
        peak_allocated_bytes=peak_allocated,
        peak_reserved_bytes=peak_reserved,
        kept_bytes=kept_bytes,
        leaked_bytes=leaked,
        release_steps=steps,
        duration_s=time.monotonic() - run.started_s,
        released=options.release,
        concurrent=concurrent,
        evicted=tuple(evicted),
        leaks=leaks,
        order_violations=violations,
        timeline=timeline,
        raised=None if exc is None else type(exc).__name__,
        notes=tuple(notes),
        memory_history=history,
        cycles=cycles,
    )


_NOTHING_DROPPED = _release.Skipped("")


def _nothing_owned() -> str:
    """The release's first step for a block that handed the session nothing to own."""
    return _NOTHING_DROPPED


def _owned_notes(census: Any, refs: list[tuple[str, weakref.ref[Any]]], kept: list[object]) -> list[str]:
    """A line per owned object still alive after the release, naming who holds it: the session
    dropped only its own reference."""
    alive = [(name, obj) for name, ref in refs if (obj := ref()) is not None]
    if not alive:
        return []
    holders = census.holders_of([obj for _, obj in alive], kept)
    notes = []
    for (name, _), paths in zip(alive, holders, strict=True):
        where = f"held by {paths[0]}" if paths else "still referenced"
        fix = "del it, or own(..., evict=True)" if name != "Tensor" else "del it"
        notes.append(f"owned {name} still {where}: {fix}")
    del alive
    return notes


def _unattributed_host(before: MemorySnapshot, after: MemorySnapshot, accounted_bytes: int) -> list[str]:
    """A line when malloc holds clearly more after the release than at entry, beyond the kept
    and leaked storages: memory the census cannot see on the host (gradients backward() wrote
    into parameters older than the block, older tensors given new storage, memory outside
    torch). On CUDA the allocator's block diff finds those; the host has no block list."""
    if before.allocated_bytes is None or after.allocated_bytes is None:
        return []
    extra = after.allocated_bytes - before.allocated_bytes - accounted_bytes
    if extra <= HOST_NOISE_FLOOR_BYTES:
        return []
    return [
        f"host malloc holds {format_size(extra)} more than at entry that no tensor created in the block "
        "accounts for (e.g. gradients written into parameters older than the block: zero_grad(set_to_none=True))"
    ]


def _start_census(device: torch.device, strict: bool, bounds: SearchBounds) -> Any:
    """Start the census of tensors created in the block. Imported here, not at the top: the
    census sits beside the core, and a session with ``census=False`` never loads it."""
    global _census_type
    if _census_type is None:
        from vramguard.census import Census

        _census_type = Census
    census = _census_type(device, strict=strict, bounds=bounds)
    census.start()
    return census


_census_type: Any = None
"""The census class, imported by the first session with a census (an import statement costs
a microsecond at every session)."""
