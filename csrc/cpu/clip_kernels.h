// Table of the per-ISA CPU kernels of the norm / scale / clamp ops.
#pragma once

#include <cstdint>

#include "cpu_isa.h"
#include "trainops/norm.h"

namespace trainops {
namespace cpu {

struct ClipKernels {
  // Partial norm of one chunk of n elements.
  NormPartial (*norm_chunk)(DType dtype, const void* data, int64_t n, const NormSpec& spec);
  // In place x *= coef (coef_double for fp64 elements, coef_float otherwise).
  void (*scale_chunk)(DType dtype, void* data, int64_t n, double coef_double, float coef_float);
  // In place clamp to [lo, hi]; bounds already rounded to the element type.
  void (*clamp_chunk)(DType dtype, void* data, int64_t n, double lo, double hi);
};

// The kernels for current_cpu_isa().
const ClipKernels& clip_kernels();

}  // namespace cpu
}  // namespace trainops
