"""The host's ledger: the resident set, line by line.

The resident set is the sum of ``Rss`` over ``/proc/self/smaps`` (see :mod:`._maps`). Its lines:

- **tensors**, one line per owner: the storage bytes of the CPU tensors in anonymous memory
  (torch's CPU allocator takes them from malloc);
- **mapped files**: a file mapped with its tensors (``safe_open``, ``torch.load(mmap=True)``: the
  storages point into a file-backed mapping), one line per file, its resident bytes, held by
  the owners of those tensors; other data files in one line; shared libraries and the
  interpreter's code in one line;
- **malloc in use, not tensors**: mallinfo2's in-use bytes less the tensors' (C and C++
  libraries, Python objects over 512 bytes);
- **malloc free, resident**: the resident pages of malloc's arenas (``[heap]`` and the threads'
  arenas) less the bytes in use in them (``uordblks``): what ``malloc_trim(0)`` can return.
  ``fordblks`` is not used: it counts free chunks whose pages a trim already gave back
  (shared/host-memory.md);
- **Python objects**: pymalloc's arenas, from its own statistics (:mod:`._pymalloc`);
- **stacks**: the main thread's and the threads' stacks;
- **residual**: what none of these explains (other anonymous mappings, pages of the kernel's
  own, tensors allocated but never touched, which count in malloc's figures but not in the
  resident set: then it is negative).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vramguard.ledger._attribute import Attribution
from vramguard.ledger._maps import FileIndex, Mapping, is_library, is_thread_arena, is_thread_stack
from vramguard.ledger._pymalloc import ArenaReading
from vramguard.ledger._records import RESIDUAL, ROLES, LedgerLine


@dataclass(frozen=True)
class MallocReading:
    """glibc's ``mallinfo2()``: bytes in use in the arenas, in mmapped chunks, and free in the arenas."""

    uordblks: int
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
    return MallocReading(int(info.uordblks), int(info.hblkhd), int(info.fordblks))


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


def host_lines(
    attribution: Attribution,
    mappings: Sequence[Mapping],
    malloc: MallocReading | None,
    arenas: ArenaReading | None,
) -> tuple[int, list[LedgerLine], list[str]]:
    """(total, lines ending with the residual, notes) from the readings."""
    notes: list[str] = []
    maps = list(mappings)
    total = sum(m.rss_bytes for m in maps)
    files = FileIndex(maps)
    mapped: dict[str, list[int]] = {}  # path -> the storages (indexes) in it
    for i, storage in enumerate(attribution.storages):
        path = files.path_of(storage.pointer)
        if path is not None:
            mapped.setdefault(path, []).append(i)
    skip = {attribution.storages[i].pointer for found in mapped.values() for i in found}
    lines = tensor_lines(attribution, skip)
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
        lines.append(
            LedgerLine(
                "malloc in use",
                malloc.in_use_bytes - anon_tensor_bytes,
                "C/C++ libraries and Python objects over 512 B",
                "not returnable while in use",
                detail=f"mallinfo2 in use {malloc.in_use_bytes} B less the tensors' {anon_tensor_bytes} B",
            )
        )
        lines.append(
            LedgerLine(
                "malloc free",
                arena_rss - malloc.uordblks,
                "malloc's free chunks, still resident",
                "malloc_trim(0) (vramguard.release() on the host)",
                detail=f"resident arena pages {arena_rss} B less {malloc.uordblks} B in use in them; "
                f"free chunks in all: {malloc.fordblks} B",
            )
        )
    else:
        notes.append("mallinfo2 not available (not glibc >= 2.33): malloc's lines are in the residual")
    if arenas is not None:
        lines.append(
            LedgerLine(
                "Python objects",
                arenas.arena_bytes,
                f"pymalloc arenas ({arenas.arenas})",
                "free the objects: an arena goes back to the OS when its last object dies",
                detail=None
                if arenas.allocated_block_bytes is None
                else f"{arenas.allocated_block_bytes} B in live objects, {arenas.free_block_bytes} B free in pools",
            )
        )
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
            detail="other anonymous mappings (libraries' own mmaps), kernel pages; negative when tensors "
            "were allocated but never touched",
        )
    )
    return total, lines, notes
