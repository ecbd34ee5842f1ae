// The init_tensors_ inner loops, compiled once per ISA (see cpu_isa.h).
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "init_kernels.h"
#include "trainops/common.h"
#include "trainops/distributions.h"
#include "trainops/init_plan.h"
#include "trainops/philox.h"

namespace trainops {
namespace cpu {

#define TRAINOPS_KERNELS_INC "init_kernels.inc"
#include "isa_variants.inc"

const InitKernels& init_kernels() {
#if TRAINOPS_MULTI_ISA
  return pick_isa(baseline::kInitKernels, avx2::kInitKernels, avx512::kInitKernels);
#else
  return baseline::kInitKernels;
#endif
}

}  // namespace cpu
}  // namespace trainops
