// CPU kernels of the multi-tensor norm / clip-scale / clamp ops.
//
// One parallel region per call over the chunk plan of the whole list (any mix
// of fp16/bf16/fp32/fp64): a list of 10,000 tensors costs one region, not
// 10,000 kernel calls. Per-chunk partial norms land in a workspace of one
// NormPartial per chunk and are combined in chunk order afterwards, so the
// result does not depend on the thread count.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "../checks.h"
#include "clip_kernels.h"
#include "cpu_isa.h"
#include "trainops/chunk_plan.h"
#include "trainops/norm.h"

namespace trainops {
namespace cpu {
namespace {

DType to_dtype(at::ScalarType t) {
  switch (t) {
    case at::kHalf:
      return DType::kHalf;
    case at::kBFloat16:
      return DType::kBFloat16;
    case at::kFloat:
      return DType::kFloat;
    default:
      return DType::kDouble;
  }
}

// The list as flat spans. The kernels are elementwise or order-free
// reductions, so any non-overlapping dense tensor (contiguous, transposed,
// channels-last, ...) is used in place as the span of its storage. Other
// layouts (strided slices) go through a contiguous copy: its allocation is
// that tensor's size, and for in-place ops the result is copied back.
struct FlatList {
  std::vector<char*> data;
  std::vector<DType> dtype;
  std::vector<int64_t> numel;
  std::vector<std::pair<at::Tensor, at::Tensor>> copies;  // (original, contiguous copy)

  explicit FlatList(at::TensorList tensors) {
    const size_t n = tensors.size();
    data.reserve(n);
    dtype.reserve(n);
    numel.reserve(n);
    for (const auto& t : tensors) {
      // No at::Tensor copies on the common path: copying a tensor that Python
      // also holds costs an interpreter incref/decref (~50 ns).
      char* ptr;
      if (t.numel() > 0 && !t.is_non_overlapping_and_dense()) {
        copies.emplace_back(t, t.contiguous());
        ptr = static_cast<char*>(copies.back().second.data_ptr());
      } else {
        ptr = static_cast<char*>(t.data_ptr());
      }
      data.push_back(ptr);
      dtype.push_back(to_dtype(t.scalar_type()));
      numel.push_back(t.numel());
    }
  }

  void write_back() {
    for (auto& c : copies) c.first.copy_(c.second);
  }

  static size_t element_size(DType d) {
    return d == DType::kDouble ? 8 : (d == DType::kFloat ? 4 : 2);
  }
  char* chunk_ptr(const Chunk& c) const {
    return data[c.tensor] + c.begin * static_cast<int64_t>(element_size(dtype[c.tensor]));
  }
};

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
  at::parallel_for(0, plan.num_tasks(), 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t last = plan.task_begin[task + 1];
      for (int64_t c = plan.task_begin[task]; c < last; ++c) {
        if (c + kPrefetchDistance < last) {
          const Chunk& ahead = plan.chunks[c + kPrefetchDistance];
          const char* p = flat.chunk_ptr(ahead);
          const int64_t bytes = ahead.length * static_cast<int64_t>(FlatList::element_size(flat.dtype[ahead.tensor]));
          for (int64_t off = 0; off < bytes && off < kPrefetchBytes; off += kCacheLine) {
            __builtin_prefetch(p + off);
          }
        }
        fn(c, plan.chunks[c]);
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> multi_tensor_norm_cpu(at::TensorList tensors, double norm_type,
                                                         bool per_tensor) {
  constexpr const char* kOp = "trainops.multi_tensor_norm";
  check_tensor_list(tensors, kOp);
  check_norm_type(norm_type, kOp);
  const NormSpec spec = make_norm_spec(norm_type);
  const at::ScalarType out_dtype = norm_result_dtype(tensors);
  const auto options = at::TensorOptions().dtype(at::kDouble).device(at::kCPU);

  FlatList flat(tensors);
  const ChunkPlan plan = make_chunk_plan(flat.numel);
  std::vector<NormPartial> chunk_parts(plan.chunks.size());
  const ClipKernels& k = clip_kernels();
  for_each_chunk(plan, flat, [&](int64_t c, const Chunk& chunk) {
    chunk_parts[c] =
        k.norm_chunk(flat.dtype[chunk.tensor], flat.chunk_ptr(chunk), chunk.length, spec);
  });

  const int64_t n = static_cast<int64_t>(tensors.size());
  std::vector<NormPartial> tensor_parts(static_cast<size_t>(n));
  at::Tensor per = at::empty({per_tensor ? n : 0}, options);
  double* per_data = per.data_ptr<double>();
  for (int64_t t = 0; t < n; ++t) {
    const int64_t b = plan.chunk_begin[t];
    tensor_parts[t] =
        combine_partials(chunk_parts.data() + b, plan.chunk_begin[t + 1] - b, spec.kind, spec.p);
    if (per_tensor) per_data[t] = partial_to_norm(tensor_parts[t], spec.kind, spec.p);
  }
  const NormPartial all = combine_partials(tensor_parts.data(), n, spec.kind, spec.p);
  at::Tensor total = at::scalar_tensor(partial_to_norm(all, spec.kind, spec.p), options);
  return {total.to(out_dtype), per.to(out_dtype)};
}

void multi_tensor_clip_scale_cpu(at::TensorList tensors, const at::Tensor& total_norm,
                                 double max_norm) {
  constexpr const char* kOp = "trainops.multi_tensor_clip_scale_";
  check_tensor_list(tensors, kOp);
  check_max_norm(max_norm, kOp);
  check_total_norm(total_norm, tensors, kOp);
  check_writable(tensors, kOp);
  double coef_double;
  float coef_float;
  if (total_norm.scalar_type() == at::kDouble) {
    coef_double = clip_coefficient(total_norm.item<double>(), max_norm);
    coef_float = static_cast<float>(coef_double);
  } else {
    coef_float = clip_coefficient(total_norm.item<float>(), max_norm);
    coef_double = static_cast<double>(coef_float);
  }
  // No clipping needed: no writes at all (the multiply by 1 torch performs is
  // an identity). A NaN coefficient is != 1 and scales like torch does.
  if (coef_double == 1.0) return;

  FlatList flat(tensors);
  const ChunkPlan plan = make_chunk_plan(flat.numel);
  const ClipKernels& k = clip_kernels();
  for_each_chunk(plan, flat, [&](int64_t, const Chunk& chunk) {
    k.scale_chunk(flat.dtype[chunk.tensor], flat.chunk_ptr(chunk), chunk.length, coef_double,
                  coef_float);
  });
  flat.write_back();
}

// The bound -v / +v as the element type represents it (torch converts the
// Python scalar to the tensor's dtype before comparing).
double bound_in(DType d, double v) {
  switch (d) {
    case DType::kHalf:
      return half_to_float(float_to_half(static_cast<float>(v)));
    case DType::kBFloat16:
      return bf16_to_float(float_to_bf16(static_cast<float>(v)));
    case DType::kFloat:
      return static_cast<float>(v);
    default:
      return v;
  }
}

void multi_tensor_clamp_cpu(at::TensorList tensors, double clip_value) {
  constexpr const char* kOp = "trainops.multi_tensor_clamp_";
  check_tensor_list(tensors, kOp);
  check_clip_value(clip_value, kOp);
  check_writable(tensors, kOp);
  FlatList flat(tensors);
  const ChunkPlan plan = make_chunk_plan(flat.numel);
  const ClipKernels& k = clip_kernels();
  for_each_chunk(plan, flat, [&](int64_t, const Chunk& chunk) {
    const DType d = flat.dtype[chunk.tensor];
    k.clamp_chunk(d, flat.chunk_ptr(chunk), chunk.length, bound_in(d, -clip_value),
                  bound_in(d, clip_value));
  });
  flat.write_back();
}

}  // namespace

TORCH_LIBRARY_IMPL(trainops, CPU, m) {
  m.impl("multi_tensor_norm", &multi_tensor_norm_cpu);
  m.impl("multi_tensor_clip_scale_", &multi_tensor_clip_scale_cpu);
  m.impl("multi_tensor_clamp_", &multi_tensor_clamp_cpu);
}

}  // namespace cpu
}  // namespace trainops
