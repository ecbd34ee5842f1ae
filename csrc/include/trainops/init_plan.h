// Torch-free description of one tensor of the init_tensors_ op, shared by the
// CPU and CUDA kernels: where its elements sit in the global (unsharded)
// tensor, how its work is cut into Philox blocks, and its distribution.
//
// A tensor -- or a shard of a bigger one -- is a set of *runs*: stretches of
// elements that are contiguous both in its own row-major memory and in the
// global row-major index. An unsharded tensor or a row shard is one run; a
// column shard of a [rows, cols] matrix is `rows` runs of its column count.
// The work items are (run, Philox block) pairs: item i of a tensor is block k
// = i % blocks_per_run of run r = i / blocks_per_run, counted from the block
// holding the run's first element. Each item computes one Philox block and
// writes the (up to kPerBlock) elements of it that fall inside its run, so
// every element is written exactly once and the split of items over threads
// or CUDA blocks never changes a value.
#pragma once

#include <cstdint>
#include <vector>

#include "trainops/common.h"
#include "trainops/distributions.h"
#include "trainops/fast_div.h"

namespace trainops {

// Most dimensions a *sharded* tensor may have (unsharded ones: any).
constexpr int kMaxInitDims = 8;
// Work items per chunk of the chunk plan: 16,384 Philox blocks, i.e. kChunkSize
// (65,536) fp32 elements or 32,768 fp64 ones.
constexpr int64_t kInitItemsPerChunk = int64_t{1} << 14;

struct InitLayout {
  int64_t run_len;   // elements per run (> 0 unless the tensor is empty)
  int64_t num_runs;  // runs; numel = run_len * num_runs
  int64_t base;      // global index of the first element
  int32_t outer_dims;
  int64_t outer_size[kMaxInitDims];     // local sizes of the dims that index runs
  int64_t outer_gstride[kMaxInitDims];  // their row-major strides in the global tensor
  DivU63 outer_div[kMaxInitDims];       // division by outer_size (no 64-bit divide on GPUs)
};

// Global index of the first element of run r.
TRAINOPS_HD int64_t run_global_start(const InitLayout& l, int64_t r) {
  int64_t g = l.base;
  for (int d = l.outer_dims - 1; d >= 0; --d) {
    const int64_t q = div_u63(r, l.outer_div[d]);
    g += (r - q * l.outer_size[d]) * l.outer_gstride[d];
    r = q;
  }
  return g;
}

enum class LayoutError { kNone, kDoesNotFit, kTooManyDims, kTooLarge };

// Largest global tensor (elements) a shard may belong to: far beyond any real
// tensor, and small enough that every global index, run end and tile end
// (index + a tile of Philox blocks) fits in int64.
constexpr int64_t kMaxGlobalElements = int64_t{1} << 62;

// Host only. Layout of a tensor of `ndim` dims and sizes `local`: the whole
// tensor when `global` is null, else the shard at `offset` of a global tensor
// of sizes `global`. On kDoesNotFit, *bad_dim is the offending dimension.
inline LayoutError make_init_layout(int64_t ndim, const int64_t* local, const int64_t* global,
                                    const int64_t* offset, InitLayout* out, int64_t* bad_dim) {
  InitLayout l{};
  int64_t numel = 1;
  for (int64_t d = 0; d < ndim; ++d) numel *= local[d];
  l.run_len = numel > 0 ? numel : 1;
  l.num_runs = numel > 0 ? 1 : 0;
  l.base = 0;
  l.outer_dims = 0;
  *out = l;
  if (global == nullptr || numel == 0) return LayoutError::kNone;

  for (int64_t d = 0; d < ndim; ++d) {
    // Written so that nothing overflows: offset <= global - local.
    if (offset[d] < 0 || local[d] > global[d] || offset[d] > global[d] - local[d]) {
      *bad_dim = d;
      return LayoutError::kDoesNotFit;
    }
  }
  int64_t gnumel = 1;
  for (int64_t d = 0; d < ndim; ++d) {
    if (__builtin_mul_overflow(gnumel, global[d], &gnumel) || gnumel > kMaxGlobalElements) {
      return LayoutError::kTooLarge;
    }
  }
  std::vector<int64_t> gstride(static_cast<size_t>(ndim), 1);
  for (int64_t d = ndim - 2; d >= 0; --d) gstride[d] = gstride[d + 1] * global[d + 1];
  int64_t last_partial = -1;
  for (int64_t d = 0; d < ndim; ++d) {
    l.base += offset[d] * gstride[d];
    if (local[d] != global[d]) last_partial = d;
  }
  if (last_partial >= 0) {
    // Dims after last_partial are whole: a run is the shard's extent from
    // last_partial on; the dims before it index the runs.
    l.run_len = 1;
    for (int64_t d = last_partial; d < ndim; ++d) l.run_len *= local[d];
    l.num_runs = numel / l.run_len;
    for (int64_t d = 0; d < last_partial; ++d) {
      if (local[d] == 1) continue;  // a size-1 dim indexes nothing
      if (l.outer_dims == kMaxInitDims) return LayoutError::kTooManyDims;
      l.outer_size[l.outer_dims] = local[d];
      l.outer_gstride[l.outer_dims] = gstride[d];
      l.outer_div[l.outer_dims] = make_div_u63(static_cast<uint64_t>(local[d]));
      ++l.outer_dims;
    }
  }
  *out = l;
  return LayoutError::kNone;
}

struct InitTensorPlan {
  void* data;  // contiguous, row-major
  DType dtype;
  InitKind kind;
  uint64_t key;
  int64_t blocks_per_run;
  DivU63 blocks_per_run_div;
  int64_t items;  // num_runs * blocks_per_run
  InitLayout layout;
  dist::DistParams<float> pf;   // used for fp16 / bf16 / fp32 outputs
  dist::DistParams<double> pd;  // used for fp64 outputs
};

// 4 (fp32 and narrower) or 2 (fp64): init_item relies on it being one of those.
static_assert(dist::RealTraits<float>::kPerBlock == 4 && dist::RealTraits<double>::kPerBlock == 2,
              "init_item divides by elements_per_block with a shift");
TRAINOPS_HD int elements_per_block(DType d) {
  return d == DType::kDouble ? dist::RealTraits<double>::kPerBlock
                                 : dist::RealTraits<float>::kPerBlock;
}

// Host only: the work items of p from its layout and dtype. A run whose first
// element is not at a block boundary touches one block more.
inline void set_work_items(InitTensorPlan* p) {
  const int per = elements_per_block(p->dtype);
  bool aligned = p->layout.base % per == 0;
  for (int d = 0; d < p->layout.outer_dims; ++d) aligned &= p->layout.outer_gstride[d] % per == 0;
  p->blocks_per_run = (p->layout.run_len + per - 1) / per + (aligned ? 0 : 1);
  p->blocks_per_run_div = make_div_u63(static_cast<uint64_t>(p->blocks_per_run));
  p->items = p->layout.num_runs * p->blocks_per_run;
}

// Item i of tensor p: the Philox block to compute and the elements it writes,
// as global indices [g_begin, g_end) and the local index of g_begin.
struct InitItem {
  uint64_t block;
  int64_t g_begin;
  int64_t g_end;
  int64_t local_begin;
};

TRAINOPS_HD InitItem init_item(const InitTensorPlan& p, int64_t i) {
  const int per = elements_per_block(p.dtype);
  // Whole tensors and row shards are one run; column shards divide by the
  // blocks per run with a precomputed multiplier (fast_div.h: a GPU's 64-bit
  // division by a run-time value is a ~60-instruction routine).
  const bool one_run = p.layout.num_runs == 1;
  const int64_t r = one_run ? 0 : div_u63(i, p.blocks_per_run_div);
  const int64_t k = i - r * p.blocks_per_run;
  const int64_t start = one_run ? p.layout.base : run_global_start(p.layout, r);
  // start / per: per is 4 or 2 and start >= 0, so a shift.
  const int64_t block = (start >> (per == 4 ? 2 : 1)) + k;
  int64_t g0 = block * per;
  int64_t g1 = g0 + per;
  g0 = g0 < start ? start : g0;
  g1 = g1 > start + p.layout.run_len ? start + p.layout.run_len : g1;
  g1 = g1 < g0 ? g0 : g1;  // an unused trailing item of an aligned run: empty
  return InitItem{static_cast<uint64_t>(block), g0, g1, r * p.layout.run_len + (g0 - start)};
}

}  // namespace trainops
