#!/usr/bin/env bash
# Build variants of csrc/cuda/clip.cu's compile-time knobs and time their ops
# on the GPU, alternating the builds, so that one GPU session can choose
# between them (benchmarks/cuda_profile.py --variant prints the figures).
#
# Each argument is NAME=DEFINES, e.g. "mb4=-DTRAINOPS_CUDA_NORM_MIN_BLOCKS=4";
# NAME "base" with no defines is the build in the repository root, which must
# be built already (benchmarks/gpu_check.sh does it). The other variants are
# built in parallel in copies of the sources under $VARIANTS_DIR (default
# /tmp/trainops_variants), with the defines passed through NVCC_APPEND_FLAGS.
#
# Before a variant other than base is timed, the CUDA clip tests (those of
# test_cuda_clip.py and test_clip.py) run against it (from a copy of tests/ in
# its folder, so that its build is the one imported); a variant that fails
# them is reported and not timed.
#
# Usage: bash benchmarks/cuda_variants.sh [NAME=DEFINES ...]
#   (default: base, fused = -DTRAINOPS_CUDA_FUSED_FINALIZE=1, and v19 =
#   -DTRAINOPS_CUDA_V19_ELEMENT_MATH=1, the norm loop before the twentieth
#   session's leaner one; neither measured yet; RESULTS.md, GPU, has the H200
#   figures of mb4 =
#   -DTRAINOPS_CUDA_NORM_MIN_BLOCKS=4 and u8 = -DTRAINOPS_CUDA_UNROLL=8, and
#   those of the warp search against the binary search it replaced)
#
# VARIANTS_DEADLINE (seconds since the epoch, optional): every step's timeout
# is cut to end by then, and steps that would start after it are skipped
# (gpu_check.sh gives the whole script 270 s this way).
# GPU_CHECK_PYDEPS (optional): a folder of unpacked Python packages (pytest,
# numpy) that gpu_check.sh made for a machine without them.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-$(command -v python3 || command -v python)}"
WORK="${VARIANTS_DIR:-${TMPDIR:-/tmp}/trainops_variants}"
ROUNDS="${VARIANT_ROUNDS:-2}"
DEPS="${GPU_CHECK_PYDEPS:+:$GPU_CHECK_PYDEPS}"

# Seconds a step may take: $1, cut to the deadline; 0 when it has passed.
budget() {
  local left=$1
  if [[ -n "${VARIANTS_DEADLINE:-}" ]]; then
    left=$(( VARIANTS_DEADLINE - $(date +%s) ))
    (( left > $1 )) && left=$1
    (( left < 0 )) && left=0
  fi
  echo "$left"
}

# Runs "$@" under timeout with budget $1, or says it was skipped.
timed() {
  local limit
  limit=$(budget "$1")
  shift
  if (( limit <= 0 )); then
    echo "cuda_variants: past the deadline, skipped: $*"
    return 124
  fi
  timeout "$limit" "$@"
}

if [[ $# -eq 0 ]]; then
  set -- "base=" "fused=-DTRAINOPS_CUDA_FUSED_FINALIZE=1" "v19=-DTRAINOPS_CUDA_V19_ELEMENT_MATH=1"
fi

names=()
dirs=()
rm -rf "$WORK" && mkdir -p "$WORK"
jobs_each=$(( $(nproc) / $# )); (( jobs_each < 1 )) && jobs_each=1
for spec in "$@"; do
  name="${spec%%=*}"
  defs="${spec#*=}"
  names+=("$name")
  if [[ "$name" == "base" && -z "$defs" ]]; then
    dirs+=("$ROOT")
    continue
  fi
  dir="$WORK/$name"
  mkdir -p "$dir"
  cp -r setup.py pyproject.toml csrc trainops tests "$dir"/
  rm -f "$dir"/trainops/_C*.so
  dirs+=("$dir")
  echo "building $name ($defs)"
  (cd "$dir" && NVCC_APPEND_FLAGS="$defs" TRAINOPS_CUDA=1 TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" \
     MAX_JOBS=$jobs_each timed 300 "$PY" setup.py build_ext --inplace >"$dir/build.log" 2>&1 \
     || { echo "variant $name: BUILD FAILED"; tail -n 20 "$dir/build.log"; }) &
done
wait

tested=()
for i in "${!names[@]}"; do
  tested+=(1)
  [[ "${dirs[$i]}" == "$ROOT" ]] && continue
  compgen -G "${dirs[$i]}/trainops/_C*.so" >/dev/null || continue
  # Only the variant's folder (the current one) and the unpacked packages:
  # not the repository root that gpu_check.sh puts on PYTHONPATH.
  (cd "${dirs[$i]}" && PYTHONPATH="${DEPS#:}" "$PY" -c "import trainops; print('testing ${names[$i]}:', trainops.__file__)")
  # The CUDA clip tests: test_cuda_clip.py and the CUDA cases of test_clip.py
  # (the non-finite chunks, the fuzz against torch and the float64 oracle),
  # as gpu_check.sh selects them (an estimated 30-40 s a variant on an H200).
  if ! (cd "${dirs[$i]}" && PYTHONPATH="${DEPS#:}" TRAINOPS_REQUIRE_EXTENSION=1 timed 150 "$PY" -m pytest -q -x \
          -p no:cacheprovider -k "cuda or mixed_devices" tests/test_cuda_clip.py tests/test_clip.py 2>&1 | tail -n 15); then
    echo "variant ${names[$i]}: TESTS FAILED, not timed"
    tested[$i]=0
  fi
done

for round in $(seq "$ROUNDS"); do
  for i in "${!names[@]}"; do
    if ! compgen -G "${dirs[$i]}/trainops/_C*.so" >/dev/null; then
      echo "variant ${names[$i]}: not built"
      continue
    fi
    [[ "${tested[$i]}" == 1 ]] || continue
    PYTHONPATH="${dirs[$i]}$DEPS" TRAINOPS_REQUIRE_EXTENSION=1 timed 120 "$PY" benchmarks/cuda_profile.py \
      --variant "${names[$i]}" --reps 11 || echo "variant ${names[$i]}: RUN FAILED (round $round)"
  done
done
