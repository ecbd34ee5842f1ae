// Run-time choice of the CPU instruction set.
//
// Kernels are compiled once per ISA (baseline x86-64 / SSE2, AVX2+FMA+F16C,
// AVX-512F/BW/VL) in the same translation unit under `#pragma GCC target`, and
// the best one the running CPU supports is picked on first use, so a wheel
// built without -march=native still runs AVX-512 code where it exists.
// TRAINOPS_CPU_ISA=baseline|avx2|avx512 caps the choice (tests use it to show
// that every ISA gives bitwise identical results: the build uses
// -ffp-contract=off, so no ISA fuses a multiply-add the others do not).
#pragma once

#include <string>

#include "trainops/common.h"  // DType

namespace trainops {
namespace cpu {

enum class CpuIsa : int { kBaseline = 0, kAvx2 = 1, kAvx512 = 2 };

// Best ISA compiled in and supported by this CPU, capped by TRAINOPS_CPU_ISA.
// Read on every call (cheap) so that tests can change the cap in-process.
CpuIsa current_cpu_isa();

// Whether the kernels of `isa` can run now (compiled in, supported, not capped).
inline bool cpu_isa_usable(CpuIsa isa) { return static_cast<int>(isa) <= static_cast<int>(current_cpu_isa()); }

// ISAs compiled into this build, e.g. "baseline,avx2,avx512".
std::string compiled_cpu_isas();

const char* cpu_isa_name(CpuIsa isa);

// The entry of current_cpu_isa() among per-ISA kernel tables.
template <typename T>
const T& pick_isa(const T& baseline, const T& avx2, const T& avx512) {
  switch (current_cpu_isa()) {
    case CpuIsa::kAvx512:
      return avx512;
    case CpuIsa::kAvx2:
      return avx2;
    default:
      return baseline;
  }
}

}  // namespace cpu
}  // namespace trainops

// Open and close a region compiled for one ISA. Only GCC on x86-64 builds the
// extra variants; elsewhere every region is compiled for the baseline and
// current_cpu_isa() reports kBaseline.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define TRAINOPS_MULTI_ISA 1
#else
#define TRAINOPS_MULTI_ISA 0
#endif

#if defined(__x86_64__)
// The intrinsics of the ISA regions (simd.inc, init_kernels.inc).
// GCC 12's _mm512_mul_epu32 and AVX-512 conversions pass an intentionally
// undefined vector to their masked builtins, which -Wall reports as
// (maybe-)uninitialized wherever they are inlined; the warning is about the
// header, not this code.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif
