#include "cpu_isa.h"

#include <cstdlib>
#include <cstring>

namespace trainops {
namespace cpu {

namespace {

// Every feature of the region's `#pragma GCC target` (isa_variants.inc): the
// compiler may use any of them there, and simd.inc calls F16C explicitly.
CpuIsa detect_cpu_isa() {
#if TRAINOPS_MULTI_ISA
  __builtin_cpu_init();
  const bool fma_f16c = __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  if (fma_f16c && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
    return CpuIsa::kAvx512;
  }
  if (fma_f16c && __builtin_cpu_supports("avx2")) {
    return CpuIsa::kAvx2;
  }
#endif
  return CpuIsa::kBaseline;
}

}  // namespace

CpuIsa current_cpu_isa() {
  static const CpuIsa detected = detect_cpu_isa();
  CpuIsa isa = detected;
  if (const char* cap = std::getenv("TRAINOPS_CPU_ISA")) {
    CpuIsa wanted = isa;
    if (std::strcmp(cap, "baseline") == 0) wanted = CpuIsa::kBaseline;
    if (std::strcmp(cap, "avx2") == 0) wanted = CpuIsa::kAvx2;
    if (std::strcmp(cap, "avx512") == 0) wanted = CpuIsa::kAvx512;
    if (static_cast<int>(wanted) < static_cast<int>(isa)) isa = wanted;
  }
  return isa;
}

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kAvx512:
      return "avx512";
    case CpuIsa::kAvx2:
      return "avx2";
    default:
      return "baseline";
  }
}

std::string compiled_cpu_isas() {
#if TRAINOPS_MULTI_ISA
  return "baseline,avx2,avx512";
#else
  return "baseline";
#endif
}

}  // namespace cpu
}  // namespace trainops
