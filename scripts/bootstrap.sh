#!/usr/bin/env bash
# Creates .venv and installs what one README command needs:
#   bash scripts/bootstrap.sh demo   torch + vramguard[cli,plot,nvml]: what `vramguard demo` imports
#   bash scripts/bootstrap.sh [test] every extra the test suite uses (the default)
# --dry-run prints the install commands instead of running them.
# Idempotent per profile: quick when nothing changed (the test profile also covers the demo's).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1

profile=test
dry=0
for arg in "$@"; do
  case "$arg" in
    demo | test) profile=$arg ;;
    --dry-run) dry=1 ;;
    *) echo "bootstrap: unknown argument '$arg' (accepted: demo, test, --dry-run)" >&2; exit 2 ;;
  esac
done
case "$profile" in
  # rich for the tables and progress, matplotlib for the figure, nvidia-ml-py for the
  # process's figure on a GPU (a few hundred KiB).
  demo) extras=cli,plot,nvml ;;
  test) extras=dev,nvml,asr,cli,plot,park,trainer,lightning,notebook,metrics,docs ;;
esac

run() {
  if [ "$dry" = 1 ]; then echo "$*"; else "$@"; fi
}

# ffmpeg: torchcodec (pyannote's file decoder) and the mp3/m4a loader need its libraries;
# only the test profile installs them.
if [ "$profile" = test ] && ! command -v ffmpeg >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing ffmpeg from the system packages" >&2
    if [ "$dry" = 1 ]; then
      echo "apt-get install -y ffmpeg"
    else
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null) \
        || echo "bootstrap: ffmpeg could not be installed; mp3/m4a input will be unavailable" >&2
    fi
  else
    echo "bootstrap: ffmpeg not found and not root; mp3/m4a input will be unavailable" >&2
  fi
fi

stamp() { echo ".venv/.vramguard-installed-$1"; }
want() { { echo "$1"; cat pyproject.toml scripts/constraints.txt scripts/bootstrap.sh; } | sha256sum | cut -d' ' -f1; }
# the test profile installs a superset of the demo's
covers=("$profile")
[ "$profile" = demo ] && covers+=(test)
for p in "${covers[@]}"; do
  if [ -f "$(stamp "$p")" ] && [ "$(cat "$(stamp "$p")")" = "$(want "$p")" ]; then
    [ "$dry" = 1 ] && echo "bootstrap: $profile is up to date ($(stamp "$p"))"
    exit 0
  fi
done

[ -x .venv/bin/python ] || run "$py" -m venv .venv
pip=(.venv/bin/python -m pip install -q)
# torch first, alone: the pinned CPU build on disk; every later install is held to it.
run "${pip[@]}" torch==2.13.0
run "${pip[@]}" -c scripts/constraints.txt -e ".[$extras]"

# torchaudio 2.11's wheel is a CUDA build; on a CPU torch its compiled libraries fail to load
# (libc10_cuda.so) and pyannote imports torchaudio unconditionally. Without them torchaudio
# runs in its pure-Python mode. Only done when torch is a CPU build and the import fails.
if [ "$dry" = 0 ] && .venv/bin/python -c "import importlib.util as u, sys; sys.exit(u.find_spec('torchaudio') is None)" \
  && ! .venv/bin/python -c "import torchaudio" >/dev/null 2>&1; then
  if .venv/bin/python -c "import torch,sys; sys.exit(0 if torch.version.cuda is None else 1)"; then
    site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    echo "bootstrap: CPU torch; removing torchaudio's CUDA-only compiled libraries" >&2
    rm -f "$site"/torchaudio/lib/*.so
  fi
fi
run .venv/bin/python -c "import vramguard"
if [ "$dry" = 1 ]; then
  echo "bootstrap: would write $(stamp "$profile")"
else
  want "$profile" > "$(stamp "$profile")"
  echo "bootstrap: ready (.venv, $profile)" >&2
fi
