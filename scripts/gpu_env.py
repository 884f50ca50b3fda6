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

from gpu_deps import CANNOT_TRAVEL, CARRIED

MIB = 2**20


def _diff(before: int | None, after: int | None) -> int | None:
    return None if before is None or after is None else after - before


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
    driver = pynvml.nvmlSystemGetDriverVersion()
    lines.append(f"- NVML driver: {driver.decode() if isinstance(driver, bytes) else driver}")
    # vramguard's own probes: the figures a session reports (NVML matched by UUID, v2 memory info).
    from vramguard import snapshot
    from vramguard.probes import read_nvml

    dev = torch.device("cuda", index)
    first = snapshot(dev, uss=False)
    lines.append(
        f"- CUDA context (NVML process used {_mib(first.process_used_bytes)} − torch reserved "
        f"{_mib(first.reserved_bytes)}, one byte allocated): {_mib(first.context_bytes)}"
    )
    square = torch.ones(64, 64, device="cuda")
    product = square @ square
    torch.cuda.synchronize()
    after = snapshot(dev, uss=False)
    grown = _diff(first.reserved_bytes, after.reserved_bytes)
    lines.append(
        f"- after one 64×64 matmul: torch reserved {_mib(after.reserved_bytes)} (+{_mib(grown)}, "
        f"the cuBLAS workspace among it), NVML process used {_mib(after.process_used_bytes)}, "
        f"context {_mib(after.context_bytes)}"
    )
    nvml = read_nvml(index)
    lines.append(
        f"- NVML memory info: total {_mib(nvml.device_total_bytes)}, driver-reserved "
        f"{_mib(nvml.driver_reserved_bytes)} (None: only the v1 struct answered), used {_mib(nvml.device_used_bytes)}"
        + (f"; {nvml.reason}" if nvml.reason else "")
    )
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
