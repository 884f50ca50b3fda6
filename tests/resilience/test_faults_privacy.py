"""Privacy: nothing vramguard loads sends usage metrics unless the user turned them on. pyannote
4 reports telemetry by default and writes ``PYANNOTE_METRICS_ENABLED=true`` into the environment
when first imported; vramguard switches it off before any pyannote import of its own, and an
explicit setting of the user's is kept. (Before: after build_tiny_diarizer() and loading the
diarizer the variable read 'true' and pyannote resolved its telemetry endpoint.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.asr, pytest.mark.slow]

# In a fresh interpreter, without the variable the test suite's conftest sets: every socket
# connection and address lookup is recorded by an audit hook, before anything is imported.
SCRIPT = textwrap.dedent(
    """
    import json, os, sys, warnings
    warnings.simplefilter("ignore")
    events = []
    def audit(event, args):
        if event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.sendto"):
            events.append([event, repr(args)[:200]])
    sys.addaudithook(audit)
    import torch
    from vramguard.asr.testing import build_tiny_diarizer, sample_audio_path
    from vramguard.asr import _models
    from vramguard.asr._audio import load_audio
    folder = build_tiny_diarizer(sys.argv[1], force_speech=True)
    after_build = os.environ.get("PYANNOTE_METRICS_ENABLED")
    diarizer = _models.load_diarizer(str(folder), device=torch.device("cpu"), token=None)
    turns = _models.diarize(diarizer, load_audio(sample_audio_path()), num_speakers=None,
                            min_speakers=None, max_speakers=None)
    print(json.dumps({"events": events, "after_build": after_build, "turns": len(turns),
                      "final": os.environ.get("PYANNOTE_METRICS_ENABLED")}))
    """
)


def test_the_asr_path_opens_no_socket_and_leaves_telemetry_off(tmp_path: Path) -> None:
    pytest.importorskip("pyannote.audio")
    env = {k: v for k, v in os.environ.items() if k != "PYANNOTE_METRICS_ENABLED"}
    env["HF_HUB_OFFLINE"] = "1"
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "diarizer")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["after_build"] == "false" and outcome["final"] == "false"
    assert outcome["turns"] >= 1
    assert outcome["events"] == []


def test_an_explicit_user_setting_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    from vramguard.asr import _models

    for chosen in ("true", "false", "1"):
        monkeypatch.setenv("PYANNOTE_METRICS_ENABLED", chosen)
        _models.disable_telemetry_unless_set()
        assert os.environ["PYANNOTE_METRICS_ENABLED"] == chosen
    monkeypatch.delenv("PYANNOTE_METRICS_ENABLED")
    _models.disable_telemetry_unless_set()
    assert os.environ["PYANNOTE_METRICS_ENABLED"] == "false"
