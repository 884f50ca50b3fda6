"""``vramguard demo`` on the host labels its figures in host words in the tables themselves: the
host has no allocator cache, so "still cached 59.4 MiB" after a release that returned everything
read as a failure of the release (README: ≈ 0)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_demo_tables_on_the_host_use_host_words(tmp_path: Path) -> None:
    small = ["--device", "cpu", "--layers", "1", "--steps", "1", "--repeat", "1", "--no-plot"]
    done = subprocess.run(
        [sys.executable, "-m", "vramguard", "demo", *small],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "COLUMNS": "160"},
    )
    assert done.returncode == 0, done.stderr
    tables = done.stdout.split("after a bare del")[0]
    headers = [line.split() for line in tables.splitlines() if line.strip().startswith("peak above start")]
    assert len(headers) == 2, tables  # one outcome table per run
    assert all(" ".join(h[4:7]) == "resident beyond malloc" for h in headers), headers
    labels = [line.split("  ")[0].strip() for line in tables.splitlines() if "MiB" in line and "  " in line.strip()]
    assert labels.count("malloc in use") == 2 and labels.count("resident") == 2, labels
    assert tables.count("host: malloc in use = ") == 2
    assert "still cached" not in tables and " allocated " not in tables and " reserved " not in tables
    headline = next(line for line in done.stdout.splitlines() if line.startswith("after a bare del"))
    assert " cached)" not in headline and headline.count(" resident beyond malloc)") == 2, headline
