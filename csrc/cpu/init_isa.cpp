// The init_tensors_ inner loops, compiled once per ISA (see cpu_isa.h).
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__x86_64__)
// GCC 12's _mm512_mul_epu32 passes an intentionally undefined vector to its
// masked builtin, which -Wall reports as maybe-uninitialized wherever it is
// inlined; the warning is about the header, not this code.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif

#include "init_kernels.h"
#include "trainops/common.h"
#include "trainops/distributions.h"
#include "trainops/init_plan.h"
#include "trainops/philox.h"

namespace trainops {
namespace cpu {

namespace baseline {
constexpr int kVecBytes = 16;
#include "simd.inc"
#include "init_kernels.inc"
}  // namespace baseline

#if TRAINOPS_MULTI_ISA
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
namespace avx2 {
constexpr int kVecBytes = 32;
#include "simd.inc"
#include "init_kernels.inc"
}  // namespace avx2
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c,prefer-vector-width=512")
namespace avx512 {
constexpr int kVecBytes = 64;
#include "simd.inc"
#include "init_kernels.inc"
}  // namespace avx512
#pragma GCC pop_options
#endif

const InitKernels& init_kernels() {
#if TRAINOPS_MULTI_ISA
  switch (current_cpu_isa()) {
    case CpuIsa::kAvx512:
      return avx512::kInitKernels;
    case CpuIsa::kAvx2:
      return avx2::kInitKernels;
    default:
      break;
  }
#endif
  return baseline::kInitKernels;
}

}  // namespace cpu
}  // namespace trainops
