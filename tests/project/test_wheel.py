"""The built wheel installs into a fresh environment that has only torch and psutil, pulls nothing
else, and works there; the README's recipe for an environment that already has torch adds the
extras it names and never replaces that torch."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = ROOT / "scripts" / "constraints.txt"


def _run(*command: str | Path, cwd: Path = ROOT, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900, check=False)  # fmt: skip
    assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _installed(python: Path) -> dict[str, str]:
    lines = _run(python, "-m", "pip", "list", "--format=freeze").splitlines()
    return {name.lower(): version for name, _, version in (line.partition("==") for line in lines)}


def _readme_recipe() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Into an environment that already has torch") :]
    block = section[section.index("```bash") + len("```bash") : section.index("```", section.index("```bash") + 7)]
    return [line.partition("#")[0].strip() for line in block.strip().splitlines()]


@pytest.mark.slow
def test_the_wheel_installs_with_only_torch_and_psutil_and_the_readme_recipe_keeps_torch(tmp_path: Path) -> None:
    pytest.importorskip("build")
    _run(sys.executable, "-m", "build", "--wheel", "--outdir", tmp_path / "dist", ROOT)
    (wheel,) = (tmp_path / "dist").glob("vramguard-*.whl")

    _run(sys.executable, "-m", "venv", tmp_path / "venv")
    python = tmp_path / "venv" / "bin" / "python"
    _run(python, "-m", "pip", "install", "-q", "torch==2.13.0")
    _run(python, "-m", "pip", "install", "-q", "-c", CONSTRAINTS, "psutil")
    before = _installed(python)

    _run(python, "-m", "pip", "install", "-q", "-c", CONSTRAINTS, wheel)
    after = _installed(python)
    assert set(after) - set(before) == {"vramguard"}, "the wheel pulled more than torch and psutil"
    code = ("import sys, torch, vramguard\n"
            "with vramguard.gpu_session('w', device='cpu', leaks='raise') as s:\n"
            "    x = torch.ones(1 << 20); del x\n"
            "extras = {m.split('.')[0] for m in sys.modules} & {'rich', 'matplotlib'}\n"
            "print(s.report.leaked_bytes, sorted(extras))")  # fmt: skip
    assert _run(python, "-c", code, cwd=tmp_path).split() == ["0", "[]"]

    # the README's recipe, line for line: pin the torch there is, then the extras
    pin, checkout, from_wheel = _readme_recipe()
    env = {**os.environ, "PATH": f"{python.parent}:{os.environ['PATH']}"}
    shutil.copy(wheel, tmp_path / "vramguard-0.1.0-py3-none-any.whl")
    pin_file = str(tmp_path / "torch-pin.txt")
    for line in (pin, from_wheel):
        _run("bash", "-c", line.replace("/tmp/torch-pin.txt", pin_file), cwd=tmp_path, env=env)
    assert re.fullmatch(r"torch==2\.13\.0(\+cpu)?\n", Path(pin_file).read_text())
    with_extras = _installed(python)
    assert {"rich", "nvidia-ml-py"} <= set(with_extras)
    assert with_extras["torch"] == before["torch"]

    _run("bash", "-c", checkout.replace("/tmp/torch-pin.txt", pin_file), cwd=ROOT, env=env)
    assert _installed(python)["torch"] == before["torch"]
    assert _run(python, "-c", "import vramguard, pathlib; print(pathlib.Path(vramguard.__file__).parent)",
                cwd=tmp_path).strip() == str(ROOT / "vramguard")  # fmt: skip
