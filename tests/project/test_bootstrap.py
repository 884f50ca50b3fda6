"""``scripts/bootstrap.sh`` installs per README command: ``demo`` what ``vramguard demo`` imports,
``test`` (the default) every extra. Run for real on a copy of the repository whose ``.venv/bin/python``
is a stub that logs its arguments, so the script's decisions (what is installed, in which order,
under which constraints, when it is skipped) are checked without installing anything."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

STUB = """#!/bin/sh
echo "$*" >> "$(dirname "$0")/../calls.log"
case "$*" in *find_spec*) exit 1 ;; esac  # torchaudio: not installed
exit 0
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    copy = tmp_path / "repo"
    (copy / "scripts").mkdir(parents=True)
    for name in ("pyproject.toml", "scripts/bootstrap.sh", "scripts/constraints.txt"):
        shutil.copy(ROOT / name, copy / name)
    python = copy / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(STUB)
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    # a stand-in ffmpeg: the script must not reach for apt-get here, even as root
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "ffmpeg").write_text("#!/bin/sh\n")
    (tools / "ffmpeg").chmod(0o755)
    return copy


def bootstrap(repo: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    log = repo / ".venv" / "calls.log"
    log.unlink(missing_ok=True)
    env = {**os.environ, "PATH": f"{repo.parent / 'bin'}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", "scripts/bootstrap.sh", *args], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip
    return done, log.read_text().splitlines() if log.exists() else []


def installs(calls: list[str]) -> list[str]:
    return [call.removeprefix("-m pip install -q ") for call in calls if call.startswith("-m pip install")]


def test_the_demo_profile_installs_torch_first_then_only_the_demos_extras(repo: Path) -> None:
    done, calls = bootstrap(repo, "demo")
    assert done.returncode == 0, done.stderr
    assert installs(calls) == ["torch==2.13.0", "-c scripts/constraints.txt -e .[cli,plot,nvml]"]
    assert calls[-1] == "-c import vramguard"
    assert (repo / ".venv" / ".vramguard-installed-demo").is_file()


def test_the_test_profile_is_the_default_and_installs_every_extra(repo: Path) -> None:
    done, calls = bootstrap(repo)
    assert done.returncode == 0, done.stderr
    first, second = installs(calls)
    assert first == "torch==2.13.0"
    assert second.startswith("-c scripts/constraints.txt -e .[")
    extras = set(second.removeprefix("-c scripts/constraints.txt -e .[").removesuffix("]").split(","))
    pyproject = (ROOT / "pyproject.toml").read_text()
    table = pyproject.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    declared = set(re.findall(r"^([\w-]+) = ", table, flags=re.MULTILINE))
    assert "asr" in declared and "docs" in declared
    assert extras == declared


def test_each_profile_is_done_once_and_the_test_profile_covers_the_demo(repo: Path) -> None:
    assert installs(bootstrap(repo, "demo")[1])
    assert bootstrap(repo, "demo")[1] == []  # stamped: nothing runs, not even python
    assert installs(bootstrap(repo, "test")[1])  # the demo's stamp does not cover the tests
    assert bootstrap(repo, "test")[1] == []
    (repo / ".venv" / ".vramguard-installed-demo").unlink()
    assert bootstrap(repo, "demo")[1] == []  # the test profile's stamp covers the demo
    with (repo / "pyproject.toml").open("a") as file:
        file.write("\n# a changed dependency\n")
    assert installs(bootstrap(repo, "test")[1])


def test_dry_run_prints_the_installs_and_changes_nothing(repo: Path) -> None:
    done, calls = bootstrap(repo, "demo", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert calls == []
    lines = done.stdout.splitlines()
    assert ".venv/bin/python -m pip install -q torch==2.13.0" in lines
    assert ".venv/bin/python -m pip install -q -c scripts/constraints.txt -e .[cli,plot,nvml]" in lines
    assert not (repo / ".venv" / ".vramguard-installed-demo").exists()


def test_an_unknown_profile_is_refused_naming_the_accepted_ones(repo: Path) -> None:
    done, calls = bootstrap(repo, "everything")
    assert done.returncode == 2
    assert calls == []
    assert "'everything'" in done.stderr and "demo, test" in done.stderr


def test_the_readme_commands_and_ci_use_the_profiles() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "bash scripts/bootstrap.sh demo && .venv/bin/vramguard demo" in readme
    assert "bash scripts/bootstrap.sh test && .venv/bin/python -m pytest" in readme
    assert "bash scripts/bootstrap.sh test && .venv/bin/python -m pytest" in (ROOT / ".ci" / "run").read_text()


if sys.platform != "linux":  # the stub and the script are POSIX shell
    pytestmark = pytest.mark.skip(reason="POSIX shell")
