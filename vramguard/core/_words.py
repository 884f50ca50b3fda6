"""The words a figure is shown with, by device: the same field means different memory on a GPU and
on the host (docs/memory-model.md, "What each figure means"), so a record's ``str()`` and each
renderer label it with the words of the report's device, written once here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Words:
    """Labels of ``allocated_bytes``, ``reserved_bytes``, ``cached_bytes`` and of the peak a plot
    marks; ``legend``: the line under a table that says what the host's labels mean (None on CUDA)."""

    allocated: str
    reserved: str
    cached: str
    peak: str
    legend: str | None


CUDA = Words(
    allocated="allocated",
    reserved="reserved",
    cached="still cached",
    peak="allocated peak",
    legend=None,
)
HOST = Words(
    allocated="malloc in use",
    reserved="resident",
    # Not a cache a release empties: freed heap pages still resident plus what malloc never sees.
    cached="resident beyond malloc",
    peak="resident peak",  # the kernel's resident high-water mark (VmHWM), mapped files included
    legend=(
        "host: malloc in use = malloc's in-use bytes; resident = anonymous resident memory; resident beyond "
        "malloc = freed heap pages still resident plus memory malloc never sees (Python's arenas), not a cache"
    ),
)


def is_host(device: str) -> bool:
    """True for a report of the process heap (``device="cpu"``)."""
    return device.split(":", 1)[0].strip().lower() == "cpu"


def words_for(device: str) -> Words:
    """The words of ``device``'s figures."""
    return HOST if is_host(device) else CUDA
