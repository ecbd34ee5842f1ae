// Table of the per-ISA CPU kernels of the init_tensors_ op.
#pragma once

#include <cstdint>

#include "cpu_isa.h"
#include "trainops/init_plan.h"

namespace trainops {
namespace cpu {

struct InitKernels {
  // Work items [item_begin, item_end) of one tensor (see trainops/init_plan.h).
  void (*fill_items)(const InitTensorPlan& p, uint64_t seed, int64_t item_begin,
                     int64_t item_end);
};

// The kernels for current_cpu_isa().
const InitKernels& init_kernels();

}  // namespace cpu
}  // namespace trainops
