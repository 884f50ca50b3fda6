#!/usr/bin/env bash
# Creates .venv and installs vramguard with every extra (dev, nvml, asr, cli, plot, park, trainer,
# lightning, notebook, metrics, docs).
# Both README commands call this; it is idempotent and quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
py=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1

# ffmpeg: torchcodec (pyannote's file decoder) and the mp3/m4a loader need its libraries.
if ! command -v ffmpeg >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing ffmpeg from the system packages" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null) \
      || echo "bootstrap: ffmpeg could not be installed; mp3/m4a input will be unavailable" >&2
  else
    echo "bootstrap: ffmpeg not found and not root; mp3/m4a input will be unavailable" >&2
  fi
fi

stamp=.venv/.vramguard-installed
want=$(cat pyproject.toml scripts/constraints.txt scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

[ -x .venv/bin/python ] || "$py" -m venv .venv
pip=(.venv/bin/python -m pip install -q)
# torch first, alone: the pinned CPU build on disk.
"${pip[@]}" torch==2.13.0
"${pip[@]}" -c scripts/constraints.txt -e ".[dev,nvml,asr,cli,plot,park,trainer,lightning,notebook,metrics,docs]"

# torchaudio 2.11's wheel is a CUDA build; on a CPU torch its compiled libraries fail to load
# (libc10_cuda.so) and pyannote imports torchaudio unconditionally. Without them torchaudio
# runs in its pure-Python mode. Only done when torch is a CPU build and the import fails.
if ! .venv/bin/python -c "import torchaudio" >/dev/null 2>&1; then
  if .venv/bin/python -c "import torch,sys; sys.exit(0 if torch.version.cuda is None else 1)"; then
    site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    echo "bootstrap: CPU torch; removing torchaudio's CUDA-only compiled libraries" >&2
    rm -f "$site"/torchaudio/lib/*.so
  fi
fi
.venv/bin/python -c "import vramguard" 
echo "$want" > "$stamp"
echo "bootstrap: ready (.venv)" >&2
