// CPU kernels of the multi-tensor norm / clip-scale / clamp ops.
//
// One parallel region per call over the chunk plan of the whole list (any mix
// of fp16/bf16/fp32/fp64): a list of 10,000 tensors costs one region, not
// 10,000 kernel calls. Per-chunk partial norms land in a workspace of one
// NormPartial per chunk and are combined in chunk order afterwards, so the
// result does not depend on the thread count.
#include <vector>

#include "../checks.h"
#include "../flat_list.h"
#include "../torch_api.h"
#include "clip_kernels.h"
#include "cpu_isa.h"
#include "trainops/chunk_plan.h"
#include "trainops/norm.h"

namespace trainops {
namespace cpu {
namespace {

// Small tensors are separate allocations the hardware prefetcher cannot
// predict: a list of 10,000 x 100 fp32 grads stalls on one cache miss per
// tensor. Prefetching the first lines of the chunk kPrefetchDistance ahead
// overlaps those misses.
constexpr int64_t kPrefetchDistance = 2;
constexpr int64_t kPrefetchBytes = 512;
constexpr int64_t kCacheLine = 64;

// Run fn(chunk) over every chunk of the plan, tasks in parallel.
template <typename Fn>
void for_each_chunk(const ChunkPlan& plan, const FlatList& flat, const Fn& fn) {
  parallel_tasks(plan.num_tasks(), [&](int64_t task) {
    const int64_t last = plan.task_begin[task + 1];
    for (int64_t c = plan.task_begin[task]; c < last; ++c) {
      if (c + kPrefetchDistance < last) {
        const Chunk& ahead = plan.chunks[c + kPrefetchDistance];
        const char* p = flat.chunk_ptr(ahead);
        const int64_t bytes = ahead.length * static_cast<int64_t>(dtype_size(flat.dtype[ahead.tensor]));
        for (int64_t off = 0; off < bytes && off < kPrefetchBytes; off += kCacheLine) {
          __builtin_prefetch(p + off);
        }
      }
      fn(c, plan.chunks[c]);
    }
  });
}

// The norm pass over a prepared list: (total, per-tensor norms or empty), in
// the result dtype.
std::tuple<Tensor, Tensor> norm_pass(const std::vector<TensorFacts>& facts, const FlatList& flat,
                                     const ChunkPlan& plan, const NormSpec& spec,
                                     bool per_tensor) {
  std::vector<NormPartial> chunk_parts(plan.chunks.size());
  const ClipKernels& k = clip_kernels();
  for_each_chunk(plan, flat, [&](int64_t c, const Chunk& chunk) {
    chunk_parts[c] =
        k.norm_chunk(flat.dtype[chunk.tensor], flat.chunk_ptr(chunk), chunk.length, spec);
  });

  const int64_t n = static_cast<int64_t>(flat.numel.size());
  const ScalarType out_dtype = norm_result_dtype(facts);
  const bool fp64 = out_dtype == ScalarType::Double;
  Tensor total = empty_cpu({}, out_dtype);
  Tensor per = empty_cpu({per_tensor ? n : 0}, out_dtype);
  void* const total_data = total.data_ptr();
  void* const per_data = per.data_ptr();
  const auto store = [fp64](void* out, int64_t i, double v) {
    if (fp64) {
      static_cast<double*>(out)[i] = v;
    } else {
      static_cast<float*>(out)[i] = static_cast<float>(v);
    }
  };
  std::vector<NormPartial> tensor_parts(static_cast<size_t>(n));
  for (int64_t t = 0; t < n; ++t) {
    const int64_t b = plan.chunk_begin[t];
    tensor_parts[t] =
        combine_partials(chunk_parts.data() + b, plan.chunk_begin[t + 1] - b, spec.kind, spec.p);
    if (per_tensor) store(per_data, t, partial_to_norm(tensor_parts[t], spec.kind, spec.p));
  }
  const NormPartial all = combine_partials(tensor_parts.data(), n, spec.kind, spec.p);
  store(total_data, 0, partial_to_norm(all, spec.kind, spec.p));
  return {total, per};
}

// The clip coefficient of a CPU total norm, in fp64 and in fp32 (the total's
// own precision decides the rounding, as in torch).
std::pair<double, float> coefficients(const Tensor& total_norm, double max_norm) {
  if (total_norm.scalar_type() == ScalarType::Double) {
    const double c = clip_coefficient(*static_cast<const double*>(total_norm.data_ptr()), max_norm);
    return {c, static_cast<float>(c)};
  }
  const float c = clip_coefficient(*static_cast<const float*>(total_norm.data_ptr()), max_norm);
  return {static_cast<double>(c), c};
}

// The scale pass; none at all (no writes) when the coefficient is exactly 1.
// A NaN coefficient is != 1 and scales like torch does.
void scale_pass(TensorListArg tensors, FlatList& flat, const ChunkPlan& plan,
                std::pair<double, float> coef) {
  if (coef.first == 1.0) return;
  flat.make_writable(tensors);
  const ClipKernels& k = clip_kernels();
  for_each_chunk(plan, flat, [&](int64_t, const Chunk& chunk) {
    k.scale_chunk(flat.dtype[chunk.tensor], flat.chunk_ptr(chunk), chunk.length, coef.first,
                  coef.second);
  });
  flat.write_back();
}

std::tuple<Tensor, Tensor> multi_tensor_norm_cpu(TensorListArg tensors, double norm_type,
                                                 bool per_tensor) {
  constexpr const char* kOp = "trainops.multi_tensor_norm";
  const auto facts = check_tensor_list(tensors, kOp);
  check_norm_type(norm_type, kOp);
  const FlatList flat(tensors, facts);
  return norm_pass(facts, flat, make_chunk_plan(flat.numel), make_norm_spec(norm_type),
                   per_tensor);
}

void multi_tensor_clip_scale_cpu(TensorListArg tensors, const Tensor& total_norm,
                                 double max_norm) {
  constexpr const char* kOp = "trainops.multi_tensor_clip_scale_";
  const auto facts = check_tensor_list(tensors, kOp);
  check_max_norm(max_norm, kOp);
  check_total_norm(total_norm, tensors, kOp);
  check_writable(tensors, facts, kOp);
  const auto coef = coefficients(total_norm, max_norm);
  if (coef.first == 1.0) return;
  FlatList flat(tensors, facts);
  scale_pass(tensors, flat, make_chunk_plan(flat.numel), coef);
}

// clip_grad_norm_ in one call: one list conversion and one chunk plan serve
// both passes, and reading the CPU total costs no device sync.
Tensor multi_tensor_clip_grad_norm_cpu(TensorListArg tensors, double max_norm, double norm_type) {
  constexpr const char* kOp = "trainops.multi_tensor_clip_grad_norm_";
  const auto facts = check_tensor_list(tensors, kOp);
  check_max_norm(max_norm, kOp);
  check_norm_type(norm_type, kOp);
  // Up front, as on CUDA (which cannot know the coefficient without a sync)
  // and as torch (which always multiplies): whether it fails does not depend
  // on the values.
  check_writable(tensors, facts, kOp);
  FlatList flat(tensors, facts);
  const ChunkPlan plan = make_chunk_plan(flat.numel);
  Tensor total = std::get<0>(norm_pass(facts, flat, plan, make_norm_spec(norm_type), false));
  scale_pass(tensors, flat, plan, coefficients(total, max_norm));
  return total;
}

void multi_tensor_clamp_cpu(TensorListArg tensors, double clip_value) {
  constexpr const char* kOp = "trainops.multi_tensor_clamp_";
  const auto facts = check_tensor_list(tensors, kOp);
  check_clip_value(clip_value, kOp);
  check_writable(tensors, facts, kOp);
  FlatList flat(tensors, facts);
  flat.make_writable(tensors);
  const ChunkPlan plan = make_chunk_plan(flat.numel);
  const ClipKernels& k = clip_kernels();
  for_each_chunk(plan, flat, [&](int64_t, const Chunk& chunk) {
    const DType d = flat.dtype[chunk.tensor];
    k.clamp_chunk(d, flat.chunk_ptr(chunk), chunk.length, clamp_bound_in(d, -clip_value),
                  clamp_bound_in(d, clip_value));
  });
  flat.write_back();
}

}  // namespace

TRAINOPS_LIBRARY_IMPL(CPU, m) {
  m.impl("multi_tensor_norm", TRAINOPS_KERNEL(multi_tensor_norm_cpu));
  m.impl("multi_tensor_clip_scale_", TRAINOPS_KERNEL(multi_tensor_clip_scale_cpu));
  m.impl("multi_tensor_clip_grad_norm_", TRAINOPS_KERNEL(multi_tensor_clip_grad_norm_cpu));
  m.impl("multi_tensor_clamp_", TRAINOPS_KERNEL(multi_tensor_clamp_cpu));
}

}  // namespace cpu
}  // namespace trainops
