// Input validation shared by every backend and both builds (csrc/torch_api.h):
// one set of checks, one wording. In the aten build TRAINOPS_CHECK_TYPE
// surfaces in Python as TypeError and TRAINOPS_CHECK_VALUE as ValueError; the
// stable ABI raises RuntimeError for both. The Python layer validates first,
// with friendlier context; these guard direct torch.ops.trainops calls.
#pragma once

#include <atomic>
#include <cmath>
#include <vector>

#include "torch_api.h"
#include "trainops/norm.h"

namespace trainops {

constexpr int64_t kFactsGrain = 2048;

// Every tensor: defined, strided, floating (fp16/bf16/fp32/fp64), on one
// device. Returns what the kernels need to know of each (one read per tensor).
// The data pointers in the facts are read-only: a writer asks for the mutable
// ones where it writes (FlatList::make_writable, prepare_init).
inline std::vector<TensorFacts> check_tensor_list(TensorListArg tensors, const char* op) {
  const int64_t n = static_cast<int64_t>(tensors.size());
  std::vector<TensorFacts> facts(tensors.size());
  // Reading a tensor's metadata is a cache miss or two (its TensorImpl): long
  // lists read it on every thread. Nothing may escape the callback (it runs
  // behind torch's C shim, which would replace the message), so a failed read
  // is noted and redone below, on this thread, where it throws its own error.
  std::atomic<int64_t> first_failed{n};
  parallel_for(0, n, kFactsGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      try {
        facts[i] = facts_of(tensors[i]);
      } catch (...) {
        int64_t seen = first_failed.load();
        while (i < seen && !first_failed.compare_exchange_weak(seen, i)) {
        }
        return;
      }
    }
  });
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (static_cast<int64_t>(i) == first_failed.load()) facts[i] = facts_of(tensors[i]);
    TensorFacts& f = facts[i];
    TRAINOPS_CHECK_TYPE(f.defined, op, ": tensor ", i, " is undefined");
    TRAINOPS_CHECK_TYPE(f.strided, op, ": tensor ", i,
                        " is not a dense (strided) tensor; sparse tensors are not supported");
    TRAINOPS_CHECK_TYPE(f.float_dtype, op, ": tensor ", i, " has dtype ",
                        dtype_name(tensor_at(tensors, i)),
                        "; only float16, bfloat16, float32 and float64 are supported");
    TRAINOPS_CHECK_VALUE(
        i == 0 || (f.device_type == facts[0].device_type && f.device_index == facts[0].device_index),
        op, ": all tensors of one call must be on one device, but tensor 0 is on ",
        device_str(tensor_at(tensors, 0)), " and tensor ", i, " is on ",
        device_str(tensor_at(tensors, i)));
  }
  return facts;
}

inline void check_norm_type(double norm_type, const char* op) {
  TRAINOPS_CHECK_VALUE(is_valid_norm_order(norm_type), op,
                       ": norm_type must be > 0 or inf (p-norms with p > 0 are supported), got ",
                       norm_type);
}

inline void check_writable(TensorListArg tensors, const std::vector<TensorFacts>& facts,
                           const char* op) {
  for (size_t i = 0; i < tensors.size(); ++i) {
    TRAINOPS_CHECK_VALUE(facts[i].contiguous || !has_internal_overlap(tensor_at(tensors, i)), op,
                         ": tensor ", i,
                         " has elements that share memory (e.g. an expanded view) and cannot be "
                         "modified in place");
  }
}

inline void check_max_norm(double max_norm, const char* op) {
  TRAINOPS_CHECK_VALUE(max_norm >= 0.0, op, ": max_norm must be a non-negative number, got ",
                       max_norm);
}

inline void check_clip_value(double clip_value, const char* op) {
  TRAINOPS_CHECK_VALUE(clip_value >= 0.0, op,
                       ": clip_value must be a non-negative number, got ", clip_value);
}

inline void check_total_norm(const Tensor& total, TensorListArg tensors, const char* op) {
  TRAINOPS_CHECK_VALUE(total.numel() == 1, op, ": total_norm must hold one element, got shape ",
                       shape_str(total));
  TRAINOPS_CHECK_TYPE(
      total.scalar_type() == ScalarType::Float || total.scalar_type() == ScalarType::Double, op,
      ": total_norm must be float32 or float64, got ", dtype_name(total));
  if (!tensors.empty()) {
    const Tensor first = tensor_at(tensors, 0);
    TRAINOPS_CHECK_VALUE(same_device(total, first), op, ": total_norm is on ", device_str(total),
                         " but the tensors are on ", device_str(first));
  }
}

// Result dtype of a norm: fp64 if any input is fp64, else fp32 (fp16/bf16 norms
// are returned in fp32 so that a norm above 65504 does not overflow).
inline ScalarType norm_result_dtype(const std::vector<TensorFacts>& facts) {
  for (const auto& f : facts) {
    if (f.dtype == DType::kDouble) return ScalarType::Double;
  }
  return ScalarType::Float;
}

}  // namespace trainops
