// Input validation shared by every backend: one set of checks, one wording.
// TORCH_CHECK_TYPE surfaces in Python as TypeError, TORCH_CHECK_VALUE as
// ValueError. The Python layer repeats the cheap ones with friendlier context;
// these guard direct torch.ops.trainops calls.
#pragma once

#include <ATen/ATen.h>
#include <ATen/MemoryOverlap.h>

#include <cmath>

#include "trainops/norm.h"

namespace trainops {

inline bool is_supported_float(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

// Every tensor: strided, floating (fp16/bf16/fp32/fp64), on one device.
inline void check_tensor_list(at::TensorList tensors, const char* op) {
  for (size_t i = 0; i < tensors.size(); ++i) {
    const at::Tensor& t = tensors[i];
    TORCH_CHECK_TYPE(t.defined(), op, ": tensor ", i, " is undefined");
    TORCH_CHECK_TYPE(t.layout() == at::kStrided, op, ": tensor ", i, " has layout ", t.layout(),
                     "; only dense (strided) tensors are supported, not sparse ones");
    TORCH_CHECK_TYPE(is_supported_float(t.scalar_type()), op, ": tensor ", i, " has dtype ",
                     t.scalar_type(),
                     "; only float16, bfloat16, float32 and float64 are supported");
    TORCH_CHECK_VALUE(t.device() == tensors[0].device(), op,
                      ": all tensors of one call must be on one device, but tensor 0 is on ",
                      tensors[0].device(), " and tensor ", i, " is on ", t.device());
  }
}

inline void check_norm_type(double norm_type, const char* op) {
  TORCH_CHECK_VALUE(is_valid_norm_order(norm_type), op,
                    ": norm_type must be > 0 or inf (p-norms with p > 0 are supported), got ",
                    norm_type);
}

inline void check_writable(at::TensorList tensors, const char* op) {
  for (size_t i = 0; i < tensors.size(); ++i) {
    TORCH_CHECK_VALUE(at::has_internal_overlap(tensors[i]) != at::MemOverlap::Yes, op,
                      ": tensor ", i,
                      " has elements that share memory (e.g. an expanded view) and cannot be "
                      "modified in place");
  }
}

inline void check_max_norm(double max_norm, const char* op) {
  TORCH_CHECK_VALUE(max_norm >= 0.0, op, ": max_norm must be a non-negative number, got ",
                    max_norm);
}

inline void check_clip_value(double clip_value, const char* op) {
  TORCH_CHECK_VALUE(clip_value >= 0.0, op, ": clip_value must be a non-negative number, got ",
                    clip_value);
}

inline void check_total_norm(const at::Tensor& total, at::TensorList tensors, const char* op) {
  TORCH_CHECK_VALUE(total.numel() == 1, op, ": total_norm must hold one element, got shape ",
                    total.sizes());
  TORCH_CHECK_TYPE(total.scalar_type() == at::kFloat || total.scalar_type() == at::kDouble, op,
                   ": total_norm must be float32 or float64, got ", total.scalar_type());
  if (!tensors.empty()) {
    TORCH_CHECK_VALUE(total.device() == tensors[0].device(), op, ": total_norm is on ",
                      total.device(), " but the tensors are on ", tensors[0].device());
  }
}

// Result dtype of a norm: fp64 if any input is fp64, else fp32 (fp16/bf16 norms
// are returned in fp32 so that a norm above 65504 does not overflow).
inline at::ScalarType norm_result_dtype(at::TensorList tensors) {
  for (const auto& t : tensors) {
    if (t.scalar_type() == at::kDouble) return at::kDouble;
  }
  return at::kFloat;
}

}  // namespace trainops
