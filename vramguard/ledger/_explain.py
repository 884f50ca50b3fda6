"""``vramguard.explain(device)``: where the process's memory on one device is, line by line."""

from __future__ import annotations

import time

import torch

from vramguard.census._holders import SearchBounds
from vramguard.ledger._attribute import Attribution, attribute
from vramguard.ledger._cuda import context_bytes, cuda_lines
from vramguard.ledger._host import Resident, host_lines, read_malloc
from vramguard.ledger._maps import Mapping, read_mappings
from vramguard.ledger._pymalloc import ArenaReading, read_arenas
from vramguard.ledger._records import LedgerLine, MemoryLedger
from vramguard.ledger._resident import Pymalloc, read_residency, survey
from vramguard.probes import read_blocks
from vramguard.probes._device import DeviceLike, resolve_device
from vramguard.probes._host import resident_bytes
from vramguard.probes._nvml import read_nvml
from vramguard.probes._torch import cuda_initialized, read_allocator
from vramguard.probes._workspaces import workspace_sizes


def explain(device: DeviceLike | None = None, *, bounds: SearchBounds | None = None) -> MemoryLedger:
    """Every byte the process holds on ``device`` now, each line with its holder, its role where
    it can be told, and what would return it; the lines add up to the total, the last one being
    the residual. ``device``: "cpu", "cuda", "cuda:N", an index, or None (the current CUDA
    device when there is one, else the host). Never creates a CUDA context or allocates device
    memory. Costs one pass over the heap; the holder search scans the heap again only for owners
    the program's own globals and live locals do not reach in a few steps (:mod:`._roots`).
    """
    resolved = resolve_device("auto" if device is None else device)
    taken = time.time()
    started = time.perf_counter()
    if resolved.type == "cuda":
        total, source, lines, notes = _cuda(resolved, bounds)
    else:
        total, source, lines, notes = _host(bounds)
    return MemoryLedger(
        device=str(resolved),
        total_bytes=total,
        total_source=source,
        lines=tuple(lines),
        taken_at_s=taken,
        duration_s=time.perf_counter() - started,
        notes=tuple(notes),
    )


def _search_notes(attribution: Attribution, bounds: SearchBounds | None) -> list[str]:
    if not attribution.unsearched:
        return []
    leaks = (bounds or SearchBounds()).leaks
    return [f"{attribution.unsearched} owners beyond the largest {leaks} were not searched (raise SearchBounds.leaks)"]


def _host(bounds: SearchBounds | None = None) -> tuple[int, str, list[LedgerLine], list[str]]:
    attribution = attribute(torch.device("cpu"), bounds)
    mappings = read_mappings()
    malloc = read_malloc()
    arenas = read_arenas()
    notes = _search_notes(attribution, bounds)
    if mappings is None:
        resident = resident_bytes()
        total = resident[0] if resident is not None else 0
        _, lines, more = host_lines(attribution, [], malloc, arenas)
        residual = lines.pop()
        lines.append(LedgerLine(residual.category, total - sum(x.nbytes for x in lines), residual.holder, "unknown"))
        notes.append("/proc/self/smaps not readable: no mapped files, code or stacks; the resident set from statm")
        return total, "the resident set (/proc/self/statm)", lines, notes + more
    total, lines, more = host_lines(attribution, mappings, malloc, arenas, _resident(mappings, arenas))
    return total, "the resident set (/proc/self/smaps)", lines, notes + more


def _resident(mappings: list[Mapping], arenas: ArenaReading | None) -> Resident:
    pages = read_residency(mappings)
    if pages is None:
        return Resident()
    geometry = None if arenas is None else Pymalloc.of_arena(arenas.arena_size_bytes)
    return Resident(pages, survey(pages, geometry))


def _cuda(device: torch.device, bounds: SearchBounds | None = None) -> tuple[int, str, list[LedgerLine], list[str]]:
    index = device.index if device.index is not None else 0
    initialised = cuda_initialized()
    # No tensor can live on a device torch never opened: no heap pass then.
    attribution = attribute(device, bounds) if initialised else Attribution((), (), 0, 0)
    reading = read_allocator(device)
    # One allocator snapshot for both: two would cost twice and could disagree.
    read = read_blocks(device)
    blocks, stranded = (None, None) if read is None else read
    nvml = read_nvml(index)
    reserved = reading.reserved_bytes
    context = None
    if nvml.process_used_bytes is not None and initialised:
        context = context_bytes(index, nvml.process_used_bytes, reserved if reserved is not None else 0)
    elif nvml.process_used_bytes is not None:
        context = 0  # torch opened no context: all NVML sees is another library's
    total, source, lines, notes = cuda_lines(
        attribution,
        blocks,
        allocated=reading.allocated_bytes,
        reserved=reserved,
        stranded=stranded,
        workspace_sizes=workspace_sizes(device),
        process_used=nvml.process_used_bytes,
        context=context,
    )
    if nvml.reason:
        notes.append(f"NVML: {nvml.reason}")
    return total, source, lines, _search_notes(attribution, bounds) + notes
