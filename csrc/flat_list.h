// A tensor list as flat spans, shared by the CPU and CUDA clipping kernels.
//
// The kernels are elementwise or order-free reductions, so any non-overlapping
// dense tensor (contiguous, transposed, channels-last, ...) is used in place
// as the span of its storage. Other layouts (strided slices) go through a
// contiguous copy -- its allocation is that tensor's size -- that the in-place
// ops copy back (write_back; on CUDA stream-ordered like everything else).
#pragma once

#include <utility>
#include <vector>

#include "torch_api.h"
#include "trainops/chunk_plan.h"

namespace trainops {

struct FlatList {
  std::vector<char*> data;  // read-only until make_writable()
  std::vector<DType> dtype;
  std::vector<int64_t> numel;
  std::vector<std::pair<Tensor, Tensor>> copies;  // (original, contiguous copy)
  std::vector<bool> copied;                       // tensor i's span is a copy (writable)
  bool writable = false;

  // facts: from check_tensor_list (checks.h), one per tensor.
  FlatList(TensorListArg tensors, const std::vector<TensorFacts>& facts) {
    const size_t n = tensors.size();
    data.reserve(n);
    dtype.reserve(n);
    numel.reserve(n);
    copied.assign(n, false);
    for (size_t i = 0; i < n; ++i) {
      // No Tensor copies on the common path: copying a tensor that Python
      // also holds costs an interpreter incref/decref (~50 ns).
      const TensorFacts& f = facts[i];
      // Read-only: make_writable() replaces it before any write.
      char* ptr = static_cast<char*>(const_cast<void*>(f.data));
      if (f.numel > 0 && !f.contiguous) {
        Tensor t = tensor_at(tensors, i);
        if (!is_dense(t)) {
          copies.emplace_back(t, make_contiguous(t));
          ptr = static_cast<char*>(copies.back().second.data_ptr());
          copied[i] = true;
        }
      }
      data.push_back(ptr);
      dtype.push_back(f.dtype);
      numel.push_back(f.numel);
    }
  }

  // Every writer calls this before its first write: the mutable data
  // pointers, on this thread (they may materialise a copy-on-write storage,
  // and two tensors of a list may share one; the values read before are the
  // same). Contiguous copies are the op's own, writable already.
  void make_writable(TensorListArg tensors) {
    if (writable) return;
    for (size_t i = 0; i < data.size(); ++i) {
      if (numel[i] > 0 && !copied[i]) data[i] = static_cast<char*>(data_of(tensors[i]));
    }
    writable = true;
  }

  void write_back() {
    for (auto& c : copies) copy_into(c.first, c.second);
  }

  // First element of a chunk of the plan made from `numel`.
  char* chunk_ptr(const Chunk& c) const {
    return data[c.tensor] + c.begin * static_cast<int64_t>(dtype_size(dtype[c.tensor]));
  }
};

}  // namespace trainops
