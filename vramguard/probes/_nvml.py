"""NVML, through one wrapper: started lazily once behind a lock, shut down at exit.

Without a driver (or without nvidia-ml-py) every reading is ``None`` with a reason; nothing
raises on import or on a query. NVML queries never create a CUDA context.
"""

from __future__ import annotations

import atexit
import os
import threading
from dataclasses import dataclass
from typing import Any

_lock = threading.Lock()
_state: dict[str, Any] = {"started": False, "module": None, "reason": None}


@dataclass(frozen=True)
class NvmlReading:
    """What NVML says of one GPU and of this process on it."""

    device_total_bytes: int | None
    device_used_bytes: int | None
    process_used_bytes: int | None
    reason: str | None
    driver_reserved_bytes: int | None = None
    """Memory the driver keeps for itself (NVML's v2 struct only; None where only v1 answers)."""


def memory_info(nvml: Any, handle: Any) -> tuple[int, int, int | None, str | None]:
    """(total, used, driver-reserved or None, a note or None) of one device.

    ``nvmlDeviceGetMemoryInfo(handle)`` without a version fills the v1 struct, whose ``used``
    counts the driver's reserved memory too, so it reads above nvidia-smi's figure (pynvml.py,
    ``nvmlDeviceGetMemoryInfo(handle, version=None)``: v1 unless a version is given; the v2
    struct ``c_nvmlMemory_v2_t`` has ``reserved`` apart). The v2 call needs a driver of the R510
    series or later; older drivers answer FunctionNotFound, and then v1 is read and said so.
    """
    version = getattr(nvml, "nvmlMemory_v2", None)
    if version is not None:
        try:
            info = nvml.nvmlDeviceGetMemoryInfo(handle, version=version)
        except Exception:  # NVMLError_FunctionNotFound on an old driver
            pass
        else:
            return int(info.total), int(info.used), int(info.reserved), None
    info = nvml.nvmlDeviceGetMemoryInfo(handle)
    return int(info.total), int(info.used), None, "NVML v1 memory info: used includes driver-reserved memory"


def _start() -> Any:
    """Return the pynvml module once nvmlInit succeeded, else None (reason kept)."""
    if _state["started"]:
        return _state["module"]
    with _lock:
        if _state["started"]:
            return _state["module"]
        try:
            import pynvml
        except ImportError:
            _state["reason"] = "nvidia-ml-py not installed: pip install 'vramguard[nvml]'"
        else:
            try:
                pynvml.nvmlInit()
            except Exception as error:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
                _state["reason"] = f"NVML not available: {type(error).__name__}: {error}".rstrip(": ")
            else:
                _state["module"] = pynvml
                atexit.register(_shutdown)
        _state["started"] = True
    return _state["module"]


def _shutdown() -> None:
    with _lock:
        module = _state["module"]
        if module is not None:
            try:
                module.nvmlShutdown()
            except Exception:  # pragma: no cover - shutting down anyway
                pass
        _state.update(started=False, module=None)


def unavailable_reason() -> str | None:
    """Why NVML cannot be read, or None when it can."""
    _start()
    return _state["reason"] if _state["module"] is None else None


def _handle(nvml: Any, torch_index: int) -> Any:
    """The NVML handle of torch's device ``torch_index``.

    Once CUDA is initialised the device is matched by its UUID, which is right whatever
    CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER say (CUDA orders fastest first by default, NVML
    by PCI bus). Before that, torch's index is mapped through CUDA_VISIBLE_DEVICES, which is
    exact on machines whose GPUs are all alike.
    """
    by_uuid = _handle_by_uuid(nvml, torch_index)
    if by_uuid is not None:
        return by_uuid
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None or not visible.strip():
        return nvml.nvmlDeviceGetHandleByIndex(torch_index)
    entries = [e.strip() for e in visible.split(",") if e.strip()]
    entry = entries[torch_index]
    if entry.isdigit():
        return nvml.nvmlDeviceGetHandleByIndex(int(entry))
    return nvml.nvmlDeviceGetHandleByUUID(entry)


def _handle_by_uuid(nvml: Any, torch_index: int) -> Any:
    import torch

    if not torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        return None  # reading the properties now would initialise CUDA
    try:
        wanted = str(torch.cuda.get_device_properties(torch_index).uuid).lower().removeprefix("gpu-")
        for index in range(int(nvml.nvmlDeviceGetCount())):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            uuid = nvml.nvmlDeviceGetUUID(handle)
            uuid = (uuid.decode() if isinstance(uuid, bytes) else str(uuid)).lower().removeprefix("gpu-")
            if uuid == wanted:
                return handle
    except Exception:  # an NVML error: fall back to the index
        return None
    return None


def read_nvml(torch_index: int, pid: int | None = None) -> NvmlReading:
    """Total and used memory of the device, and this process's use matched by pid."""
    nvml = _start()
    if nvml is None:
        return NvmlReading(None, None, None, _state["reason"])
    pid = os.getpid() if pid is None else pid
    try:
        handle = _handle(nvml, torch_index)
        total, used, driver_reserved, v1_note = memory_info(nvml, handle)
    except Exception as error:
        return NvmlReading(None, None, None, f"NVML query failed: {type(error).__name__}: {error}")
    try:
        processes = list(nvml.nvmlDeviceGetComputeRunningProcesses(handle))
    except Exception as error:
        return NvmlReading(total, used, None, f"NVML process list failed: {error}", driver_reserved)
    for process in processes:
        if int(process.pid) == pid:
            memory = process.usedGpuMemory
            if memory is None:
                reason = "NVML gives no per-process memory here (MIG or WDDM)"
                return NvmlReading(total, used, None, reason, driver_reserved)
            if _mig_enabled(nvml, handle, torch_index):
                reason = "MIG is on: NVML's device figures are the whole GPU's, not this instance's"
                return NvmlReading(total, used, int(memory), reason, driver_reserved)
            return NvmlReading(total, used, int(memory), v1_note, driver_reserved)
    return NvmlReading(total, used, None, _missing_pid_reason(pid, processes), driver_reserved)


_mig: dict[int, bool] = {}


def _mig_enabled(nvml: Any, handle: Any, torch_index: int) -> bool:
    """Whether the GPU runs MIG instances (``nvmlDeviceGetMigMode``: current, pending); False
    where the call is missing or refused (a driver or GPU without MIG). Read once per device:
    the mode changes only with a GPU reset."""
    known = _mig.get(torch_index)
    if known is not None:
        return known
    try:
        current, _ = nvml.nvmlDeviceGetMigMode(handle)
    except Exception:
        current = None
    enabled = current is not None and current == getattr(nvml, "NVML_DEVICE_MIG_ENABLE", 1)
    _mig[torch_index] = enabled
    return enabled


def _missing_pid_reason(pid: int, processes: list[Any]) -> str:
    """Why this process has no per-process figure. Other processes listed while this one is not
    is what a container without the host's pid namespace looks like: NVML lists host pids."""
    if processes:
        return (
            f"pid {pid} not in NVML's process list, which lists {len(processes)} other pid(s): NVML "
            "reports host pids, so inside a container without the host's pid namespace the process "
            "figures cannot be matched and stay unknown"
        )
    return f"pid {pid} not in NVML's process list (no CUDA context yet in this process)"


def list_devices() -> list[dict[str, Any]]:
    """Every GPU NVML sees: index, name, total/used bytes and processes (pid, used bytes)."""
    nvml = _start()
    if nvml is None:
        return []
    devices: list[dict[str, Any]] = []
    try:
        count = int(nvml.nvmlDeviceGetCount())
    except Exception:  # pragma: no cover - needs a driver
        return devices
    for index in range(count):
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            total, used, _, _ = memory_info(nvml, handle)
            name = nvml.nvmlDeviceGetName(handle)
        except Exception as error:  # a lost GPU, or no permission inside a container
            unreadable = f"unreadable: {type(error).__name__}: {error}"
            devices.append(
                {"index": index, "name": unreadable, "total_bytes": None, "used_bytes": None, "processes": []}
            )
            continue
        processes = []
        try:
            for process in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                used = process.usedGpuMemory
                processes.append({"pid": int(process.pid), "used_bytes": None if used is None else int(used)})
        except Exception:  # pragma: no cover - needs a driver
            pass
        devices.append(
            {
                "index": index,
                "name": name.decode() if isinstance(name, bytes) else str(name),
                "total_bytes": total,
                "used_bytes": used,
                "processes": processes,
            }
        )
    return devices
