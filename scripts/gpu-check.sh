#!/usr/bin/env bash
# gpu-check.sh: one prepared command that proves vramguard's CUDA path on a lent GPU machine
# (one H100, python3 with torch 2.11 CUDA 13, no network), in under 8 minutes in all.
#
# In order, each step bounded by `timeout` (the limits below add up to less than 8 minutes); a
# step that fails or times out never stops the later ones:
#   0. install, without touching the machine's torch: the wheels in .whl/ (made here beforehand by
#      scripts/gpu-wheels.sh) into a scratch --target, and vramguard, built from this working tree
#      into a wheel and installed into another one (its pytest11 entry point loads the plugin, once);
#   1. the environment header (scripts/gpu_env.py): date, nvidia-smi, torch and CUDA versions, the
#      device's name, the CUDA context's size as NVML sees it;
#   2. every `gpu` test: pytest -m gpu, its JUnit XML in $OUT/gpu-tests.xml;
#   3. the reduced CUDA benchmarks (benchmarks/*.py --device cuda --quick);
#   4. $OUT/summary.md (scripts/gpu_summary.py): the header, issue 24's 13 points against their
#      test_gpu_pointNN_* tests, the other gpu tests' counts, each benchmark's table or failure.
# The exit code is 0 only when everything passed (the rule is in gpu_summary.py's docstring).
#
# On the device machine, with the `run` tool, after `bash scripts/gpu-wheels.sh` here:
#   run(command="bash scripts/gpu-check.sh", carry=[".whl"], timeout_s=540)
# What comes back under $OUT (5 files): summary.md, gpu-tests.xml, gpu-check.log (all of this
# output), reclaim-cuda.png, and gpu-check-files.tar.gz (every benchmark's JSON, markdown and
# plot, each step's log, the header).
#
# Here, without a GPU, `bash scripts/gpu-check.sh --dry-run` runs the same plumbing in under a
# minute: the wheels' installation checked into a scratch target, the gpu tests collected and
# skipped, the JUnit XML and the summary written, the benchmarks listed as not run.
# OUT defaults to a new folder under /tmp; PYTHON to python3 (the dry run: .venv/bin/python).
# Nothing is written outside $OUT and /tmp.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
root=$PWD

usage="usage: [OUT=folder] bash scripts/gpu-check.sh [--dry-run]"
dry_run=0
for arg in "$@"; do
  case $arg in
    --dry-run) dry_run=1 ;;
    -h | --help) echo "$usage"; exit 0 ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done

# Each step's limit in seconds. Their sum must stay under budget_s (the 8 minutes the whole check
# may take); the run tool's timeout_s=540 leaves room beyond it for `timeout -k`'s grace.
limit_install=40
limit_header=30
limit_tests=180
limit_one_test=120 # pytest-timeout's, where installed: one hung test does not take the whole step
limit_reclaim=60
limit_leaks=45
limit_overhead=30
limit_loop=30
limit_park=30
limit_summary=20
budget_s=480
limits_s=$((limit_install + limit_header + limit_tests + limit_reclaim + limit_leaks + limit_overhead + limit_loop \
  + limit_park + limit_summary))
if [ "$limits_s" -ge "$budget_s" ]; then
  echo "gpu-check: the steps' limits add up to ${limits_s} s, over the ${budget_s} s budget" >&2
  exit 2
fi

if [ -z "${PYTHON:-}" ]; then
  PYTHON=python3
  if [ "$dry_run" = 1 ] && [ -x "$root/.venv/bin/python" ]; then PYTHON=$root/.venv/bin/python; fi
fi
OUT=${OUT:-$(mktemp -d /tmp/vramguard-gpu-check.XXXXXX)}
mkdir -p "$OUT" || exit 2
work=$(mktemp -d /tmp/vramguard-gpu-work.XXXXXX) || exit 2
trap 'rm -rf "$work"' EXIT
site=$work/site     # the carried wheels
vgsite=$work/vg-site # vramguard, built from this working tree
logs=$work/logs
bench=$work/bench
steps=$work/steps.tsv
mkdir -p "$logs" "$bench"
: >"$steps"

export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# pip: no configuration file of the machine's (index, constraints), no cache, no prompt.
export PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
export MPLBACKEND=Agg HF_HUB_OFFLINE=1 PYANNOTE_METRICS_ENABLED=false
# Caches that would otherwise land in the repository or $HOME.
export MPLCONFIGDIR=$work/matplotlib HYPOTHESIS_STORAGE_DIRECTORY=$work/hypothesis TRITON_CACHE_DIR=$work/triton

say() { printf '[gpu-check %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

# run_step NAME LIMIT_S COMMAND...: runs it under `timeout`, its output shown and kept in a log,
# and records name, exit code, seconds, limit, log and command for the summary.
run_step() {
  local name=$1 limit=$2 log=$logs/$1.log start=$SECONDS rc
  shift 2
  say "$name: start (limit ${limit} s): $*"
  timeout -k 10 "$limit" "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  case $rc in
    0) say "$name: passed in $((SECONDS - start)) s" ;;
    124 | 137) say "$name: TIMED OUT after $((SECONDS - start)) s" ;;
    *) say "$name: FAILED (exit $rc) after $((SECONDS - start)) s" ;;
  esac
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - start))" "$limit" "$log" "$*" >>"$steps"
}

# bench NAME LIMIT_S SCRIPT ARGS...: a benchmark step; the dry run only lists it.
bench() {
  local name=bench-$1 limit=$2
  shift 2
  if [ "$dry_run" = 1 ]; then
    say "$name: not run: dry run"
    printf '%s\tnot-run\t0\t%s\t%s\t%s\n' "$name" "$limit" "$logs/$name.log" "$PYTHON $*" >>"$steps"
  else
    run_step "$name" "$limit" "$PYTHON" "$@"
  fi
}

# The install step, run as its own bash under `timeout` (hence exported, with what it reads).
# shellcheck disable=SC2317 # reached through `bash -c install_step`
install_step() {
  set -e
  local pip=("$PYTHON" -m pip) wheels=("$root"/.whl/*.whl)
  if [ -e "${wheels[0]}" ]; then
    if [ "$dry_run" = 1 ]; then
      # Checked for the machine's python (CPython 3.12, manylinux x86_64): installed, not imported.
      "${pip[@]}" install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
        --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 "${wheels[@]}"
    else
      "${pip[@]}" install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "${wheels[@]}"
    fi
    echo "installed ${#wheels[@]} wheels from .whl/: $(cd "$root/.whl" && echo ./*.whl)"
  else
    echo "no wheels in .whl/ (made by scripts/gpu-wheels.sh): the packages the image lacks are missing"
  fi
  # pyproject's `license = "MIT"` (PEP 639) needs setuptools 77 or later.
  "$PYTHON" -c 'import setuptools; print("building vramguard with setuptools", setuptools.__version__)'
  # setuptools writes build/ and *.egg-info beside the sources: it builds from a copy.
  mkdir -p "$work/src" "$work/dist"
  cp -r "$root/pyproject.toml" "$root/README.md" "$root/LICENSE" "$root/vramguard" "$work/src/"
  find "$work/src" -name __pycache__ -prune -exec rm -rf {} +
  "${pip[@]}" wheel -q --no-deps --no-build-isolation --no-index -w "$work/dist" "$work/src"
  "${pip[@]}" install -q --no-index --no-deps --no-compile --no-cache-dir --target "$vgsite" "$work"/dist/vramguard-*.whl
  cd "$work"
  PYTHONPATH=$vgsite "$PYTHON" -c '
import importlib.metadata as md, sys, vramguard
assert vramguard.__file__.startswith(sys.argv[1]), vramguard.__file__
found = [ep.value for ep in md.entry_points(group="pytest11") if ep.name == "vramguard"]
print(f"vramguard {vramguard.__version__} imports from {vramguard.__file__}; pytest11: {found}")
assert found, "no pytest11 entry point"' "$vgsite"
}
export -f install_step
export PYTHON root work site vgsite dry_run

main() {
  local start=$SECONDS
  say "vramguard GPU check$([ "$dry_run" = 1 ] && echo ' (DRY RUN)'): OUT=$OUT, python: $PYTHON," \
    "steps' limits ${limits_s} s"
  say "cannot travel to the machine (the tests that need it skip):"
  "$PYTHON" scripts/gpu_deps.py cannot-travel | sed 's/^/    /'

  run_step install "$limit_install" bash -c install_step
  # The working tree first: the code under test is always this checkout's. The installed copy
  # gives pytest the entry point; the carried wheels (not importable by the dry run's python) last.
  if [ "$dry_run" = 1 ]; then
    export PYTHONPATH=$root:$vgsite${PYTHONPATH:+:$PYTHONPATH}
  else
    export PYTHONPATH=$root:$vgsite:$site${PYTHONPATH:+:$PYTHONPATH}
  fi
  # The plugin is loaded once: by its entry point where one is installed, else by -p.
  local plugin=()
  if ! "$PYTHON" -c 'import importlib.metadata as m, sys
sys.exit(not any(e.name == "vramguard" for e in m.entry_points(group="pytest11")))'; then
    say "no pytest11 entry point for vramguard: loading its plugin with -p"
    plugin=(-p vramguard.pytest_plugin)
  fi

  local cuda=(--cuda)
  [ "$dry_run" = 1 ] && cuda=()
  run_step header "$limit_header" "$PYTHON" scripts/gpu_env.py --markdown "$work/env.md" ${cuda[@]+"${cuda[@]}"}

  # Serial (no -n): the gpu tests measure their own process's memory.
  local tests=("$PYTHON" -m pytest -m gpu -p no:cacheprovider --junitxml "$OUT/gpu-tests.xml" -q
    --continue-on-collection-errors ${plugin[@]+"${plugin[@]}"})
  if "$PYTHON" -c 'import pytest_timeout' 2>/dev/null; then tests+=(--timeout "$limit_one_test"); fi
  run_step tests "$limit_tests" "${tests[@]}"

  bench reclaim "$limit_reclaim" benchmarks/reclaim.py --device cuda --quick \
    --json "$bench/reclaim-cuda.json" --markdown "$bench/reclaim-cuda.md" --plot "$bench/reclaim-cuda.png"
  bench leaks "$limit_leaks" benchmarks/leak_detection.py --device cuda --quick \
    --json "$bench/leaks-cuda.json" --markdown "$bench/leaks-cuda.md"
  bench overhead "$limit_overhead" benchmarks/overhead.py --device cuda --quick \
    --json "$bench/overhead-cuda.json" --markdown "$bench/overhead-cuda.md"
  bench loop "$limit_loop" benchmarks/inference_loop.py --device cuda --quick --step-ms 4,20 \
    --json "$bench/loop-cuda.json" --markdown "$bench/loop-cuda.md"
  bench park "$limit_park" benchmarks/park.py --device cuda --quick \
    --json "$bench/park-cuda.json" --markdown "$bench/park-cuda.md"

  say "summary: $OUT/summary.md"
  local verdict mode=()
  [ "$dry_run" = 1 ] && mode=(--dry-run)
  timeout -k 5 "$limit_summary" "$PYTHON" scripts/gpu_summary.py --junit "$OUT/gpu-tests.xml" \
    --header "$work/env.md" --steps "$steps" --work "$work" --out "$OUT/summary.md" ${mode[@]+"${mode[@]}"}
  verdict=$?
  if [ "$verdict" -gt 1 ] || [ ! -s "$OUT/summary.md" ]; then
    say "the summary builder failed (exit $verdict): a plain summary instead"
    { echo "# vramguard GPU check: the summary builder failed (exit $verdict)"; echo; echo '```text'
      cat "$steps"; echo '```'; } >"$OUT/summary.md"
    verdict=1
  fi
  sed -n '1,/^## What could not travel/p' "$OUT/summary.md" | sed '$d'

  # At most 8 files come back: the many small ones travel in one archive.
  [ -f "$bench/reclaim-cuda.png" ] && cp "$bench/reclaim-cuda.png" "$OUT/"
  local kept=(steps.tsv logs bench)
  [ -f "$work/env.md" ] && kept+=(env.md)
  tar -czf "$OUT/gpu-check-files.tar.gz" -C "$work" "${kept[@]}"
  say "back under $OUT: $(cd "$OUT" && echo ./*)"
  if [ "$verdict" = 0 ]; then
    say "PASSED in $((SECONDS - start)) s"
  else
    say "NOT PASSED in $((SECONDS - start)) s (see $OUT/summary.md)"
  fi
  return "$verdict"
}

main 2>&1 | tee "$OUT/gpu-check.log"
exit "${PIPESTATUS[0]}"
