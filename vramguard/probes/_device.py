"""Turning the ``device`` argument into a torch.device, without creating a CUDA context."""

from __future__ import annotations

import re

import torch

from vramguard.core._errors import InvalidArgument
from vramguard.probes._torch import cuda_available, cuda_device_count

DeviceLike = str | int | torch.device
ACCEPTED_DEVICES = '"auto", "cpu", "cuda", "cuda:N", an int N, or a torch.device of type cpu/cuda'
_CUDA_INDEX = re.compile(r"^cuda:([0-9]{1,6})$")  # bounded: int() refuses 4,300+ digits


_CPU = torch.device("cpu")


def is_host(device: torch.device) -> bool:
    """``device.type == "cpu"``, without building the type's string (a C getter: 0.2 µs, a dozen
    times a session) for the host device that :func:`resolve_device` returns."""
    return device is _CPU or device.type == "cpu"


def resolve_device(device: DeviceLike | None = "auto", *, argument: str = "device") -> torch.device:
    """Return ``torch.device("cpu")`` or ``torch.device("cuda", N)`` with an explicit index.

    "auto" is the current CUDA device when CUDA is available, else the CPU. Asking for CUDA
    where there is none, or for an index that does not exist, raises :class:`InvalidArgument`
    naming the devices that do exist. Nothing here creates a CUDA context or initialises the
    driver (:func:`~vramguard.probes.cuda_available` asks NVML), so a later ``fork()`` still works.
    """
    if type(device) is str and device == "cpu":
        return _CPU  # the common case, a session per step on the host: no parsing, no new object
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        if cuda_available():
            return torch.device("cuda", _current())
        return torch.device("cpu")
    if isinstance(device, bool):
        raise InvalidArgument(argument, device, ACCEPTED_DEVICES)
    if isinstance(device, int):
        return _cuda(device, device, argument)
    if isinstance(device, torch.device):
        if device.type == "cpu":
            return _CPU
        if device.type == "cuda":
            index = device.index if device.index is not None else _current_index(device, argument)
            return _cuda(index, device, argument)
        raise InvalidArgument(argument, device, ACCEPTED_DEVICES)
    if isinstance(device, str):
        text = device.strip().lower()
        if text == "cpu":
            return _CPU
        if text == "cuda":
            return _cuda(_current_index(device, argument), device, argument)
        match = _CUDA_INDEX.match(text)
        if match:
            return _cuda(int(match.group(1)), device, argument)
    raise InvalidArgument(argument, device, ACCEPTED_DEVICES)


def _current_index(original: object, argument: str) -> int:
    if not cuda_available():
        raise InvalidArgument(argument, original, f"{ACCEPTED_DEVICES}; this machine has no CUDA device, use \"cpu\"")
    return _current()


def _current() -> int:
    """The current CUDA device. ``torch.cuda.current_device()`` initialises CUDA (and then a
    fork can no longer use it), so before CUDA is initialised the answer is torch's default, 0."""
    return int(torch.cuda.current_device()) if torch.cuda.is_initialized() else 0  # type: ignore[no-untyped-call]


def _cuda(index: int, original: object, argument: str) -> torch.device:
    count = cuda_device_count()
    if count == 0:
        raise InvalidArgument(argument, original, f"{ACCEPTED_DEVICES}; this machine has no CUDA device, use \"cpu\"")
    if not 0 <= index < count:
        existing = ", ".join(f"cuda:{i}" for i in range(count))
        raise InvalidArgument(argument, original, f"{ACCEPTED_DEVICES}; CUDA devices here: {existing}")
    return torch.device("cuda", index)
