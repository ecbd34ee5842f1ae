// Host-side preparation of the init_tensors_ op, shared by the CPU and CUDA
// backends: validation (one set of checks, one wording), the per-tensor
// layouts of sharded tensors and the derived distribution parameters. Both
// backends compute the parameters here, on the host, so the CPU and CUDA
// kernels see the very same fp32 / fp64 values.
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <utility>
#include <vector>

#include "checks.h"
#include "trainops/init_plan.h"

namespace trainops {

// Per tensor, init_tensors_ takes four distribution arguments.
constexpr int64_t kInitArgsPerTensor = 4;

struct InitCall {
  std::vector<InitTensorPlan> plans;
  // Non-contiguous tensors are initialised through a contiguous copy (its
  // allocation is that tensor's size) and copied back: element values follow
  // the logical row-major index, not the storage order.
  std::vector<std::pair<at::Tensor, at::Tensor>> copies;
  uint64_t seed = 0;

  void write_back() {
    for (auto& c : copies) c.first.copy_(c.second);
  }
  std::vector<int64_t> items() const {
    std::vector<int64_t> out;
    out.reserve(plans.size());
    for (const auto& p : plans) out.push_back(p.items);
    return out;
  }
};

inline InitDType to_init_dtype(at::ScalarType t) {
  switch (t) {
    case at::kHalf:
      return InitDType::kHalf;
    case at::kBFloat16:
      return InitDType::kBFloat16;
    case at::kFloat:
      return InitDType::kFloat;
    default:
      return InitDType::kDouble;
  }
}

inline void check_init_args(size_t i, int64_t kind, const double* a, const char* op) {
  TORCH_CHECK_VALUE(kind >= 0 && kind < kNumInitKinds, op, ": kinds[", i, "] = ", kind,
                    " is not a distribution (0 uniform, 1 normal, 2 truncated normal, 3 constant)");
  switch (static_cast<InitKind>(kind)) {
    case InitKind::kUniform:
      TORCH_CHECK_VALUE(std::isfinite(a[0]) && std::isfinite(a[1]) && a[0] <= a[1], op,
                        ": tensor ", i, ": uniform needs finite low <= high, got low=", a[0],
                        ", high=", a[1]);
      break;
    case InitKind::kNormal:
      TORCH_CHECK_VALUE(std::isfinite(a[0]) && std::isfinite(a[1]) && a[1] >= 0.0, op,
                        ": tensor ", i, ": normal needs a finite mean and std >= 0, got mean=",
                        a[0], ", std=", a[1]);
      break;
    case InitKind::kTruncNormal:
      TORCH_CHECK_VALUE(std::isfinite(a[0]) && std::isfinite(a[1]) && a[1] >= 0.0 &&
                            !std::isnan(a[2]) && !std::isnan(a[3]) && a[2] <= a[3],
                        op, ": tensor ", i,
                        ": trunc_normal needs a finite mean, std >= 0 and a <= b, got mean=", a[0],
                        ", std=", a[1], ", a=", a[2], ", b=", a[3]);
      break;
    default:
      break;
  }
}

// Layout of tensor t, or of the shard of a global tensor of sizes `global`
// at `offset` (both empty: t is the whole tensor).
inline InitLayout make_init_layout(const at::Tensor& t, const int64_t* global,
                                   const int64_t* offset, size_t i, const char* op) {
  InitLayout l{};
  const int64_t numel = t.numel();
  const int64_t ndim = t.dim();
  l.run_len = numel > 0 ? numel : 1;
  l.num_runs = numel > 0 ? 1 : 0;
  l.base = 0;
  l.outer_dims = 0;
  if (global == nullptr || numel == 0) return l;

  std::vector<int64_t> gstride(static_cast<size_t>(ndim), 1);
  for (int64_t d = ndim - 2; d >= 0; --d) gstride[d] = gstride[d + 1] * global[d + 1];
  int64_t last_partial = -1;
  for (int64_t d = 0; d < ndim; ++d) {
    TORCH_CHECK_VALUE(offset[d] >= 0 && offset[d] + t.size(d) <= global[d], op, ": tensor ", i,
                      " of shape ", t.sizes(), " does not fit in global_shape at dim ", d,
                      " (global size ", global[d], ", offset ", offset[d], ")");
    l.base += offset[d] * gstride[d];
    if (t.size(d) != global[d]) last_partial = d;
  }
  if (last_partial < 0) return l;  // the shard is the whole tensor
  l.run_len = 1;
  for (int64_t d = last_partial; d < ndim; ++d) l.run_len *= t.size(d);
  l.num_runs = numel / l.run_len;
  for (int64_t d = 0; d < last_partial; ++d) {
    if (t.size(d) == 1) continue;  // a size-1 dim indexes nothing
    TORCH_CHECK_VALUE(l.outer_dims < kMaxInitDims, op, ": tensor ", i, " is a shard with more than ",
                      kMaxInitDims, " split dimensions; flatten it first");
    l.outer_size[l.outer_dims] = t.size(d);
    l.outer_gstride[l.outer_dims] = gstride[d];
    ++l.outer_dims;
  }
  return l;
}

inline InitCall prepare_init(at::TensorList tensors, at::IntArrayRef kinds,
                             at::ArrayRef<double> args, int64_t seed, at::IntArrayRef keys,
                             at::IntArrayRef global_shapes, at::IntArrayRef global_offsets,
                             const char* op) {
  check_tensor_list(tensors, op);
  check_writable(tensors, op);
  const size_t n = tensors.size();
  TORCH_CHECK_VALUE(kinds.size() == n && keys.size() == n, op, ": got ", n, " tensors but ",
                    kinds.size(), " kinds and ", keys.size(), " keys");
  TORCH_CHECK_VALUE(args.size() == n * kInitArgsPerTensor, op, ": params must hold ",
                    kInitArgsPerTensor, " numbers per tensor (", n * kInitArgsPerTensor,
                    "), got ", args.size());
  int64_t total_dims = 0;
  for (const auto& t : tensors) total_dims += t.dim();
  TORCH_CHECK_VALUE(global_shapes.size() == global_offsets.size() &&
                        (global_shapes.empty() ||
                         static_cast<int64_t>(global_shapes.size()) == total_dims),
                    op,
                    ": global_shapes and global_offsets must both be empty or both hold one "
                    "entry per dimension of every tensor (",
                    total_dims, "), got ", global_shapes.size(), " and ", global_offsets.size());
  const bool sharded = !global_shapes.empty();

  InitCall call;
  call.seed = static_cast<uint64_t>(seed);
  call.plans.reserve(n);
  int64_t dim_at = 0;
  for (size_t i = 0; i < n; ++i) {
    const at::Tensor& t = tensors[i];
    const double* a = args.data() + i * kInitArgsPerTensor;
    check_init_args(i, kinds[i], a, op);
    InitTensorPlan p{};
    p.layout = make_init_layout(t, sharded ? global_shapes.data() + dim_at : nullptr,
                                sharded ? global_offsets.data() + dim_at : nullptr, i, op);
    dim_at += t.dim();
    at::Tensor target = t;
    if (t.numel() > 0 && !t.is_contiguous()) {
      target = t.contiguous();
      call.copies.emplace_back(t, target);
    }
    p.data = target.numel() > 0 ? target.data_ptr() : nullptr;
    p.dtype = to_init_dtype(t.scalar_type());
    p.kind = static_cast<InitKind>(kinds[i]);
    p.key = static_cast<uint64_t>(keys[i]);
    const int per = elements_per_block(p.dtype);
    bool aligned = p.layout.base % per == 0;
    for (int d = 0; d < p.layout.outer_dims; ++d) aligned &= p.layout.outer_gstride[d] % per == 0;
    p.blocks_per_run = (p.layout.run_len + per - 1) / per + (aligned ? 0 : 1);
    p.items = p.layout.num_runs * p.blocks_per_run;
    p.pf = dist::make_params<float>(p.kind, a[0], a[1], a[2], a[3]);
    p.pd = dist::make_params<double>(p.kind, a[0], a[1], a[2], a[3]);
    call.plans.push_back(p);
  }
  return call;
}

}  // namespace trainops
