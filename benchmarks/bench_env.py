"""Where a benchmark ran, said the same way by every benchmark, and the one way a CUDA run
refuses on a machine without CUDA (imported by the scripts beside it).

A run on CUDA names the GPU (``torch.cuda.get_device_name``), torch's version, the CUDA
version torch was built with and the driver's (NVML) in its JSON; a run on the host says it is
the host, so that no host figure can pass for a GPU figure.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import Any

import torch

import vramguard
from vramguard.probes import cuda_available

NO_CUDA_EXIT = 2  # a usage error, as argparse's: the command cannot run here


def resolve(requested: str, script: str) -> torch.device:
    """``--device`` as a torch.device. Asking for CUDA where there is none prints one line and
    exits 2, never a traceback. :func:`cuda_available` asks NVML, so a run that then forks
    measured children (reclaim) still can."""
    if requested.strip().lower().startswith("cuda") and not cuda_available():
        built = f"torch {torch.__version__}" + ("" if torch.version.cuda else ", a CPU-only build")
        print(
            f"{script}: --device {requested}: no CUDA device on this machine ({built}); "
            "run it where a GPU is, or pass --device cpu",
            file=sys.stderr,
        )
        raise SystemExit(NO_CUDA_EXIT)
    try:
        return vramguard.resolve_device(requested, argument="--device")
    except vramguard.InvalidArgument as error:
        print(f"{script}: {error}", file=sys.stderr)
        raise SystemExit(NO_CUDA_EXIT) from None


def _driver_version() -> str | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
    except Exception:  # no driver, no permission: the figure is simply not known
        return None
    return version.decode() if isinstance(version, bytes) else str(version)


def environment(device: torch.device) -> dict[str, Any]:
    """The device's name and the software versions. On CUDA this initialises CUDA in the calling
    process (``get_device_name`` does): call it where the process measures CUDA anyway."""
    cuda = device.type == "cuda"
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else "CPU",
        "machine": platform.machine(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "driver": _driver_version() if cuda else None,
        "python": platform.python_version(),
    }


def label(env: dict[str, Any]) -> str:
    """One line naming the device and the versions, for a table's heading."""
    if env["device"].startswith("cuda"):
        driver = f", driver {env['driver']}" if env.get("driver") else ""
        return f"{env['device_name']} ({env['device']}), torch {env['torch']}, CUDA {env['cuda']}{driver}"
    return f"CPU ({env['machine']}), torch {env['torch']}; no GPU figure"


def write(data: dict[str, Any], table: str, json_path: str | None, markdown_path: str | None) -> None:
    """Write the run's figures and its table where asked."""
    if json_path:
        Path(json_path).write_text(json.dumps(data, indent=2))
    if markdown_path:
        Path(markdown_path).write_text(table)
