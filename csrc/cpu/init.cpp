// CPU kernel of the init_tensors_ op: counter-based random initialisation of a
// whole list of tensors in one parallel region.
//
// The work items of every tensor (Philox blocks, see trainops/init_plan.h) go
// through one chunk plan of the whole list -- GPT-2 small's 148 tensors make
// ~1,900 chunks of 65,536 fp32 elements -- so a list of many small tensors
// costs one region, not one per tensor, and a big tensor is spread over all
// threads. Every value is a pure function of (seed, key, global index,
// distribution), so the thread count and the chunking never change a result.
#include "../init_common.h"
#include "../torch_api.h"
#include "init_kernels.h"
#include "trainops/chunk_plan.h"

namespace trainops {
namespace cpu {
namespace {

void init_tensors_cpu(TensorListArg tensors, IntListArg kinds, FloatListArg params, int64_t seed,
                      IntListArg keys, IntListArg global_shapes, IntListArg global_offsets) {
  constexpr const char* kOp = "trainops.init_tensors_";
  InitCall call =
      prepare_init(tensors, kinds, params, seed, keys, global_shapes, global_offsets, kOp);
  const ChunkPlan plan = make_chunk_plan(call.items(), kInitItemsPerChunk);
  const InitKernels& k = init_kernels();
  parallel_tasks(plan.num_tasks(), [&](int64_t task) {
    for (int64_t c = plan.task_begin[task]; c < plan.task_begin[task + 1]; ++c) {
      const Chunk& chunk = plan.chunks[c];
      k.fill_items(call.plans[chunk.tensor], call.seed, chunk.begin, chunk.begin + chunk.length);
    }
  });
  call.write_back();
}

void init_tensors_seeded_cpu(TensorListArg tensors, IntListArg kinds, FloatListArg params,
                             const Tensor& seed, IntListArg keys, IntListArg global_shapes,
                             IntListArg global_offsets) {
  const SeedArg s = read_seed(seed, tensors, /*device_ok=*/false, "trainops.init_tensors_");
  init_tensors_cpu(tensors, kinds, params, s.value, keys, global_shapes, global_offsets);
}

}  // namespace

TRAINOPS_LIBRARY_IMPL(CPU, m) {
  m.impl("init_tensors_", TRAINOPS_KERNEL(init_tensors_cpu));
  m.impl("init_tensors_.seeded", TRAINOPS_KERNEL(init_tensors_seeded_cpu));
}

}  // namespace cpu
}  // namespace trainops
