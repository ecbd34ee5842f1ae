// The norm / scale / clamp inner loops, compiled once per ISA (see cpu_isa.h).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "clip_kernels.h"
#include "trainops/common.h"
#include "trainops/norm.h"

namespace trainops {
namespace cpu {

#define TRAINOPS_KERNELS_INC "clip_kernels.inc"
#include "isa_variants.inc"

const ClipKernels& clip_kernels() {
#if TRAINOPS_MULTI_ISA
  return pick_isa(baseline::kClipKernels, avx2::kClipKernels, avx512::kClipKernels);
#else
  return baseline::kClipKernels;
#endif
}

}  // namespace cpu
}  // namespace trainops
