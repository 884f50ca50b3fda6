"""The host's ledger: the resident set, line by line.

The resident set is the sum of ``Rss`` over ``/proc/self/smaps`` (see :mod:`._maps`). Its lines:

- **tensors**, one line per owner: the resident bytes of the CPU tensors' storages in anonymous
  memory (torch's CPU allocator takes them from malloc; a page never written is not resident,
  :mod:`._resident`); ``storage_bytes`` keeps the storages' own bytes;
- **mapped files**: a file mapped with its tensors (``safe_open``, ``torch.load(mmap=True)``: the
  storages point into a file-backed mapping), one line per file, its resident bytes, held by
  the owners of those tensors; other data files in one line; shared libraries and the
  interpreter's code in one line;
- **malloc in use, not tensors**: the resident part of what malloc handed out, less the
  tensors' (C and C++ libraries, Python objects over 512 bytes): the bytes in use in its
  arenas (``uordblks``, less the tensors' pages there never written) plus the resident pages
  of its mmapped chunks (found by :mod:`._resident`; ``hblkhd`` counts them whole, touched or
  not);
- **malloc free, resident**: the resident pages of malloc's arenas (``[heap]`` and the threads'
  arenas) less the resident bytes in use in them: what ``malloc_trim(0)`` can return.
  ``fordblks`` is not used: it counts free chunks whose pages a trim already gave back
  (shared/host-memory.md);
- **Python objects**: the resident pages of pymalloc's arenas (the count from its own
  statistics, :mod:`._pymalloc`; an arena the walk did not find counted whole);
- **stacks**: the main thread's and the threads' stacks;
- **residual**: what none of these explains (other anonymous mappings: the libraries' own
  ``mmap`` calls, OpenMP's stacks; pages of the kernel's own). Negative only where a reading
  counts pages that are not resident: an mmapped chunk or a pymalloc arena the walk could not
  find (a note says so).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vramguard.ledger._attribute import Attribution
from vramguard.ledger._maps import FileIndex, Mapping, is_library, is_thread_arena, is_thread_stack
from vramguard.ledger._pymalloc import ArenaReading
from vramguard.ledger._records import RESIDUAL, ROLES, LedgerLine
from vramguard.ledger._resident import Residency, Survey


@dataclass(frozen=True)
class MallocReading:
    """glibc's ``mallinfo2()``: bytes in use in the arenas, mmapped chunks (how many, their
    bytes), and bytes free in the arenas."""

    uordblks: int
    hblks: int
    hblkhd: int
    fordblks: int

    @property
    def in_use_bytes(self) -> int:
        return self.uordblks + self.hblkhd


def read_malloc() -> MallocReading | None:
    """mallinfo2 now; None without glibc >= 2.33."""
    from vramguard.probes._host import _get_libc

    fn = _get_libc().mallinfo2
    if fn is None:
        return None
    info = fn()
    return MallocReading(int(info.uordblks), int(info.hblks), int(info.hblkhd), int(info.fordblks))


def tensor_lines(
    attribution: Attribution, skip: set[int] | None = None, sizes: dict[int, int] | None = None
) -> list[LedgerLine]:
    """One line per owner, largest first; storages whose pointer is in ``skip`` are left out
    (counted elsewhere), and ``sizes`` (the storage's index in ``attribution.storages`` ->
    bytes) replaces a storage's bytes with what the device holds for it (a CUDA block)."""
    roles: dict[int, dict[str, int]] = {}
    exact: dict[int, int] = {}
    held: dict[int, int] = {}
    count: dict[int, int] = {}
    for i, storage in enumerate(attribution.storages):
        if skip is not None and storage.pointer in skip:
            continue
        nbytes = storage.nbytes if sizes is None else sizes.get(i, storage.nbytes)
        split = roles.setdefault(storage.owner, {})
        split[storage.role] = split.get(storage.role, 0) + nbytes
        exact[storage.owner] = exact.get(storage.owner, 0) + storage.nbytes
        held[storage.owner] = held.get(storage.owner, 0) + nbytes
        count[storage.owner] = count.get(storage.owner, 0) + 1
    lines = []
    for owner, nbytes in sorted(held.items(), key=lambda item: -item[1]):
        who = attribution.owners[owner]
        split = roles[owner]
        lines.append(
            LedgerLine(
                category="tensors",
                nbytes=nbytes,
                holder=who.holder,
                returned_by=who.returned_by,
                roles=tuple((role, split[role]) for role in ROLES if split.get(role)),
                storage_bytes=exact[owner],
                storages=count[owner],
                detail=who.what,
            )
        )
    return lines


@dataclass(frozen=True)
class Resident:
    """What the ledger knows of residency beyond ``smaps``: which anonymous pages are resident
    (None without ``mincore``) and the walk's chunks and arenas (None where this process cannot
    read its own memory)."""

    pages: Residency | None = None
    survey: Survey | None = None


def _untouched(attribution: Attribution, pages: Residency | None, skip: set[int]) -> tuple[dict[int, int], int]:
    """(storage index -> its resident bytes, for storages with pages never written; the bytes
    of those pages that lie in malloc's arenas)."""
    sizes: dict[int, int] = {}
    in_arenas = 0
    if pages is None:
        return sizes, 0
    for i, storage in enumerate(attribution.storages):
        if storage.pointer in skip or storage.nbytes < 1:
            continue
        missing = pages.untouched_bytes(storage.pointer, storage.nbytes)
        if missing:
            sizes[i] = storage.nbytes - missing
            if pages.in_arena(storage.pointer):
                in_arenas += missing
    return sizes, in_arenas


def host_lines(
    attribution: Attribution,
    mappings: Sequence[Mapping],
    malloc: MallocReading | None,
    arenas: ArenaReading | None,
    resident: Resident | None = None,
) -> tuple[int, list[LedgerLine], list[str]]:
    """(total, lines ending with the residual, notes) from the readings."""
    notes: list[str] = []
    resident = resident or Resident()
    maps = list(mappings)
    total = sum(m.rss_bytes for m in maps)
    files = FileIndex(maps)
    mapped: dict[str, list[int]] = {}  # path -> the storages (indexes) in it
    for i, storage in enumerate(attribution.storages):
        path = files.path_of(storage.pointer)
        if path is not None:
            mapped.setdefault(path, []).append(i)
    skip = {attribution.storages[i].pointer for found in mapped.values() for i in found}
    sizes, untouched_in_arenas = _untouched(attribution, resident.pages, skip)
    lines = tensor_lines(attribution, skip, sizes)
    anon_tensor_bytes = sum(line.nbytes for line in lines)

    by_path: dict[str, int] = {}
    library_bytes = other_files = arena_rss = stack_bytes = 0
    for i, m in enumerate(maps):
        if m.file_backed:
            by_path[m.path] = by_path.get(m.path, 0) + m.rss_bytes
        elif m.path == "[heap]" or is_thread_arena(maps, i):
            arena_rss += m.rss_bytes
        elif m.path == "[stack]" or is_thread_stack(maps, i):
            stack_bytes += m.rss_bytes
    for path, rss in sorted(by_path.items(), key=lambda item: -item[1]):
        if path in mapped:
            storages = [attribution.storages[i] for i in mapped[path]]
            owners = dict.fromkeys(attribution.owners[s.owner].holder for s in storages)
            lines.append(
                LedgerLine(
                    category="mapped file",
                    nbytes=rss,
                    holder="; ".join(owners),
                    returned_by="del the tensors mapped from it: "
                    + "; ".join(dict.fromkeys(attribution.owners[s.owner].returned_by for s in storages)),
                    roles=(("other", sum(s.nbytes for s in storages)),),
                    storage_bytes=sum(s.nbytes for s in storages),
                    storages=len(storages),
                    detail=path,
                )
            )
        elif is_library(path):
            library_bytes += rss
        else:
            other_files += rss
    lines.append(
        LedgerLine(
            "code",
            library_bytes,
            "shared libraries and the interpreter",
            "not returnable: the program's code",
            detail="file-backed pages of .so files and the python executable, with their relocated data",
        )
    )
    if other_files:
        lines.append(
            LedgerLine(
                "mapped file",
                other_files,
                "other mapped files (no tensor points into them)",
                "not returnable from Python: the libraries that mapped them",
            )
        )
    if malloc is not None:
        lines += _malloc_lines(malloc, resident.survey, arena_rss, anon_tensor_bytes, untouched_in_arenas, notes)
    else:
        notes.append("mallinfo2 not available (not glibc >= 2.33): malloc's lines are in the residual")
    if arenas is not None:
        lines.append(_python_objects(arenas, resident.survey))
    else:
        notes.append("pymalloc's statistics not readable (PYTHONMALLOC=malloc, or not CPython): arenas in the residual")
    if stack_bytes:
        lines.append(LedgerLine("stacks", stack_bytes, "thread stacks", "end the threads"))
    explained = sum(line.nbytes for line in lines)
    lines.append(
        LedgerLine(
            RESIDUAL,
            total - explained,
            "not explained by any line above",
            "unknown",
            detail="other anonymous mappings (libraries' own mmaps), kernel pages",
        )
    )
    return total, lines, notes


def _malloc_lines(
    malloc: MallocReading,
    survey: Survey | None,
    arena_rss: int,
    tensor_bytes: int,
    untouched_in_arenas: int,
    notes: list[str],
) -> list[LedgerLine]:
    """malloc in use (resident, less the tensors) and malloc's free resident pages."""
    in_arenas = malloc.uordblks - untouched_in_arenas
    if survey is not None and survey.chunks <= malloc.hblks and survey.chunk_bytes <= malloc.hblkhd:
        unfound = malloc.hblkhd - survey.chunk_bytes
        chunks = survey.chunk_resident_bytes + unfound
        how = (
            f"resident pages of {survey.chunks} mmapped chunks "
            f"{survey.chunk_resident_bytes} B of {survey.chunk_bytes} B"
        )
        if unfound:
            how += f", {malloc.hblks - survey.chunks} chunks not found counted whole ({unfound} B)"
            notes.append(
                f"{malloc.hblks - survey.chunks} of malloc's {malloc.hblks} mmapped chunks not found in the "
                f"mappings: their {unfound} B counted whole, touched or not (the residual may be negative)"
            )
    else:
        chunks = malloc.hblkhd
        how = f"mmapped chunks counted whole {malloc.hblkhd} B"
        notes.append(
            "malloc's mmapped chunks counted whole, touched or not (this process cannot read its own "
            "memory, or the walk disagreed with mallinfo2): the residual may be negative"
        )
    return [
        LedgerLine(
            "malloc in use",
            in_arenas + chunks - tensor_bytes,
            "C/C++ libraries and Python objects over 512 B",
            "not returnable while in use",
            detail=f"in use in the arenas {in_arenas} B, {how}; less the tensors' {tensor_bytes} B",
        ),
        LedgerLine(
            "malloc free",
            arena_rss - in_arenas,
            "malloc's free chunks, still resident",
            "malloc_trim(0) (vramguard.release() on the host)",
            detail=f"resident arena pages {arena_rss} B less {in_arenas} B in use in them; "
            f"free chunks in all: {malloc.fordblks} B",
        ),
    ]


def _python_objects(arenas: ArenaReading, survey: Survey | None) -> LedgerLine:
    """pymalloc's arenas: the resident pages of those the walk found, the others whole."""
    nbytes = arenas.arena_bytes
    how = ""
    if survey is not None and 0 < survey.arenas <= arenas.arenas:
        missed = arenas.arenas - survey.arenas
        nbytes = survey.arena_resident_bytes + missed * arenas.arena_size_bytes
        how = f"resident pages of {survey.arenas} arenas found; {missed} counted whole; "
    objects = (
        ""
        if arenas.allocated_block_bytes is None
        else f"{arenas.allocated_block_bytes} B in live objects, {arenas.free_block_bytes} B free in pools"
    )
    return LedgerLine(
        "Python objects",
        nbytes,
        f"pymalloc arenas ({arenas.arenas})",
        "free the objects: an arena goes back to the OS when its last object dies",
        detail=(how + objects) or None,
    )
