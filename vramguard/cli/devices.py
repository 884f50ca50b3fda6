"""``vramguard devices``: the GPUs NVML sees, their memory and the processes using them.

NVML queries never create a CUDA context, so this is safe to run next to a busy job.
"""

from __future__ import annotations

import argparse
import json

from vramguard.probes import list_devices, unavailable_reason
from vramguard.report.text import make_console, render_devices

HELP = "list the GPUs (total, used, processes and their memory), read through NVML"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    devices = list_devices()
    reason = None if devices else unavailable_reason()
    if args.json:
        print(json.dumps({"devices": devices, "unavailable_reason": reason}, indent=2))
        return 0
    render_devices(devices, reason, console=make_console())
    return 0
