"""Instructions per element of the CUDA init transforms, read from SASS (no GPU needed).

Compiles a probe kernel per distribution -- one thread draws one Philox block
with the very code of csrc/include/trainops/ (philox.h, distributions.h) that
the init kernel runs and stores its four fp32 values -- plus a kernel that only
stores (the index and store work every probe shares), and counts the
instructions on each kernel's main path (up to its first EXIT; rarely taken
slow paths such as the IEEE sqrt's special cases sit after it). What a probe
costs beyond the store-only kernel, divided by 4, is the per-element cost of
Philox + transform. Against a GPU's issue rate that bounds the init kernel's
throughput before any memory is touched: run it after changing a transform to
see whether a bandwidth target is still within reach.

    python benchmarks/sass_counts.py [--arch sm_90] [--sms 132 --ghz 1.98]

Needs nvcc (CUDA_HOME or PATH) and cuobjdump (the CUDA toolkit's or triton's).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from tests import sass_tools  # noqa: E402  (one cuobjdump finder and SASS parser, shared with the tests)

PROBES = r"""
#include "trainops/distributions.h"
#include "trainops/philox.h"
using namespace trainops;
__device__ __forceinline__ uint64_t item() { return blockIdx.x * uint64_t(blockDim.x) + threadIdx.x; }
template <InitKind K>
__global__ void sample_kernel(const dist::DistParams<float> d, uint64_t seed, uint64_t key, float4* out) {
  float v[4];
  dist::sample_block_k<K>(d, philox_block(seed, key, item()), v);
  out[item()] = make_float4(v[0], v[1], v[2], v[3]);
}
__global__ void philox_kernel(uint64_t seed, uint64_t key, uint4* out) {
  const Philox4x32 w = philox_block(seed, key, item());
  out[item()] = make_uint4(w.v[0], w.v[1], w.v[2], w.v[3]);
}
__global__ void store_kernel(float v, float4* out) { out[item()] = make_float4(v, v, v, v); }
template __global__ void sample_kernel<InitKind::kUniform>(const dist::DistParams<float>, uint64_t, uint64_t, float4*);
template __global__ void sample_kernel<InitKind::kNormal>(const dist::DistParams<float>, uint64_t, uint64_t, float4*);
template __global__ void sample_kernel<InitKind::kTruncNormal>(const dist::DistParams<float>, uint64_t, uint64_t, float4*);
"""
NAMES = {"ILN8trainops8InitKindE0E": "uniform", "ILN8trainops8InitKindE1E": "normal", "ILN8trainops8InitKindE2E": "trunc_normal"}


def find_nvcc() -> str:
    for home in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if home and os.path.isfile(os.path.join(home, "bin", "nvcc")):
            return os.path.join(home, "bin", "nvcc")
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        sys.exit("sass_counts: nvcc not found (set CUDA_HOME)")
    return nvcc


def main_path_length(opcodes: list[str]) -> int:
    return opcodes.index("EXIT") + 1 if "EXIT" in opcodes else len(opcodes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="sm_90")
    parser.add_argument("--sms", type=int, default=132, help="SMs of the GPU to predict for (H200: 132)")
    parser.add_argument("--ghz", type=float, default=1.98, help="its boost clock (H200: 1.98)")
    args = parser.parse_args()
    cuobjdump = sass_tools.find_cuobjdump()
    if cuobjdump is None:
        sys.exit("sass_counts: cuobjdump not found (CUDA toolkit bin/ or triton's backends/nvidia/bin/)")
    with tempfile.TemporaryDirectory() as tmp:
        source, cubin = os.path.join(tmp, "probes.cu"), os.path.join(tmp, "probes.cubin")
        with open(source, "w") as f:
            f.write(PROBES)
        # The flags of the extension's CUDA build that change code generation (setup.py).
        subprocess.run(
            [find_nvcc(), "-O3", "-std=c++17", "--fmad=false", f"-arch={args.arch}", "-cubin",
             "-I", os.path.join(ROOT, "csrc", "include"), "-o", cubin, source],
            check=True,
        )
        sass = sass_tools.parse_sass(subprocess.run([cuobjdump, "-sass", cubin], capture_output=True, text=True, check=True).stdout)
    lengths = {}
    for (_, mangled), opcodes in sass.items():
        name = sass_tools.kernel_name(mangled)
        for tag, dist_name in NAMES.items():
            if tag in mangled:
                name = dist_name
        lengths[name] = main_path_length(opcodes)
    base = lengths["store_kernel"]
    issue = args.sms * 4 * 32 * args.ghz * 1e9  # thread instructions/s: 1 warp instruction/cycle/scheduler
    print(f"{args.arch}: {args.sms} SMs x 4 schedulers x 32 lanes x {args.ghz} GHz = {issue / 1e12:.1f} T thread instructions/s")
    print(f"{'work':14s} {'instr/block':>11s} {'instr/elem':>10s} {'max G elem/s':>12s} {'max fp32 GB/s':>13s}")
    for name in ("philox_kernel", "uniform", "normal", "trunc_normal"):
        per_block = lengths[name] - base
        per_elem = per_block / 4
        elems = issue / per_elem
        print(f"{name:14s} {per_block:11d} {per_elem:10.1f} {elems / 1e9:12.0f} {4 * elems / 1e9:13.0f}")
    print("instr = SASS instructions on the main path beyond a store-only kernel; an upper bound on throughput")
    return 0


if __name__ == "__main__":
    sys.exit(main())
