"""What vramguard needs on the lent GPU machine, against what its image already holds.

One source for ``scripts/gpu-wheels.sh`` (which wheels to download here), ``scripts/gpu-check.sh``
(what cannot travel, said before the run) and ``scripts/gpu_summary.py`` (the same, in the
summary). The image's package list is the device README's KINDS.md ("Python packages already
there", read on a machine on 2026-11-17); the machine has no network, so everything else travels
as wheels in the ignored folder ``.whl/`` (64 MiB at most, the working tree included).

Standard library only: it runs here before the venv exists and there under the image's python3.

    python3 scripts/gpu_deps.py carried          # name==version kind (kind: wheel or sdist)
    python3 scripts/gpu_deps.py cannot-travel    # name: why
    python3 scripts/gpu_deps.py check-wheels .whl
"""

from __future__ import annotations

import argparse
import re
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Carried:
    """A package downloaded here and installed there; ``sdist`` when PyPI has no wheel of it (it
    is then built here, and must be pure Python)."""

    version: str
    why: str
    sdist: bool = False


IMAGE_HAS = frozenset(
    {
        "torch", "psutil", "nvidia-ml-py", "rich", "matplotlib", "transformers", "numpy",
        "safetensors", "accelerate", "pytorch-lightning", "prometheus-client", "pytest",
        "pytest-xdist", "httpx", "hypothesis",
    }
)  # fmt: skip
"""vramguard's own requirements (pyproject's dependencies and extras) that the image holds."""

IMAGE_ALSO = frozenset({"anyio", "typing-extensions", "pandas", "setuptools"})
"""Other packages of the image that a carried wheel needs."""

# Versions are the ones the venv here resolved and the suite passed with.
CARRIED: dict[str, Carried] = {
    "starlette": Carried("1.10.0", "tests/integrations/test_asgi_metrics.py imports it (a gpu test is there)"),
    "objgraph": Carried("3.7.0", "benchmarks/leak_detection.py: objgraph's find_backref_chain detector"),
    "pytorch-memlab": Carried("0.3.2", "benchmarks/leak_detection.py: pytorch_memlab's MemReporter detector"),
    "calmsize": Carried("0.1.3", "pytorch_memlab needs it; PyPI has only its sdist", sdist=True),
    "soundfile": Carried("0.14.0", "the asr extra's audio loader (vramguard.asr.load_audio)"),
    "cffi": Carried("2.1.1", "soundfile needs it"),
    "pycparser": Carried("3.12", "cffi needs it"),
}

CANNOT_TRAVEL: dict[str, str] = {
    "pyannote.audio": (
        "its decoders (torchcodec, torchaudio) are native builds tied to one torch release, and "
        "with its own needs it is far past the 64 MiB a run carries; the tests that need it skip "
        "(pytest.importorskip('pyannote.audio')), and so do the benchmark cases of the ASR pipeline"
    ),
}

NOT_CARRIED: dict[str, str] = {
    "ipython": "the notebook extra: no gpu test or CUDA benchmark imports it (its tests importorskip it)",
    "ruff": "the quality checks run on the CPU machines",
    "mypy": "the quality checks run on the CPU machines",
    "build": "the wheel check (tests/project/test_wheel.py) runs on the CPU machines",
    "mkdocs": "the documentation builds on the CPU machines",
    "mkdocs-material": "the documentation builds on the CPU machines",
    "mkdocstrings": "the documentation builds on the CPU machines",
}


def normalize(name: str) -> str:
    """A distribution's name as PEP 503 compares it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    """The distribution's name in a requirement such as ``mkdocstrings[python]>=0.25``."""
    found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if found is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return normalize(found.group(1))


def unplaced(requirements: list[str]) -> list[str]:
    """The requirements that none of the lists above accounts for, or that two of them claim."""
    lists = (IMAGE_HAS, set(CARRIED), {normalize(n) for n in CANNOT_TRAVEL}, set(NOT_CARRIED))
    wrong = []
    for requirement in requirements:
        name = requirement_name(requirement)
        if sum(name in names for names in lists) != 1:
            wrong.append(name)
    return sorted(set(wrong))


def wheel_requires(wheel: Path) -> list[str]:
    """The Requires-Dist lines of a wheel's METADATA, those of its extras left out."""
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        text = archive.read(metadata).decode()
    lines = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Requires-Dist:")]
    return [line for line in lines if "extra ==" not in line]


def check_wheels(folder: Path) -> list[str]:
    """What is wrong with the wheels in ``folder``: one missing, two versions of one (they stop
    the whole install there), or a need that neither the image nor another wheel meets."""
    problems = []
    seen: dict[str, list[str]] = {}
    for wheel in sorted(folder.glob("*.whl")):
        seen.setdefault(normalize(wheel.name.split("-")[0]), []).append(wheel.name)
        for requirement in wheel_requires(wheel):
            need = requirement_name(requirement)
            if need not in IMAGE_HAS | IMAGE_ALSO | set(CARRIED):
                problems.append(f"{wheel.name} needs {requirement}, which neither the image nor .whl/ has")
    for name, files in seen.items():
        if len(files) > 1:
            problems.append(f"two versions of {name}: {', '.join(files)}")
    for name in CARRIED:
        if name not in seen:
            problems.append(f"{name} is missing from {folder}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("carried", help="name==version kind, one a line")
    sub.add_parser("cannot-travel", help="name: why, one a line")
    check = sub.add_parser("check-wheels", help="check a folder of downloaded wheels")
    check.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    if args.command == "carried":
        for name, carried in CARRIED.items():
            print(f"{name}=={carried.version} {'sdist' if carried.sdist else 'wheel'}")
    elif args.command == "cannot-travel":
        for name, why in CANNOT_TRAVEL.items():
            print(f"{name}: {why}")
    else:
        problems = check_wheels(args.folder)
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
