#!/usr/bin/env bash
# GPU check of trainops' CUDA kernels on a bare GPU machine (torch preinstalled,
# no internet): build the extension from source, run the CUDA tests, run the GPU
# benchmarks and print a short table. On an H200 (2026-12-01) it took 3 min
# 48 s: two builds of 38 and 32 s (the first compiler's binary crashed, see
# below; the one that worked is tried first now), tests 51 s, GPU benchmarks
# 21 s, trainops bench 49 s. Every step has
# a timeout: build 120 s per compiler tried (two at most), tests 150, GPU
# benchmarks 90, trainops bench 100, and 20 for the instruction counts of
# benchmarks/sass_counts.py (which need no GPU); a step that runs out is
# reported and the script goes on. GPU_CHECK_DIAGNOSE=1 adds up to 6 minutes
# (2 min 3 s on the H200 with the variants of that day, before cuda_variants.sh
# also ran the CUDA clip tests against each variant).
#
# pytest, numpy: if the machine lacks them, the script unpacks the wheels in
# $GPU_CHECK_WHEELS (default .gpu_wheels/, git-ignored). Before a device run,
# on a machine with the package registry: `make gpu-wheels` (pytest, numpy and
# their dependencies for Python 3.12), then carry .gpu_wheels along.
#
# Environment (all optional):
#   PYTHON                 interpreter with torch (default: python3, else python)
#   OUT                    folder for logs and bench.json (default: /tmp/trainops_gpu_check)
#   TORCH_CUDA_ARCH_LIST   default "9.0" here (H100/H200 only) to save build time
#   MAX_JOBS               default: number of cores
#   GPU_CHECK_SKIP_BUILD=1 reuse an extension already built in place (the
#                          diagnostics' variant builds then use CC/CXX as set:
#                          on the H200 image set CC=/usr/bin/gcc CXX=/usr/bin/g++)
#   GPU_CHECK_WHEELS       folder of pytest wheels for a machine without pytest
#   GPU_CHECK_DIAGNOSE=1   then also benchmarks/cuda_profile.py --kernels and
#                          benchmarks/cuda_variants.sh (up to 6 more minutes)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT_DIR="${OUT:-${TMPDIR:-/tmp}/trainops_gpu_check}"
mkdir -p "$OUT_DIR"
PY="${PYTHON:-$(command -v python3 || command -v python)}"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
export TRAINOPS_CUDA=1                 # fail the build rather than silently build CPU only
export TRAINOPS_REQUIRE_EXTENSION=1    # never test the pure-PyTorch fallback by accident
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
STATUS=0
START=$(date +%s)

stamp() { echo "== [$(( $(date +%s) - START ))s] $*"; }

stamp "environment"
{
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
  "$PY" -c "import sys, torch; print('python', sys.version.split()[0], '| torch', torch.__version__, '| CUDA', torch.version.cuda, '| GPU', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none')"
  command -v nvcc >/dev/null && nvcc --version | tail -1 || echo "nvcc not on PATH (setup.py also looks in CUDA_HOME and /usr/local/cuda)"
  echo "CC=${CC:-unset} CXX=${CXX:-unset}: $("${CXX:-c++}" --version 2>&1 | head -1)"
  # A compiler that is a script (a wrapper) is shown: what it adds matters.
  if [[ -n "${CXX:-}" ]] && grep -Iq . "$CXX" 2>/dev/null; then head -c 1500 "$CXX"; echo; fi
} 2>&1 | tee "$OUT_DIR/environment.log"

# Whether a build works: its first op call and (with a GPU) a CUDA norm, in a
# child process so that a crash is reported rather than fatal. Exit status: 0
# it works; 128 + n killed by signal n (a segfault: 139); else it failed. The
# log holds "gpu_check: loaded" if the build loaded and ran its first op.
check_build() {  # $1: log file
  timeout 60 "$PY" -X faulthandler - >"$1" 2>&1 <<'PYEOF'
import torch, trainops
torch.ops.trainops.build_info()
print("gpu_check: loaded", flush=True)
assert "cuda" in trainops._extension.CLIP_DEVICES, "no CUDA kernels in this build"
if torch.cuda.is_available():
    x = [torch.tensor([3.0, 4.0], device="cuda")]
    assert torch.ops.trainops.multi_tensor_norm(x, 2.0, False)[0].item() == 5.0
PYEOF
}

# True when command $1 is the file $2 (links resolved).
same_file() {
  local path
  path="$(command -v "$1" 2>/dev/null)" || return 1
  [[ "$(readlink -f "$path")" == "$(readlink -f "$2")" ]]
}

if [[ "${GPU_CHECK_SKIP_BUILD:-0}" != "1" ]]; then
  # Compilers to try, in order: the system's /usr/bin/gcc and g++, then the
  # environment's (CC/CXX, else torch's default) if it is another. The second
  # is tried only when the first fails to build or its build does not load or
  # crashes. On the H200 image of 2026-12-01, CXX=/opt/gcc/bin/g++ (a script
  # running g++ 13.3 with its own -B and -isystem paths) built binaries that
  # segfaulted at their first op call, CPU-only ones too (cause not
  # established), and /usr/bin/g++ built one that passed every test
  # (RESULTS.md, GPU): trying it first saves a build and its check (~45 s).
  COMPILERS=()
  if [[ -x /usr/bin/g++ && -x /usr/bin/gcc ]]; then
    COMPILERS+=("/usr/bin/gcc:/usr/bin/g++")
  fi
  if (( ${#COMPILERS[@]} == 0 )) || ! same_file "${CXX:-c++}" /usr/bin/g++; then
    COMPILERS+=("${CC:-}:${CXX:-}")
  fi
  BUILT=0
  attempt=0
  for pair in "${COMPILERS[@]}"; do
    attempt=$((attempt + 1))
    cc="${pair%%:*}"
    cxx="${pair#*:}"
    stamp "build (TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST, MAX_JOBS=$MAX_JOBS, CXX=${cxx:-default})"
    rm -rf build/temp.* build/lib.* trainops/_C*.so  # no object of another compiler is reused
    compiler_env=()
    [[ -n "$cc" ]] && compiler_env+=("CC=$cc")
    [[ -n "$cxx" ]] && compiler_env+=("CXX=$cxx")
    log="$OUT_DIR/build_$attempt.log"
    BUILD_START=$(date +%s)
    if ! env ${compiler_env[@]+"${compiler_env[@]}"} timeout 120 "$PY" setup.py build_ext --inplace >"$log" 2>&1; then
      tail -n 40 "$log"
      echo "gpu_check: build with CXX=${cxx:-default} FAILED (full log: $log)"
      continue
    fi
    cp "$log" "$OUT_DIR/build.log"
    echo "built in $(( $(date +%s) - BUILD_START ))s"
    check_log="$OUT_DIR/load_check_$attempt.log"
    rc=0
    check_build "$check_log" || rc=$?
    if (( rc != 0 )); then
      tail -n 20 "$check_log"
      if (( rc > 128 )) || ! grep -q "gpu_check: loaded" "$check_log"; then
        echo "gpu_check: the build with CXX=${cxx:-default} does not load or crashed (exit status $rc); next compiler"
        continue
      fi
      # It loaded and ran an op, then failed without crashing (an assertion,
      # a CUDA error, a timeout): no other compiler would mend it; the tests
      # below show more.
      echo "gpu_check: the build with CXX=${cxx:-default} failed its check (exit status $rc)"
      STATUS=1
    fi
    BUILT=1
    # The variant builds of the diagnostics use the same compiler.
    if [[ -n "$cc" ]]; then export CC="$cc"; else unset CC; fi
    if [[ -n "$cxx" ]]; then export CXX="$cxx"; else unset CXX; fi
    break
  done
  if [[ "$BUILT" != 1 ]]; then
    echo "gpu_check: NO COMPILER GAVE A BUILD THAT RUNS (logs: $OUT_DIR/build_*.log, load_check_*.log)"
    exit 1
  fi
fi
if ! "$PY" -m trainops info 2>&1 | tee "$OUT_DIR/info.log"; then
  echo "gpu_check: THE BUILT EXTENSION DOES NOT LOAD (see above and $OUT_DIR/build.log)"
  exit 1
fi

stamp "CUDA tests"
# The device-parametrised CPU suites (test_clip, test_init) run on CUDA too;
# -k keeps their CUDA tests (every one has "cuda" in its id, or is the
# mixed-devices check) and every test of the test_cuda_* files. Their CPU tests
# run in CI already, and would cost this step's time budget.
TESTS=(tests/test_cuda_build.py tests/test_cuda_clip.py tests/test_clip.py tests/test_init.py tests/test_monitor.py)
SELECT="cuda or mixed_devices"
WHEELS="${GPU_CHECK_WHEELS:-$ROOT/.gpu_wheels}"
if ! "$PY" -c "import pytest, numpy" 2>/dev/null && compgen -G "$WHEELS/*.whl" >/dev/null; then
  # Unpacked outside $OUT_DIR, which may be copied back from the machine.
  # cuda_variants.sh adds GPU_CHECK_PYDEPS to its own PYTHONPATH.
  export GPU_CHECK_PYDEPS="${TMPDIR:-/tmp}/trainops_gpu_pydeps"
  echo "pytest or numpy is not installed: unpacking the wheels in $WHEELS to $GPU_CHECK_PYDEPS (but for packages already installed)"
  "$PY" - "$WHEELS" "$GPU_CHECK_PYDEPS" <<'PYEOF'
import glob, importlib.util, os, sys, zipfile
# PYTHONPATH comes before site-packages: a wheel of a package that is
# installed would shadow it, so those are skipped.
for wheel in sorted(glob.glob(sys.argv[1] + "/*.whl")):  # pure-Python wheels: unpacking is installing
    name = os.path.basename(wheel).split("-")[0].lower()
    if importlib.util.find_spec(name) is None:
        zipfile.ZipFile(wheel).extractall(sys.argv[2])
PYEOF
  export PYTHONPATH="$PYTHONPATH:$GPU_CHECK_PYDEPS"
fi
if ! "$PY" -c "import pytest, numpy" 2>/dev/null; then
  echo "gpu_check: TESTS NOT RUN: pytest or numpy is not installed and $WHEELS does not hold it (make gpu-wheels, then carry .gpu_wheels)"
  STATUS=1
elif ! timeout 150 "$PY" -m pytest -q -rs --durations=15 -p no:cacheprovider -k "$SELECT" "${TESTS[@]}" 2>&1 | tee "$OUT_DIR/tests.log"; then
  echo "gpu_check: TESTS FAILED (log: $OUT_DIR/tests.log)"
  STATUS=1
fi

stamp "GPU benchmarks"
if ! timeout 90 "$PY" benchmarks/bench_cuda_clip.py --json "$OUT_DIR/bench.json" 2>&1 | tee "$OUT_DIR/bench.log"; then
  echo "gpu_check: BENCHMARK FAILED (log: $OUT_DIR/bench.log)"
  STATUS=1
fi

stamp "trainops bench on the GPU (clip: GPT-2 and 10k x 100; init: GPT-2 normal / trunc_normal)"
if ! timeout 100 "$PY" -m trainops bench --device cuda --suite all --cases gpt2,10k_x_100 --dtypes fp32,bf16 \
    --json "$OUT_DIR/trainops_bench.json" 2>&1 | tee "$OUT_DIR/trainops_bench.log"; then
  echo "gpu_check: TRAINOPS BENCH FAILED (log: $OUT_DIR/trainops_bench.log)"
  STATUS=1
fi

stamp "predicted ceilings of the init transforms (benchmarks/sass_counts.py; compare with the init rows above)"
timeout 20 "$PY" benchmarks/sass_counts.py 2>&1 | tee "$OUT_DIR/sass_counts.log" || echo "gpu_check: sass_counts.py did not run (no cuobjdump?); not a failure"

if [[ "${GPU_CHECK_DIAGNOSE:-0}" == "1" ]]; then
  # Where the time goes (host, device, kernels) and compile-time variants of
  # the clip kernels, alternated: what a session needs to act on the figures
  # above within one lease. Not part of the pass/fail status.
  stamp "diagnostics: benchmarks/cuda_profile.py --kernels"
  timeout 90 "$PY" benchmarks/cuda_profile.py --kernels --json "$OUT_DIR/profile.json" 2>&1 | tee "$OUT_DIR/profile.log" \
    || echo "gpu_check: cuda_profile.py failed or ran out of time (not a failure of the check)"
  stamp "diagnostics: benchmarks/cuda_variants.sh"
  # A deadline, not an outer timeout: the script's own timeouts run their
  # commands in process groups of their own, which an outer one would miss.
  VARIANTS_DEADLINE=$(( $(date +%s) + 270 )) bash benchmarks/cuda_variants.sh 2>&1 | tee "$OUT_DIR/variants.log" \
    || echo "gpu_check: cuda_variants.sh failed or ran out of time (not a failure of the check)"
fi

stamp "done, status $STATUS (logs in $OUT_DIR)"
exit "$STATUS"
