"""Instructions per element of the CUDA init transforms and of the norm kernel's loops, read from SASS (no GPU needed).

Compiles probe kernels -- one thread draws one Philox block with the very code
of csrc/include/trainops/ (philox.h, distributions.h) that the init kernel runs
and stores its four fp32 values with one 16-byte store -- plus a kernel that
only stores, and counts the instructions on each probe's main path (up to its
first unconditional EXIT; the IEEE sqrt's rarely taken special cases are a
call placed after it, though the few instructions that branch around the call
are counted). What a probe costs beyond the store-only kernel, divided by 4, is
the per-element cost of Philox + transform. The init kernel itself also runs
its per-item index math and the checks around its store (one 16-byte store per
whole, aligned block, as here), so these counts are a lower bound on its
instructions per element and the throughputs derived from them an upper bound:
enough to show that a bandwidth target is out of reach, not that it is met.
Run it after changing a transform.

The second table reads the installed extension's own machine code (when it
was built with CUDA): the main loop of the p = 2 norm kernel for each dtype
(sass_tools.norm_loop_costs), its instructions per element, and the read rate
at which issuing them alone would take all of the GPU's issue slots. The
loop's loads wait on memory while other warps issue, so a ceiling well above
the GPU's copy bandwidth leaves the kernel bound by memory; one near or below
it does not (the fp16 loop before the twentieth session: 19 instructions per
element).

    python benchmarks/sass_counts.py [--arch sm_90] [--sms 132 --ghz 1.98]

Needs nvcc and cuobjdump (the CUDA toolkit's or triton's).
"""

from __future__ import annotations

import argparse
import glob
import importlib.machinery
import importlib.util
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from tests import sass_tools  # noqa: E402  (one toolkit finder and SASS parser, shared with the tests)

PROBES = r"""
#include "trainops/distributions.h"
#include "trainops/philox.h"
using namespace trainops;
__device__ __forceinline__ uint64_t item() { return blockIdx.x * uint64_t(blockDim.x) + threadIdx.x; }
template <InitKind K>
__device__ __forceinline__ void sample(const dist::DistParams<float>& d, uint64_t seed, uint64_t key, float4* out) {
  // The normal's table, read from shared memory as the init kernel does; the
  // kernel fills it once per CUDA block, not counted here.
  __shared__ dist::NormalIcdfTable tab;
  float v[4];
  dist::sample_block_k<K>(d, philox_block(seed, key, item()), v, tab);
  out[item()] = make_float4(v[0], v[1], v[2], v[3]);
}
extern "C" __global__ void uniform(const dist::DistParams<float> d, uint64_t seed, uint64_t key, float4* out) {
  sample<InitKind::kUniform>(d, seed, key, out);
}
extern "C" __global__ void normal(const dist::DistParams<float> d, uint64_t seed, uint64_t key, float4* out) {
  sample<InitKind::kNormal>(d, seed, key, out);
}
extern "C" __global__ void trunc_normal(const dist::DistParams<float> d, uint64_t seed, uint64_t key, float4* out) {
  sample<InitKind::kTruncNormal>(d, seed, key, out);
}
extern "C" __global__ void philox(uint64_t seed, uint64_t key, uint4* out) {
  const Philox4x32 w = philox_block(seed, key, item());
  out[item()] = make_uint4(w.v[0], w.v[1], w.v[2], w.v[3]);
}
extern "C" __global__ void store_only(float v, float4* out) { out[item()] = make_float4(v, v, v, v); }
"""
PROBE_NAMES = ("philox", "uniform", "normal", "trunc_normal")


def main() -> int:
    """Compile the probes, count, and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="sm_90")
    parser.add_argument("--sms", type=int, default=132, help="SMs of the GPU to predict for (H200: 132)")
    parser.add_argument("--ghz", type=float, default=1.98, help="its boost clock (H200: 1.98)")
    args = parser.parse_args()
    cuda_home = sass_tools.find_cuda_home()
    if cuda_home is None:
        sys.exit("sass_counts: no CUDA toolkit found (set CUDA_HOME)")
    cuobjdump = sass_tools.find_cuobjdump()
    if cuobjdump is None:
        sys.exit("sass_counts: cuobjdump not found (CUDA toolkit bin/ or triton's backends/nvidia/bin/)")
    with tempfile.TemporaryDirectory() as tmp:
        source, cubin = os.path.join(tmp, "probes.cu"), os.path.join(tmp, "probes.cubin")
        with open(source, "w") as f:
            f.write(PROBES)
        # setup.py's nvcc flags that change code generation: -O3 and --fmad=false (the
        # headers are torch-free C++17, so the language standard changes nothing).
        subprocess.run(
            [os.path.join(cuda_home, "bin", "nvcc"), "-O3", "-std=c++17", "--fmad=false", f"-arch={args.arch}", "-cubin",
             "-I", os.path.join(ROOT, "csrc", "include"), "-o", cubin, source],
            check=True,
        )
        sass = sass_tools.parse_sass(subprocess.run([cuobjdump, "-sass", cubin], capture_output=True, text=True, check=True).stdout)
    lengths: dict[str, int] = {name: len(sass_tools.main_path(ins)) for (_, name), ins in sass.items()}
    base = lengths["store_only"]
    issue = args.sms * 4 * 32 * args.ghz * 1e9  # thread instructions/s: 1 warp instruction/cycle/scheduler
    print(f"{args.arch}: {args.sms} SMs x 4 schedulers x 32 lanes x {args.ghz} GHz = {issue / 1e12:.1f} T thread instructions/s")
    print(f"{'transform':14s} {'instr/block':>11s} {'instr/elem':>10s} {'max G elem/s':>12s} {'max fp32 GB/s':>13s}")
    for name in PROBE_NAMES:
        per_block = lengths[name] - base
        per_elem = per_block / 4
        elems = issue / per_elem
        print(f"{name:14s} {per_block:11d} {per_elem:10.1f} {elems / 1e9:12.0f} {4 * elems / 1e9:13.0f}")
    print("instr = SASS instructions of Philox + transform (main path, beyond a store-only kernel): a lower bound")
    print("on the init kernel's instructions per element, so the rates are upper bounds on its throughput")
    print_norm_loops(cuobjdump, args.arch, issue)
    return 0


_ELEMENT_BYTES = {"fp16": 2, "bf16": 2, "fp32": 4, "fp64": 8}


def _extension_path() -> str | None:
    """trainops._C as an installed package has it (make cuda-check's wheel),
    else the repository's own (an in-place build: gpu_check.sh)."""
    elsewhere = [p for p in sys.path if os.path.abspath(p or os.curdir) != ROOT]
    for spec in (importlib.machinery.PathFinder.find_spec("trainops", elsewhere), importlib.util.find_spec("trainops")):
        for folder in (spec.submodule_search_locations or []) if spec else []:
            built = sorted(glob.glob(os.path.join(folder, "_C*.so")))
            if built:
                return built[0]
    return None


def print_norm_loops(cuobjdump: str, arch: str, issue: float) -> None:
    """The norm kernel's main loop per dtype, from the installed extension."""
    origin = _extension_path()
    if origin is None:
        print("norm loops: trainops._C not found")
        return
    listing = subprocess.run([cuobjdump, "-sass", "-arch", arch, origin], capture_output=True, text=True)
    kernels = [
        ins
        for (a, name), ins in sass_tools.parse_sass(listing.stdout).items()
        if a == arch and sass_tools.is_two_norm_kernel(name)
    ]
    if not kernels:
        print(f"norm loops: no {arch} code of the p = 2 norm kernel in {origin} (a build without CUDA?)")
        return
    print(f"\nnorm kernel (p = 2) main loops, {origin}:")
    print(f"{'dtype':6s} {'instr/loop':>10s} {'elements':>8s} {'instr/elem':>10s} {'issue ceiling GB/s':>18s}")
    for dtype, (count, elements, _) in sorted(sass_tools.norm_loop_costs(kernels[0]).items()):
        ceiling = issue / count * elements * _ELEMENT_BYTES[dtype]
        print(f"{dtype:6s} {count:10d} {elements:8d} {count / elements:10.2f} {ceiling / 1e9:18.0f}")
    print("issue ceiling: bytes read per second if the loop's instructions took every issue slot")


if __name__ == "__main__":
    sys.exit(main())
