#!/usr/bin/env bash
# gpu-wheels.sh: the companion step of scripts/gpu-check.sh, run HERE (it needs PyPI).
#
# Downloads into .whl/ (ignored by git) the wheels of what the GPU machine's image lacks, for its
# python3: CPython 3.12, manylinux x86_64. The list, and why each one travels, is in
# scripts/gpu_deps.py (CARRIED); a package that PyPI has only as an sdist is built here into a
# pure-Python wheel. Then it checks that each wheel's needs are met by the image or by another
# wheel, that there is one version of each, and that the wheels and the working tree together stay
# within the 64 MiB a device run carries. It names what cannot travel (pyannote.audio).
#
#   bash scripts/gpu-wheels.sh        # then: run(command="bash scripts/gpu-check.sh", carry=[".whl"], timeout_s=540)
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
dest=.whl
limit_bytes=$((64 * 1024 * 1024))
export PIP_DISABLE_PIP_VERSION_CHECK=1

# pip matches the manylinux level exactly: every level a wheel of these may be tagged with.
target=(--python-version 3.12 --implementation cp
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64)

# Two versions of one package stop the whole install there: start from an empty folder.
rm -rf "$dest"
mkdir -p "$dest"
build=$(mktemp -d /tmp/vramguard-gpu-wheels.XXXXXX)
trap 'rm -rf "$build"' EXIT

while read -r spec kind; do
  echo "gpu-wheels: $spec ($kind)"
  if [ "$kind" = sdist ]; then
    "$py" -m pip wheel -q --no-deps -w "$build" "$spec"
    built=("$build"/*.whl)
    case "${built[0]}" in
      *-py3-none-any.whl) mv "${built[0]}" "$dest/" ;;
      *) echo "gpu-wheels: $spec did not build into a pure-Python wheel: ${built[0]}" >&2; exit 1 ;;
    esac
  else
    "$py" -m pip download -q --no-deps --only-binary=:all: "${target[@]}" -d "$dest" "$spec"
  fi
done < <("$py" scripts/gpu_deps.py carried)

"$py" scripts/gpu_deps.py check-wheels "$dest"

wheels=("$dest"/*.whl)
wheels_bytes=$(du -cb "${wheels[@]}" | tail -n 1 | cut -f1)
tree_bytes=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- | tail -n 1 | cut -f1)
total=$((wheels_bytes + tree_bytes))
echo "gpu-wheels: ${#wheels[@]} wheels, $((wheels_bytes / 1024)) KiB;" \
  "with the working tree ($((tree_bytes / 1024)) KiB) $((total / 1024)) KiB of the 65536 KiB a run carries"
if [ "$total" -gt "$limit_bytes" ]; then
  echo "gpu-wheels: over the 64 MiB a device run carries" >&2
  exit 1
fi
echo "gpu-wheels: cannot travel (the tests that need it skip there):"
"$py" scripts/gpu_deps.py cannot-travel | sed 's/^/  /'
