"""The environment header of ``scripts/gpu-check.sh``: where the figures below it were taken.

Date, nvidia-smi's view of the GPU, torch's and CUDA's versions, the device's name, and the size
of the CUDA context as NVML sees it: the process's used memory in NVML once CUDA is initialised
and holds one byte, minus what torch's caching allocator reserved (the context itself, which no
``empty_cache`` returns). Then the same after one small matmul, whose cuBLAS workspace torch
reserves through its allocator (``aten/src/ATen/cuda/CublasHandlePool.cpp``): the context must
not grow by it. Written as a markdown list to ``--markdown`` and to stdout.

Without ``--cuda`` (the dry run) it never initialises CUDA.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from gpu_deps import CANNOT_TRAVEL, CARRIED

MIB = 2**20


def _mib(value: int | None) -> str:
    return "not readable" if value is None else f"{value / MIB:.1f} MiB"


def nvidia_smi() -> str:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return "not found"
    query = ["--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
    try:
        done = subprocess.run([exe, *query], capture_output=True, text=True, timeout=20, check=False)
    except subprocess.TimeoutExpired:
        return "did not answer in 20 s"
    return (done.stdout.strip() or done.stderr.strip() or f"exit {done.returncode}").replace("\n", "; ")


def packages() -> list[str]:
    """What travelled and what could not, as this interpreter finds them."""
    found, missing = [], []
    for name in CARRIED:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    lines = [f"- carried packages found: {', '.join(found) or 'none'}"]
    if missing:
        lines.append(f"- carried packages MISSING (run scripts/gpu-wheels.sh, carry .whl): {', '.join(missing)}")
    for name in CANNOT_TRAVEL:
        present = importlib.util.find_spec(name.split(".")[0]) is not None
        state = "present here" if present else "absent: the tests that need it skip"
        lines.append(f"- cannot travel: {name} ({state})")
    return lines


def _nvml_handle(pynvml: Any, torch: Any, index: int) -> Any:
    """NVML's handle of torch's device ``index``: matched by UUID, since NVML numbers devices by
    PCI bus and CUDA (CUDA_DEVICE_ORDER=FASTEST_FIRST) by speed."""
    uuid = str(getattr(torch.cuda.get_device_properties(index), "uuid", ""))
    for i in range(pynvml.nvmlDeviceGetCount()):
        handle = pynvml.nvmlDeviceGetHandleByIndex(i)
        nvml_uuid = pynvml.nvmlDeviceGetUUID(handle)
        nvml_uuid = nvml_uuid.decode() if isinstance(nvml_uuid, bytes) else str(nvml_uuid)
        if uuid and nvml_uuid.endswith(uuid):
            return handle
    return pynvml.nvmlDeviceGetHandleByIndex(index)


def _process_used_bytes(pynvml: Any, handle: Any) -> int | None:
    """This process's used memory on the device per NVML; None where NVML does not list it."""
    try:
        processes = pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
    except pynvml.NVMLError:
        return None
    for process in processes:
        if process.pid == os.getpid():
            used = process.usedGpuMemory
            return None if used is None else int(used)
    return None


def cuda_lines() -> list[str]:
    import torch

    lines = [f"- torch: {torch.__version__}, built with CUDA {torch.version.cuda}"]
    if not torch.cuda.is_available():
        return [*lines, "- CUDA device: NONE AVAILABLE (torch.cuda.is_available() is False)"]
    torch.cuda.init()  # type: ignore[no-untyped-call]
    # One byte allocated: torch reserves one 2 MiB small-pool segment for it, and whatever else
    # the process holds on the device is the context. Nothing else (cuDNN, cuBLAS) is loaded first.
    one_byte = torch.empty(1, dtype=torch.uint8, device="cuda")
    torch.cuda.synchronize()
    index = torch.cuda.current_device()
    lines.append(
        f"- device: cuda:{index} {torch.cuda.get_device_name(index)}, "
        f"capability {'.'.join(map(str, torch.cuda.get_device_capability(index)))}"
    )
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as error:  # a header line, whatever NVML's failure
        return [*lines, f"- NVML: not readable ({type(error).__name__}: {error})"]
    handle = _nvml_handle(pynvml, torch, index)
    driver = pynvml.nvmlSystemGetDriverVersion()
    lines.append(f"- NVML driver: {driver.decode() if isinstance(driver, bytes) else driver}")
    used = _process_used_bytes(pynvml, handle)
    reserved = torch.cuda.memory_reserved(index)
    context = None if used is None else used - reserved
    lines.append(
        f"- CUDA context (NVML process used {_mib(used)} − torch reserved {_mib(reserved)}, "
        f"one byte allocated): {_mib(context)}"
    )
    square = torch.ones(64, 64, device="cuda")
    product = square @ square
    torch.cuda.synchronize()
    used_after = _process_used_bytes(pynvml, handle)
    reserved_after = torch.cuda.memory_reserved(index)
    context_after = None if used_after is None else used_after - reserved_after
    lines.append(
        f"- after one 64×64 matmul: torch reserved {_mib(reserved_after)} (+{_mib(reserved_after - reserved)}, "
        f"the cuBLAS workspace among it), NVML process used {_mib(used_after)}, context {_mib(context_after)}"
    )
    try:
        info = pynvml.nvmlDeviceGetMemoryInfo(handle, version=pynvml.nvmlMemory_v2)
        lines.append(
            f"- NVML v2 memory info: total {_mib(info.total)}, reserved {_mib(info.reserved)}, "
            f"used {_mib(info.used)}, free {_mib(info.free)}"
        )
    except Exception as error:
        lines.append(f"- NVML v2 memory info: not readable ({type(error).__name__}: {error})")
    del one_byte, square, product
    pynvml.nvmlShutdown()
    cudnn = torch.backends.cudnn.version()  # type: ignore[no-untyped-call]
    return [*lines, f"- cuDNN: {cudnn}"]


def header(cuda: bool) -> str:
    lines = [
        f"- date (UTC): {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M:%S}",
        f"- host: {os.uname().nodename}, {os.uname().release}",
        f"- nvidia-smi (name, driver, memory): {nvidia_smi()}",
        f"- python: {sys.version.split()[0]} ({sys.executable})",
    ]
    if cuda:
        lines += cuda_lines()
    else:
        import torch

        lines.append(f"- torch: {torch.__version__}, built with CUDA {torch.version.cuda} (dry run: CUDA not touched)")
    lines += packages()
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markdown", type=Path, required=True, help="where to write the header")
    parser.add_argument("--cuda", action="store_true", help="initialise CUDA and measure the context")
    args = parser.parse_args(argv)
    text = header(args.cuda)
    args.markdown.write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
