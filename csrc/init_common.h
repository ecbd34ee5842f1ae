// Host-side preparation of the init_tensors_ op, shared by the CPU and CUDA
// backends: validation (one set of checks, one wording), the per-tensor
// layouts of sharded tensors and the derived distribution parameters. Both
// backends compute the parameters here, on the host, so the CPU and CUDA
// kernels see the very same fp32 / fp64 values.
#pragma once

#include <cmath>
#include <utility>
#include <vector>

#include "checks.h"
#include "torch_api.h"
#include "trainops/init_plan.h"

namespace trainops {

// Per tensor, init_tensors_ takes four distribution arguments.
constexpr int64_t kInitArgsPerTensor = 4;

struct InitCall {
  std::vector<InitTensorPlan> plans;
  // Non-contiguous tensors are initialised through a contiguous copy (its
  // allocation is that tensor's size) and copied back: element values follow
  // the logical row-major index, not the storage order.
  std::vector<std::pair<Tensor, Tensor>> copies;
  uint64_t seed = 0;

  void write_back() {
    for (auto& c : copies) copy_into(c.first, c.second);
  }
  std::vector<int64_t> items() const {
    std::vector<int64_t> out;
    out.reserve(plans.size());
    for (const auto& p : plans) out.push_back(p.items);
    return out;
  }
};

inline void check_init_args(size_t i, int64_t kind, const double* a, const char* op) {
  TRAINOPS_CHECK_VALUE(kind >= 0 && kind < kNumInitKinds, op, ": kinds[", i, "] = ", kind,
                    " is not a distribution (0 uniform, 1 normal, 2 truncated normal, 3 constant)");
  switch (static_cast<InitKind>(kind)) {
    case InitKind::kUniform:
      TRAINOPS_CHECK_VALUE(std::isfinite(a[0]) && std::isfinite(a[1]) && a[0] <= a[1], op,
                        ": tensor ", i, ": uniform needs finite low <= high, got low=", a[0],
                        ", high=", a[1]);
      break;
    case InitKind::kNormal:
      TRAINOPS_CHECK_VALUE(std::isfinite(a[0]) && std::isfinite(a[1]) && a[1] >= 0.0, op,
                        ": tensor ", i, ": normal needs a finite mean and std >= 0, got mean=",
                        a[0], ", std=", a[1]);
      break;
    case InitKind::kTruncNormal:
      TRAINOPS_CHECK_VALUE(std::isfinite(a[0]) && std::isfinite(a[1]) && a[1] >= 0.0 &&
                            !std::isnan(a[2]) && !std::isnan(a[3]) && a[2] <= a[3],
                        op, ": tensor ", i,
                        ": trunc_normal needs a finite mean, std >= 0 and a <= b, got mean=", a[0],
                        ", std=", a[1], ", a=", a[2], ", b=", a[3]);
      break;
    default:
      break;
  }
}

// As torch's uniform_ (and the Python API): bounds inside the output dtype's
// range and a width inside the compute type's, which would otherwise turn
// every value into inf or into the upper bound.
inline void check_uniform_fits(size_t i, InitKind kind, DType dtype, const double* a, const char* op) {
  if (kind != InitKind::kUniform) return;
  const double top = dtype == DType::kHalf       ? 65504.0
                     : dtype == DType::kBFloat16 ? 3.3895313892515355e38
                     : dtype == DType::kFloat    ? 3.4028234663852886e38
                                                 : 1.7976931348623157e308;
  const double width_top = dtype == DType::kDouble ? 1.7976931348623157e308 : 3.4028234663852886e38;
  TRAINOPS_CHECK_VALUE(std::fabs(a[0]) <= top && std::fabs(a[1]) <= top && a[1] - a[0] <= width_top, op,
                       ": tensor ", i, ": uniform bounds [", a[0], ", ", a[1],
                       ") do not fit its dtype (largest value ", top, ", largest width ", width_top, ")");
}

// Layout of tensor t, or of the shard of a global tensor of sizes `global`
// at `offset` (both null: t is the whole tensor).
inline InitLayout init_layout_of(const Tensor& t, const int64_t* global, const int64_t* offset,
                                 size_t i, const char* op) {
  InitLayout l{};
  int64_t bad_dim = 0;
  const LayoutError err =
      make_init_layout(t.dim(), t.sizes().data(), global, offset, &l, &bad_dim);
  TRAINOPS_CHECK_VALUE(err != LayoutError::kDoesNotFit, op, ": tensor ", i, " of shape ", shape_str(t),
                    " does not fit in global_shape at dim ", bad_dim, " (global size ",
                    global ? global[bad_dim] : 0, ", offset ", offset ? offset[bad_dim] : 0, ")");
  TRAINOPS_CHECK_VALUE(err != LayoutError::kTooManyDims, op, ": tensor ", i,
                    " is a shard with more than ", kMaxInitDims,
                    " split dimensions; flatten it first");
  TRAINOPS_CHECK_VALUE(err != LayoutError::kTooLarge, op, ": tensor ", i,
                       ": global_shape has more than 2^62 elements");
  return l;
}

inline InitCall prepare_init(TensorListArg tensors, IntListArg kinds, FloatListArg args,
                             int64_t seed, IntListArg keys, IntListArg global_shapes,
                             IntListArg global_offsets, const char* op) {
  const auto facts = check_tensor_list(tensors, op);
  check_writable(tensors, facts, op);
  const size_t n = tensors.size();
  TRAINOPS_CHECK_VALUE(kinds.size() == n && keys.size() == n, op, ": got ", n, " tensors but ",
                    kinds.size(), " kinds and ", keys.size(), " keys");
  TRAINOPS_CHECK_VALUE(args.size() == n * kInitArgsPerTensor, op, ": params must hold ",
                    kInitArgsPerTensor, " numbers per tensor (", n * kInitArgsPerTensor,
                    "), got ", args.size());
  int64_t total_dims = 0;
  for (size_t i = 0; i < n; ++i) total_dims += tensor_at(tensors, i).dim();
  TRAINOPS_CHECK_VALUE(global_shapes.size() == global_offsets.size() &&
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
    const Tensor t = tensor_at(tensors, i);  // owned (init lists are short; the work is not)
    const double* a = args.data() + i * kInitArgsPerTensor;
    check_init_args(i, kinds[i], a, op);
    InitTensorPlan p{};
    p.layout = init_layout_of(t, sharded ? global_shapes.data() + dim_at : nullptr,
                              sharded ? global_offsets.data() + dim_at : nullptr, i, op);
    dim_at += t.dim();
    if (facts[i].numel > 0 && !facts[i].contiguous) {
      call.copies.emplace_back(t, make_contiguous(t));
      p.data = call.copies.back().second.data_ptr();
    } else if (facts[i].numel > 0) {
      p.data = data_of(tensors[i]);  // mutable: the plans write through it
    }
    p.dtype = facts[i].dtype;
    p.kind = static_cast<InitKind>(kinds[i]);
    check_uniform_fits(i, p.kind, p.dtype, a, op);
    p.key = static_cast<uint64_t>(keys[i]);
    set_work_items(&p);
    p.pf = dist::make_params<float>(p.kind, a[0], a[1], a[2], a[3]);
    if (p.kind == InitKind::kUniform && (p.dtype == DType::kHalf || p.dtype == DType::kBFloat16)) {
      p.pf.p[2] = dist::largest_below_16(p.dtype == DType::kHalf, p.pf.p[2], a[0], a[1]);
    }
    p.pd = dist::make_params<double>(p.kind, a[0], a[1], a[2], a[3]);
    call.plans.push_back(p);
  }
  return call;
}

// The seed of init_tensors_.seeded: a one-element int64 tensor, on the CPU
// (read here, on the host: no sync) or, for a device kernel, on the tensors'
// device (read by the kernel: seed_on_device is then its address). A seed
// drawn on the device -- from a CUDA generator, or inside a compiled graph --
// reaches the kernel without a round trip through the host.
struct SeedArg {
  int64_t value = 0;
  const int64_t* on_device = nullptr;
};

inline SeedArg read_seed(const Tensor& seed, TensorListArg tensors, bool device_ok,
                         const char* op) {
  TRAINOPS_CHECK_VALUE(seed.numel() == 1, op, ": seed must hold one element, got shape ",
                       shape_str(seed));
  TRAINOPS_CHECK_TYPE(seed.scalar_type() == ScalarType::Long, op, ": seed must be int64, got ",
                      dtype_name(seed));
  SeedArg out;
  if (is_cpu(seed)) {
    out.value = *static_cast<const int64_t*>(seed.data_ptr());
    return out;
  }
  TRAINOPS_CHECK_VALUE(device_ok && !tensors.empty() && same_device(seed, tensor_at(tensors, 0)),
                       op, ": seed is on ", device_str(seed), "; it must be on the CPU",
                       device_ok ? " or on the tensors' device" : "");
  out.on_device = static_cast<const int64_t*>(seed.data_ptr());
  return out;
}

}  // namespace trainops
