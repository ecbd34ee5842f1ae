// The one place where trainops meets libtorch's C++ API.
//
// The same sources build in one of two ways (setup.py: TRAINOPS_ABI):
//
//  - stable (TRAINOPS_STABLE_ABI=1, the default with torch >= 2.10): only the
//    LibTorch stable ABI -- STABLE_TORCH_LIBRARY, torch::stable::Tensor, the C
//    shim -- compiled with TORCH_TARGET_VERSION = 2.10. The binary references
//    no C++ symbol of libtorch, so one build (one wheel) loads under every
//    torch from 2.10 on.
//  - aten (TRAINOPS_STABLE_ABI=0): the version-specific C++ API (TORCH_LIBRARY,
//    at::Tensor). Needed for torch 2.6-2.9, whose stable ABI has no list
//    arguments; the binary loads only under the torch it was built against.
//
// Every other file in csrc/ is written against the vocabulary below: the
// Tensor type, the argument types of list ops, the checks, the handful of
// tensor operations the kernels need, and the registration macros.
#pragma once

#include <atomic>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "trainops/common.h"

#if !defined(TRAINOPS_STABLE_ABI)
#define TRAINOPS_STABLE_ABI 0
#endif

#if TRAINOPS_STABLE_ABI
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/ScalarType.h>
#else
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>
#endif

namespace trainops {

template <typename... Args>
std::string str(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

#if TRAINOPS_STABLE_ABI
using Tensor = torch::stable::Tensor;

// Deletes owned handles (ops.cpp): a long list under one hold of the GIL
// instead of torch taking it for each tensor that Python also holds.
void delete_tensor_handles(const std::vector<AtenTensorHandle>& handles);

// A Tensor[] argument as the stable ABI hands it over: one owned handle per
// tensor, deleted with the list. TORCH_BOX's own std::vector<Tensor> wraps
// every handle in a shared_ptr (an allocation and atomics per tensor): 95 ns
// more per tensor, a third of what a 10,000-tensor call costs to cross the
// ABI (measured with a do-nothing op: 2.9 -> 2.0 ms).
class TensorHandles {
 public:
  explicit TensorHandles(std::vector<AtenTensorHandle> handles) : handles_(std::move(handles)) {}
  TensorHandles(TensorHandles&& other) noexcept : handles_(std::move(other.handles_)) {
    other.handles_.clear();
  }
  TensorHandles(const TensorHandles&) = delete;
  TensorHandles& operator=(const TensorHandles&) = delete;
  TensorHandles& operator=(TensorHandles&&) = delete;
  ~TensorHandles() { delete_tensor_handles(handles_); }
  size_t size() const { return handles_.size(); }
  bool empty() const { return handles_.empty(); }
  // Borrowed: valid while the list lives.
  AtenTensorHandle operator[](size_t i) const { return handles_[i]; }

 private:
  std::vector<AtenTensorHandle> handles_;
};

// Kernel argument types of Tensor[], int[] and float[], and a borrowed
// element of a Tensor[] (tensor_at() gives an owned Tensor).
using TensorListArg = const TensorHandles&;
using TensorRef = AtenTensorHandle;
using IntListArg = const std::vector<int64_t>&;
using FloatListArg = const std::vector<double>&;
using ScalarType = torch::headeronly::ScalarType;

#define TRAINOPS_LIBRARY(m) STABLE_TORCH_LIBRARY(trainops, m)
#define TRAINOPS_LIBRARY_IMPL(key, m) STABLE_TORCH_LIBRARY_IMPL(trainops, key, m)
#define TRAINOPS_KERNEL(fn) TORCH_BOX(&fn)
// The stable ABI carries one exception type: in Python both checks raise
// RuntimeError. The Python API validates first and raises TypeError /
// ValueError itself; these guard direct torch.ops.trainops calls.
#define TRAINOPS_CHECK_TYPE(cond, ...)                                   \
  do {                                                                   \
    if (!(cond)) throw std::runtime_error(::trainops::str(__VA_ARGS__)); \
  } while (false)
#define TRAINOPS_CHECK_VALUE(cond, ...) TRAINOPS_CHECK_TYPE(cond, __VA_ARGS__)
#else
using Tensor = at::Tensor;
using TensorListArg = at::TensorList;
using TensorRef = const at::Tensor&;
using IntListArg = at::IntArrayRef;
using FloatListArg = at::ArrayRef<double>;
using ScalarType = at::ScalarType;

#define TRAINOPS_LIBRARY(m) TORCH_LIBRARY(trainops, m)
#define TRAINOPS_LIBRARY_IMPL(key, m) TORCH_LIBRARY_IMPL(trainops, key, m)
#define TRAINOPS_KERNEL(fn) (&fn)
// TypeError / ValueError in Python.
#define TRAINOPS_CHECK_TYPE(cond, ...) TORCH_CHECK_TYPE(cond, ::trainops::str(__VA_ARGS__))
#define TRAINOPS_CHECK_VALUE(cond, ...) TORCH_CHECK_VALUE(cond, ::trainops::str(__VA_ARGS__))
#endif

// ----------------------------------------------------------------- dtypes

// The kernel tag of t's dtype; false for anything but fp16/bf16/fp32/fp64.
inline bool dtype_of(const Tensor& t, DType* out) {
  switch (t.scalar_type()) {
    case ScalarType::Half:
      *out = DType::kHalf;
      return true;
    case ScalarType::BFloat16:
      *out = DType::kBFloat16;
      return true;
    case ScalarType::Float:
      *out = DType::kFloat;
      return true;
    case ScalarType::Double:
      *out = DType::kDouble;
      return true;
    default:
      return false;
  }
}

inline std::string dtype_name(const Tensor& t) { return c10::toString(t.scalar_type()); }

// ------------------------------------------------------------ tensor facts

// What the kernels need to know about one tensor, read once per call. On the
// stable ABI every accessor is a call through the C shim (and scalar_type()
// or device() several), so list ops read the raw shim values here, once, and
// compare them with codes cached on first use: ~8 calls per tensor instead
// of ~30 (measured: about 200 ns less per tensor on a list of 10,000). Only
// reads, no allocation: safe to call from several threads at once.
struct TensorFacts {
  // Read-only: torch's const accessor, which never materialises a
  // copy-on-write storage and is safe on many threads at once. Writers take
  // the mutable pointer with data_of() where they write.
  const void* data = nullptr;
  int64_t numel = 0;
  int32_t device_type = 0;  // only compared for equality
  int32_t device_index = -1;
  DType dtype = DType::kDouble;
  bool defined = false;
  bool float_dtype = false;  // fp16 / bf16 / fp32 / fp64 (dtype is meaningful)
  bool strided = false;
  bool contiguous = false;
};

#if TRAINOPS_STABLE_ABI
namespace detail {
struct ShimCodes {
  int32_t f16 = aoti_torch_dtype_float16();
  int32_t bf16 = aoti_torch_dtype_bfloat16();
  int32_t f32 = aoti_torch_dtype_float32();
  int32_t f64 = aoti_torch_dtype_float64();
  int32_t strided = aoti_torch_layout_strided();
  int32_t cuda = aoti_torch_device_type_cuda();
};
inline const ShimCodes& shim_codes() {
  static const ShimCodes codes;
  return codes;
}
inline void shim_ok(AOTITorchError err) {
  if (err != AOTI_TORCH_SUCCESS) throw std::runtime_error("trainops: a torch C shim call failed");
}
}  // namespace detail
#endif

// The read-only data pointer only for a floating tensor with elements (the
// others fail the checks, which then say why).
inline TensorFacts facts_of(TensorRef t) {
  TensorFacts f;
#if TRAINOPS_STABLE_ABI
  using detail::shim_ok;
  const detail::ShimCodes& c = detail::shim_codes();
  AtenTensorHandle h = t;
  shim_ok(aoti_torch_is_defined(h, &f.defined));
  if (!f.defined) return f;
  int32_t dtype = 0;
  int32_t layout = 0;
  shim_ok(aoti_torch_get_dtype(h, &dtype));
  shim_ok(aoti_torch_get_layout(h, &layout));
  shim_ok(aoti_torch_get_device_type(h, &f.device_type));
  shim_ok(aoti_torch_get_device_index(h, &f.device_index));
  f.strided = layout == c.strided;
  f.float_dtype = true;
  if (dtype == c.f32) {
    f.dtype = DType::kFloat;
  } else if (dtype == c.bf16) {
    f.dtype = DType::kBFloat16;
  } else if (dtype == c.f16) {
    f.dtype = DType::kHalf;
  } else if (dtype == c.f64) {
    f.dtype = DType::kDouble;
  } else {
    f.float_dtype = false;
  }
  if (!f.strided) return f;
  shim_ok(aoti_torch_get_numel(h, &f.numel));
  shim_ok(aoti_torch_is_contiguous(h, &f.contiguous));
  if (f.float_dtype && f.numel > 0) shim_ok(torch_get_const_data_ptr(h, &f.data));
#else
  f.defined = t.defined();
  if (!f.defined) return f;
  f.device_type = static_cast<int32_t>(t.device().type());
  f.device_index = t.device().index();
  f.strided = t.layout() == at::kStrided;
  f.float_dtype = dtype_of(t, &f.dtype);
  if (!f.strided) return f;
  f.numel = t.numel();
  f.contiguous = t.is_contiguous();
  if (f.float_dtype && f.numel > 0) f.data = t.const_data_ptr();
#endif
  return f;
}

// The mutable data pointer of a strided tensor with elements. Not part of
// facts_of: it may materialise a copy-on-write storage (two tensors of a list
// may share one), so it is read on one thread only (check_tensor_list,
// FlatList::make_writable, prepare_init).
inline void* data_of(TensorRef t) {
#if TRAINOPS_STABLE_ABI
  void* data = nullptr;
  detail::shim_ok(aoti_torch_get_data_ptr(t, &data));
  return data;
#else
  return t.data_ptr();
#endif
}

// Element i of a Tensor[] argument as an owned Tensor (for everything but the
// per-tensor hot path, which reads facts_of(list[i])).
inline Tensor tensor_at(TensorListArg list, size_t i) {
#if TRAINOPS_STABLE_ABI
  AtenTensorHandle h = nullptr;
  detail::shim_ok(aoti_torch_new_tensor_handle(list[i], &h));
  return Tensor(h);
#else
  return list[i];
#endif
}

inline bool is_cuda_facts(const TensorFacts& f) {
#if TRAINOPS_STABLE_ABI
  return f.device_type == detail::shim_codes().cuda;
#else
  return f.device_type == static_cast<int32_t>(at::kCUDA);
#endif
}

// ---------------------------------------------------------------- devices

inline std::string device_str(const Tensor& t) {
#if TRAINOPS_STABLE_ABI
  const auto device = t.device();
  std::string name;
  switch (device.type()) {
    case torch::headeronly::DeviceType::CPU:
      return "cpu";
    case torch::headeronly::DeviceType::CUDA:
      name = "cuda";
      break;
    case torch::headeronly::DeviceType::Meta:
      return "meta";
    default:
      name = str("device type ", static_cast<int>(device.type()));
      break;
  }
  return device.index() >= 0 ? str(name, ":", static_cast<int>(device.index())) : name;
#else
  return t.device().str();
#endif
}

inline bool same_device(const Tensor& a, const Tensor& b) {
#if TRAINOPS_STABLE_ABI
  const auto da = a.device();
  const auto db = b.device();
  return da.type() == db.type() && da.index() == db.index();
#else
  return a.device() == b.device();
#endif
}

inline bool is_cpu(const Tensor& t) {
#if TRAINOPS_STABLE_ABI
  return t.device().type() == torch::headeronly::DeviceType::CPU;
#else
  return t.device().is_cpu();
#endif
}

inline int device_index(const Tensor& t) {
#if TRAINOPS_STABLE_ABI
  return static_cast<int>(t.get_device_index());
#else
  return static_cast<int>(t.device().index());
#endif
}

// ---------------------------------------------------------------- layouts

inline std::string shape_str(const Tensor& t) {
  std::ostringstream out;
  out << "[";
  const auto sizes = t.sizes();
  for (size_t i = 0; i < sizes.size(); ++i) out << (i ? ", " : "") << sizes[i];
  out << "]";
  return out.str();
}

// The elements tile one span of storage exactly (contiguous, transposed,
// channels-last, ...): the elementwise kernels and the order-free reductions
// can use that span directly.
inline bool is_dense(const Tensor& t) {
#if TRAINOPS_STABLE_ABI
  if (t.is_contiguous()) return true;  // callers with TensorFacts check .contiguous first
  const auto sizes = t.sizes();
  const auto strides = t.strides();
  const size_t n = sizes.size();
  // Dimensions by increasing stride (size-1 dimensions do not matter); each
  // stride must equal the product of the sizes below it.
  std::vector<size_t> order;
  order.reserve(n);
  for (size_t d = 0; d < n; ++d) {
    if (sizes[d] == 0) return true;
    if (sizes[d] != 1) order.push_back(d);
  }
  for (size_t i = 1; i < order.size(); ++i) {
    for (size_t j = i; j > 0 && strides[order[j]] < strides[order[j - 1]]; --j) {
      std::swap(order[j], order[j - 1]);
    }
  }
  int64_t expected = 1;
  for (size_t d : order) {
    if (strides[d] != expected) return false;
    expected *= sizes[d];
  }
  return true;
#else
  return t.is_non_overlapping_and_dense();
#endif
}

// Some elements share memory (a dimension of size > 1 with stride 0, as in
// an expanded view): the tensor cannot be written in place.
inline bool has_internal_overlap(const Tensor& t) {
  if (t.is_contiguous()) return false;
  const auto sizes = t.sizes();
  const auto strides = t.strides();
  for (size_t d = 0; d < sizes.size(); ++d) {
    if (sizes[d] > 1 && strides[d] == 0) return true;
  }
  return false;
}

// -------------------------------------------------------- tensor operations

// A new uninitialised tensor of `shape` and `dtype` on the device of `like`.
inline Tensor empty_like_device(const Tensor& like, const std::vector<int64_t>& shape,
                                ScalarType dtype) {
#if TRAINOPS_STABLE_ABI
  return torch::stable::empty(shape, dtype, std::nullopt, like.device());
#else
  return at::empty(shape, like.options().dtype(dtype));
#endif
}

// ... on the CPU, in page-locked memory when `pinned`.
inline Tensor empty_cpu(const std::vector<int64_t>& shape, ScalarType dtype, bool pinned = false) {
#if TRAINOPS_STABLE_ABI
  return torch::stable::empty(shape, dtype, std::nullopt,
                              torch::stable::Device(torch::headeronly::DeviceType::CPU), pinned);
#else
  return at::empty(shape, at::TensorOptions().dtype(dtype).pinned_memory(pinned));
#endif
}

inline Tensor make_contiguous(const Tensor& t) {
#if TRAINOPS_STABLE_ABI
  return torch::stable::contiguous(t);
#else
  return t.contiguous();
#endif
}

inline void copy_into(Tensor& dst, const Tensor& src) {
#if TRAINOPS_STABLE_ABI
  torch::stable::copy_(dst, src);
#else
  dst.copy_(src);
#endif
}

// A copy of host tensor t on the device of `like`, asynchronous when t is
// pinned.
inline Tensor to_device_async(const Tensor& t, const Tensor& like) {
#if TRAINOPS_STABLE_ABI
  return torch::stable::to(t, like.device(), /*non_blocking=*/true);
#else
  return t.to(like.device(), /*non_blocking=*/true);
#endif
}

// f(begin, end) over [begin, end) on torch's intra-op thread pool.
template <typename F>
void parallel_for(int64_t begin, int64_t end, int64_t grain, const F& f) {
#if TRAINOPS_STABLE_ABI
  torch::stable::parallel_for(begin, end, grain, f);
#else
  at::parallel_for(begin, end, grain, f);
#endif
}

// fn(task) for every task in [0, num_tasks) on torch's intra-op thread pool,
// each task claimed from a shared counter rather than a fixed range per
// thread: on a shared host a thread whose core is busy elsewhere then takes
// fewer tasks instead of holding up the region (measured with a busy loop on
// one of two cores: GPT-2 normal init 88-104 -> 64-79 ms, GPT-2 clip 39-40 ->
// 26-28 ms; no change on a quiet machine). Callers' results
// must not depend on which thread runs a task (they do not: init values are
// pure functions of the index, norm partials are combined in chunk order).
template <typename F>
void parallel_tasks(int64_t num_tasks, const F& fn) {
  std::atomic<int64_t> next{0};
  parallel_for(0, num_tasks, 1, [&](int64_t, int64_t) {
    for (int64_t task; (task = next.fetch_add(1, std::memory_order_relaxed)) < num_tasks;) fn(task);
  });
}

}  // namespace trainops

#if TRAINOPS_STABLE_ABI
// Unboxing of a Tensor[] argument into trainops::TensorHandles (TORCH_BOX
// calls to<T>() for each argument; the ToImpl hook has the same signature in
// torch 2.10-2.14's headers).
HIDDEN_NAMESPACE_BEGIN(torch, stable, detail)
template <>
struct ToImpl<trainops::TensorHandles> {
  static trainops::TensorHandles call(StableIValue val, uint64_t /*extension_build_version*/,
                                      bool /*is_internal*/) {
    auto list = to<StableListHandle>(val);
    std::vector<AtenTensorHandle> handles;
    try {
      size_t size = 0;
      trainops::detail::shim_ok(torch_list_size(list, &size));
      handles.reserve(size);
      for (size_t i = 0; i < size; ++i) {
        StableIValue element;
        trainops::detail::shim_ok(torch_list_get_item(list, i, &element));
        handles.push_back(to<AtenTensorHandle>(element));  // owned from here on
      }
    } catch (...) {
      for (AtenTensorHandle h : handles) aoti_torch_delete_tensor_object(h);
      torch_delete_list(list);
      throw;
    }
    trainops::detail::shim_ok(torch_delete_list(list));
    return trainops::TensorHandles(std::move(handles));
  }
};
HIDDEN_NAMESPACE_END(torch, stable, detail)
#endif
