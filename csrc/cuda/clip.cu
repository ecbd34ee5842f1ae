// CUDA kernels of the multi-tensor norm / clip-scale / clamp ops.
//
// Launch design (docs/cuda.md has the long form):
// * The list (any mix of fp16/bf16/fp32/fp64) is cut by the same chunk plan as
//   on the CPU (trainops/chunk_plan.h, 2^16 elements per chunk) and each chunk
//   is one thread block. Chunk descriptors (pointer, length, tensor, dtype; 16
//   bytes) travel as kernel arguments, up to kMaxChunksPerLaunch per launch:
//   GPT-2's 1,995 chunks are one launch, 10,000 small tensors five. Nothing is
//   copied host-to-device, so there is no pinned staging buffer whose lifetime
//   a CUDA graph would have to extend, and no launch per tensor.
// * Norm: stage 1 writes one NormPartial per chunk (the CPU's representation,
//   norm.h) to a workspace; stage 2 combines each tensor's chunks (one warp per
//   tensor) and stage 3 the tensors (one block), both in a fixed tree. No
//   float atomics: the result is bitwise the same on every run.
// * Scale: every block reads total_norm on the device, computes the clip
//   coefficient there and returns before touching memory when it is 1.
// * No host sync anywhere: the ops can be captured in a CUDA graph.
#include <cstdint>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "../checks.h"
#include "../flat_list.h"
#include "../torch_api.h"
#include "cuda_api.h"
#include "trainops/chunk_plan.h"
#include "trainops/common.h"
#include "trainops/norm.h"

namespace trainops {
namespace cuda {
namespace {

// Element types are carried in the chunk descriptors as trainops::DType
// values (2 bits).
constexpr int32_t kDTypeBits = 2;
constexpr int32_t kDTypeMask = (1 << kDTypeBits) - 1;
// Tensor index and dtype share one int32: at most 2^29 tensors per call.
constexpr int64_t kMaxTensors = int64_t{1} << (31 - kDTypeBits);

// One block per chunk. 256 threads x 16-byte loads x kUnroll = 16 KiB in
// flight per block; with 8 blocks per SM that is 128 KiB per SM, enough to
// cover HBM latency at 4.8 TB/s (~36 KiB per SM per microsecond on 132 SMs).
// TRAINOPS_CUDA_UNROLL and TRAINOPS_CUDA_NORM_MIN_BLOCKS (the norm kernel's
// __launch_bounds__ minimum of resident blocks per SM, which caps its
// registers) exist for benchmarks/cuda_variants.sh, which builds and times
// other values on a GPU. On an H200 (RESULTS.md, GPU) neither beat the
// defaults on GPT-2; a minimum of 4 blocks was 9% faster on 10,000 small
// tensors but spills (80-byte stack), and unroll 8 was slower throughout.
#ifndef TRAINOPS_CUDA_UNROLL
#define TRAINOPS_CUDA_UNROLL 4
#endif
#ifdef TRAINOPS_CUDA_NORM_MIN_BLOCKS
#define TRAINOPS_NORM_LAUNCH_BOUNDS __launch_bounds__(kThreads, TRAINOPS_CUDA_NORM_MIN_BLOCKS)
#else
#define TRAINOPS_NORM_LAUNCH_BOUNDS __launch_bounds__(kThreads)
#endif
// TRAINOPS_CUDA_FUSED_FINALIZE=1 (for cuda_variants.sh, unmeasured so far):
// the norm kernel also finishes the reduction, so a norm is one memset and one
// kernel instead of three kernels. The block that completes a tensor (an
// integer counter per tensor, no float atomics) combines its chunk partials,
// and the block that completes the last tensor combines the tensors, each in
// a fixed tree whichever block runs it, so the result is the same on every
// run. Written for the H200's GPT-2 bf16 no-clip case,
// where the two finishing kernels took ~11 of 79 us of device time.
#ifndef TRAINOPS_CUDA_FUSED_FINALIZE
#define TRAINOPS_CUDA_FUSED_FINALIZE 0
#endif
// TRAINOPS_CUDA_V19_ELEMENT_MATH=1 (for one A/B in cuda_variants.sh, then to be
// removed): the norm loop as it was before the twentieth session -- a
// NaN-sticky max per element, bf16 lanes extracted one by one, bounds checks
// in every iteration, and (common.h) the fp16/bf16 conversions in integer
// code -- so
// that a GPU session times the leaner loop against it side by side.
#ifndef TRAINOPS_CUDA_V19_ELEMENT_MATH
#define TRAINOPS_CUDA_V19_ELEMENT_MATH 0
#endif
constexpr int kThreads = 256;
constexpr int kWarpSize = 32;
constexpr int kWarps = kThreads / kWarpSize;
constexpr int kUnroll = TRAINOPS_CUDA_UNROLL;
static_assert(kUnroll >= 1 && kUnroll <= 16, "fp32 folds of at most 16 terms keep the 1e-6 accuracy");
constexpr int kVecBytes = 16;
// Finalize: one warp per tensor (8 per block), then one block for the total.
constexpr int kTensorWarpsPerBlock = 8;
constexpr int kTotalThreads = 512;
constexpr unsigned kFullMask = 0xffffffffu;

static_assert(kChunkSize <= (int64_t{1} << 30), "chunk lengths are int32");

// As built by for_each_batch. With positions (norm_chunks_fused_kernel only,
// which decodes them as uint32) the words also carry the chunk's place in its
// tensor: bits from kPositionShift up in length, kLastChunkBit in
// tensor_dtype; no other kernel may be given such a batch.
struct ChunkDesc {
  void* data;            // first element of the chunk
  int32_t length;        // elements, in (0, kChunkSize]
  int32_t tensor_dtype;  // tensor index << kDTypeBits | DType
};
static_assert(sizeof(ChunkDesc) == 16, "descriptor layout");

// 16 B per chunk: 2,000 chunks are 32,016 B, inside the 32,764-byte kernel
// parameter limit of CUDA >= 12.1 on sm_70+ (the 4 KiB limit before that
// would hold 250 and make GPT-2 eight launches).
constexpr int kMaxChunksPerLaunch = 2000;

struct ChunkBatch {
  int64_t first_chunk;  // global index of chunks[0] in the plan
  ChunkDesc chunks[kMaxChunksPerLaunch];
};
static_assert(sizeof(ChunkBatch) <= 32764, "kernel parameters are limited to 32,764 bytes");

// Clamp bounds per DType, already rounded to that element type.
struct ClampBounds {
  double lo[4];
  double hi[4];
};

// ---------------------------------------------------------------------------
// Device helpers

template <typename T>
union alignas(kVecBytes) VecOf {
  static constexpr int kN = kVecBytes / static_cast<int>(sizeof(T));
  uint4 raw;
  uint32_t words[4];
  T v[kN];
};

// Lane j of a loaded vector as the accumulation type. bf16 lanes are read
// from their 32-bit word with one shift or mask each: the generic path
// extracted each 16-bit lane first, 58 instead of 35 instructions per 32
// elements.
template <typename acc_t, typename T>
__device__ __forceinline__ acc_t lane_as(const VecOf<T>& vec, int j) {
  return load_as<acc_t>(vec.v[j]);
}
#if !TRAINOPS_CUDA_V19_ELEMENT_MATH
template <typename acc_t>
__device__ __forceinline__ acc_t lane_as(const VecOf<bf16_bits>& vec, int j) {
  const uint32_t word = vec.words[j / 2];  // little-endian: lane 2k is the low half
  return static_cast<acc_t>(__uint_as_float(j % 2 == 0 ? word << 16 : word & 0xffff0000u));
}
#endif

__device__ __forceinline__ float abs_of(float v) { return fabsf(v); }
__device__ __forceinline__ double abs_of(double v) { return fabs(v); }
#if !TRAINOPS_CUDA_V19_ELEMENT_MATH
// max without NaN stickiness: the other operand when one is NaN.
// (fmaxf is one instruction; fmax on doubles is a longer sequence than this.)
__device__ __forceinline__ float max_of(float a, float b) { return fmaxf(a, b); }
__device__ __forceinline__ double max_of(double a, double b) { return b > a ? b : a; }
#endif

__device__ __forceinline__ bool is_aligned(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) % kVecBytes) == 0;
}

// Fixed-shape block reduction of (sum, nan-sticky max); every thread gets the
// result. The warp step is an xor butterfly (a + b == b + a, so all lanes
// agree bit for bit), then warps are added in index order.
__device__ __forceinline__ void block_sum_max(double& sum, double& mx) {
  __shared__ double s_sum[kWarps];
  __shared__ double s_max[kWarps];
  for (int off = kWarpSize / 2; off > 0; off /= 2) {
    sum += __shfl_xor_sync(kFullMask, sum, off);
    mx = nan_max(mx, __shfl_xor_sync(kFullMask, mx, off));
  }
  const int warp = threadIdx.x / kWarpSize;
  if (threadIdx.x % kWarpSize == 0) {
    s_sum[warp] = sum;
    s_max[warp] = mx;
  }
  __syncthreads();
  sum = s_sum[0];
  mx = s_max[0];
#pragma unroll
  for (int w = 1; w < kWarps; ++w) {
    sum += s_sum[w];
    mx = nan_max(mx, s_max[w]);
  }
  __syncthreads();  // the shared slots may be reused by the next call
}

// Sum of |x|^p (kScaled: of (|x| / divisor)^p) and max |x| over one chunk
// x[0, n), reduced over the block. Each thread keeps kN accumulators in acc_t
// (one per vector lane) and folds them into fp64 after every kUnroll vectors,
// so an fp32 accumulator adds at most kUnroll = 4 terms in fp32 (relative
// error <= 3 * 2^-24 even when every addition rounds the same way; the CPU
// folds every 16). A larger TRAINOPS_CUDA_UNROLL loosens that bound to
// (kUnroll - 1) * 2^-24; 16 is the most the 1e-6 accuracy target allows.
template <NormKind K, typename acc_t, bool kScaled, typename T>
__device__ void block_norm_range(const T* __restrict__ x, int32_t n, double p, double divisor,
                                 double& sum_out, double& max_out) {
  using V = VecOf<T>;
  constexpr int kN = V::kN;
  const acc_t pa = static_cast<acc_t>(p);
  const acc_t dv = static_cast<acc_t>(divisor);
  acc_t s[kN];
  double d[kN];
  acc_t mx = acc_t(0);
#pragma unroll
  for (int j = 0; j < kN; ++j) {
    s[j] = acc_t(0);
    d[j] = 0.0;
  }
  auto fold = [&]() {
#pragma unroll
    for (int j = 0; j < kN; ++j) {
      d[j] = d[j] + static_cast<double>(s[j]);
      s[j] = acc_t(0);
    }
  };

  // The max: an inf-norm has nothing else to carry a NaN, so it keeps
  // nan_max (two compares and a select per element). The other norms let
  // their sum carry it (|x|^p of a NaN is NaN, and the partial and the
  // combine check the sum too: make_partial, combine_max_step), so a plain
  // max (one fmax, which passes NaN over) is enough there: the same max for
  // any chunk without a NaN, and a NaN result either way. That is a third of
  // the bf16 loop's instructions (benchmarks/RESULTS.md, "Twentieth
  // session").
  auto take = [&](acc_t a, acc_t& acc) {
    a = abs_of(a);
    if constexpr (K == NormKind::kInf || TRAINOPS_CUDA_V19_ELEMENT_MATH) {
      mx = nan_max(mx, a);
    } else {
      mx = max_of(mx, a);
    }
    if constexpr (K != NormKind::kInf) {
      if constexpr (kScaled) a = a / dv;
      acc = acc + norm_term<K, acc_t>(a, pa);
    }
  };

  const int32_t nvec = is_aligned(x) ? n / kN : 0;
  const uint4* xv = reinterpret_cast<const uint4*>(x);
  // kUnroll vectors per thread, then a fold. Iterations whose kUnroll vectors
  // all lie in the range skip the per-vector bounds checks (a full chunk
  // has only those); the one after them, if any, checks each vector. The same
  // elements reach the same accumulators in the same order either way.
  const auto step = [&](int32_t base, auto checked) {
    V buf[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int32_t i = base + u * kThreads;
      if (!decltype(checked)::value || i < nvec) buf[u].raw = __ldg(xv + i);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      if (!decltype(checked)::value || base + u * kThreads < nvec) {
#pragma unroll
        for (int j = 0; j < kN; ++j) take(lane_as<acc_t>(buf[u], j), s[j]);
      }
    }
    fold();
  };
  int32_t base = threadIdx.x;
  // (Not in the rescue pass, which runs rarely: the split would only grow
  // the kernel.)
  for (; !kScaled && !TRAINOPS_CUDA_V19_ELEMENT_MATH && base + (kUnroll - 1) * kThreads < nvec;
       base += kThreads * kUnroll) {
    step(base, std::false_type{});
  }
  for (; base < nvec; base += kThreads * kUnroll) step(base, std::true_type{});
  // Unaligned chunks and the tail: element i = base + j * kThreads goes to
  // accumulator j, still coalesced.
  for (int32_t base = nvec * kN + threadIdx.x; base < n; base += kThreads * kN) {
#pragma unroll
    for (int j = 0; j < kN; ++j) {
      const int32_t i = base + j * kThreads;
      if (i < n) take(load_as<acc_t>(x[i]), s[j]);
    }
    fold();
  }

  // Fixed pairwise tree over the accumulators, in fp64.
#pragma unroll
  for (int width = kN / 2; width > 0; width /= 2) {
#pragma unroll
    for (int j = 0; j < width; ++j) d[j] = d[j] + d[j + width];
  }
  double sum = d[0];
  double m = static_cast<double>(mx);
  block_sum_max(sum, m);
  sum_out = sum;
  max_out = m;
}

// A chunk's NormPartial, with the CPU's rescue: if the chunk's max^p is
// outside the range where a plain sum in acc_t is exact enough
// (plain_sum_is_safe), sum (|x| / max)^p again in fp64 (rescaled_partial).
template <NormKind K, typename T>
__device__ NormPartial chunk_partial(const T* x, int32_t n, double p) {
  using acc_t = NormAcc<K, T>;
  double sum = 0.0;
  double max_abs = 0.0;
  block_norm_range<K, acc_t, false>(x, n, p, 1.0, sum, max_abs);
  if (K == NormKind::kInf || plain_sum_is_safe<acc_t>(max_abs, K, p)) {
    return make_partial(max_abs, sum, K, p);
  }
  double scaled_sum = 0.0;
  double unused_max = 0.0;
  block_norm_range<K, double, true>(x, n, p, max_abs, scaled_sum, unused_max);
  return rescaled_partial(max_abs, scaled_sum);
}

// chunk_partial of n elements at data, of the DType with the given code.
template <NormKind K>
__device__ NormPartial chunk_partial_of(int code, const void* data, int32_t n, double p) {
  switch (static_cast<DType>(code)) {
    case DType::kHalf:
      return chunk_partial<K>(static_cast<const half_bits*>(data), n, p);
    case DType::kBFloat16:
      return chunk_partial<K>(static_cast<const bf16_bits*>(data), n, p);
    case DType::kFloat:
      return chunk_partial<K>(static_cast<const float*>(data), n, p);
    default:
      return chunk_partial<K>(static_cast<const double*>(data), n, p);
  }
}

// A partial written by another block of the running kernel: read through L2
// (ld.global.cg), never from a stale L1 line.
__device__ __forceinline__ NormPartial load_partial(const NormPartial* q) {
  const double2 v = __ldcg(reinterpret_cast<const double2*>(q));
  return {v.x, v.y};
}

// combine_partials over parts[0, n) by a block of kBlockThreads threads; every
// thread gets the result. Fixed shape: threads take strided elements, warps
// reduce by xor butterfly, warps are added in index order.
template <int kBlockThreads>
__device__ NormPartial block_combine(const NormPartial* parts, int64_t n, NormKind kind,
                                     double p) {
  constexpr int kBlockWarps = kBlockThreads / kWarpSize;
  __shared__ double s_val[kBlockWarps];
  __shared__ int s_nan[kBlockWarps];
  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;

  double m = 0.0;
  bool has_nan = false;
  for (int64_t i = threadIdx.x; i < n; i += kBlockThreads) {
    combine_max_step(load_partial(parts + i), m, has_nan);
  }
  for (int off = kWarpSize / 2; off > 0; off /= 2) {
    const double o = __shfl_xor_sync(kFullMask, m, off);
    m = (o > m) ? o : m;
  }
  has_nan = __any_sync(kFullMask, has_nan);
  if (lane == 0) {
    s_val[warp] = m;
    s_nan[warp] = has_nan ? 1 : 0;
  }
  __syncthreads();
  m = 0.0;
  has_nan = false;
  for (int w = 0; w < kBlockWarps; ++w) {
    m = (s_val[w] > m) ? s_val[w] : m;
    has_nan = has_nan || s_nan[w] != 0;
  }
  __syncthreads();

  double s = 0.0;
  if (combine_needs_sum(m, has_nan, kind)) {  // uniform across the block
    for (int64_t i = threadIdx.x; i < n; i += kBlockThreads) {
      s += combine_term(load_partial(parts + i), m, kind, p);
    }
    for (int off = kWarpSize / 2; off > 0; off /= 2) s += __shfl_xor_sync(kFullMask, s, off);
    if (lane == 0) s_val[warp] = s;
    __syncthreads();
    s = s_val[0];
    for (int w = 1; w < kBlockWarps; ++w) s += s_val[w];
    __syncthreads();  // the shared slots may be reused by the next call
  }
  return combine_finish(m, has_nan, s, kind);
}

// ---------------------------------------------------------------------------
// Kernels

// Stage 1: parts[c] = partial of chunk c; chunk_tensor[c] = its tensor.
// grid: (chunks in this batch), block: kThreads.
template <NormKind K>
__global__ void TRAINOPS_NORM_LAUNCH_BOUNDS
    norm_chunks_kernel(const __grid_constant__ ChunkBatch batch, double p, NormPartial* parts,
                       int32_t* chunk_tensor) {
  const ChunkDesc& d = batch.chunks[blockIdx.x];
  const NormPartial r = chunk_partial_of<K>(d.tensor_dtype & kDTypeMask, d.data, d.length, p);
  if (threadIdx.x == 0) {
    const int64_t c = batch.first_chunk + blockIdx.x;
    parts[c] = r;
    chunk_tensor[c] = d.tensor_dtype >> kDTypeBits;
  }
}

// One round of a warp's search for the first index in a sorted [lo, hi) whose
// value is >= v (hi if none): lane k probed q_k = min(lo + (k + 1) * step - 1,
// hi - 1), and ge holds the lanes whose probe was >= v (a suffix of the lanes,
// the array being sorted). The answer lies in [q_{j-1} + 1, q_j] for the first
// such lane j (q_{-1} + 1 = lo), or is hi if there is none (q_31 = hi - 1).
__device__ __forceinline__ void narrow(int64_t& lo, int64_t& hi, int64_t step, unsigned ge) {
  if (ge == 0) {
    lo = hi;
    return;
  }
  const int j = __ffs(ge) - 1;
  const int64_t qj = min(lo + (j + 1) * step - 1, hi - 1);
  lo = (j == 0) ? lo : min(lo + j * step - 1, hi - 1) + 1;
  hi = qj;
}

// [begin, end) of the chunks of tensor t in the sorted chunk -> tensor map
// a[0, n), found by one warp (all lanes get the result). Each round the 32
// lanes probe 32 evenly spaced entries for both bounds at once, narrowing each
// range 32-fold: GPT-2's 1,995 chunks take 3 rounds of dependent loads, where
// two binary searches took 22. On an H200 (2026-12-01, alternated builds)
// the fused clip op on GPT-2 bf16, not triggered, went from 80.1 to 77.8 us of
// device time; the profiler gave this kernel 11.5 us before (one run) and
// 8.5 us after (another).
__device__ void warp_tensor_range(const int32_t* a, int64_t n, int64_t t, int64_t& begin,
                                  int64_t& end) {
  const int64_t lane = threadIdx.x % kWarpSize;
  int64_t lo0 = 0, hi0 = n, lo1 = 0, hi1 = n;
  while (lo0 < hi0 || lo1 < hi1) {  // warp-uniform
    const int64_t step0 = (hi0 - lo0 + kWarpSize - 1) / kWarpSize;
    const int64_t step1 = (hi1 - lo1 + kWarpSize - 1) / kWarpSize;
    // Both loads before either ballot: their latencies overlap.
    const int64_t x0 = lo0 < hi0 ? a[min(lo0 + (lane + 1) * step0 - 1, hi0 - 1)] : 0;
    const int64_t x1 = lo1 < hi1 ? a[min(lo1 + (lane + 1) * step1 - 1, hi1 - 1)] : 0;
    const unsigned ge0 = __ballot_sync(kFullMask, x0 >= t);
    const unsigned ge1 = __ballot_sync(kFullMask, x1 >= t + 1);
    if (lo0 < hi0) narrow(lo0, hi0, step0, ge0);
    if (lo1 < hi1) narrow(lo1, hi1, step1, ge1);
  }
  begin = lo0;
  end = lo1;
}

// combine_partials over parts[0, n) by one warp; every lane gets the result.
__device__ NormPartial warp_combine(const NormPartial* parts, int64_t n, NormKind kind, double p) {
  const int lane = threadIdx.x % kWarpSize;
  double m = 0.0;
  bool has_nan = false;
  for (int64_t i = lane; i < n; i += kWarpSize) combine_max_step(parts[i], m, has_nan);
  for (int off = kWarpSize / 2; off > 0; off /= 2) {
    const double o = __shfl_xor_sync(kFullMask, m, off);
    m = (o > m) ? o : m;
  }
  has_nan = __any_sync(kFullMask, has_nan);
  double s = 0.0;
  if (combine_needs_sum(m, has_nan, kind)) {
    for (int64_t i = lane; i < n; i += kWarpSize) s += combine_term(parts[i], m, kind, p);
    for (int off = kWarpSize / 2; off > 0; off /= 2) s += __shfl_xor_sync(kFullMask, s, off);
  }
  return combine_finish(m, has_nan, s, kind);
}

// Stage 2: tensor_parts[t] = combine of tensor t's chunks (empty tensors have
// none and give {0, 0}); per[t] = its norm when per != nullptr.
// grid: ceil(tensors / kTensorWarpsPerBlock), block: kTensorWarpsPerBlock warps.
template <typename out_t>
__global__ void __launch_bounds__(kTensorWarpsPerBlock* kWarpSize)
    tensor_norms_kernel(const NormPartial* parts, const int32_t* chunk_tensor, int64_t num_chunks,
                        int64_t num_tensors, NormKind kind, double p, NormPartial* tensor_parts,
                        out_t* per) {
  const int64_t t =
      static_cast<int64_t>(blockIdx.x) * kTensorWarpsPerBlock + threadIdx.x / kWarpSize;
  if (t >= num_tensors) return;  // whole warps leave together
  int64_t begin = 0;
  int64_t end = 0;
  warp_tensor_range(chunk_tensor, num_chunks, t, begin, end);
  const NormPartial r = warp_combine(parts + begin, end - begin, kind, p);
  if (threadIdx.x % kWarpSize == 0) {
    tensor_parts[t] = r;
    if (per != nullptr) per[t] = static_cast<out_t>(partial_to_norm(r, kind, p));
  }
}

// Stage 3: *total = norm of the combine of all tensor partials.
// grid: 1, block: kTotalThreads.
template <typename out_t>
__global__ void __launch_bounds__(kTotalThreads)
    total_norm_kernel(const NormPartial* tensor_parts, int64_t n, NormKind kind, double p,
                      out_t* total) {
  const NormPartial r = block_combine<kTotalThreads>(tensor_parts, n, kind, p);
  if (threadIdx.x == 0) *total = static_cast<out_t>(partial_to_norm(r, kind, p));
}

#if TRAINOPS_CUDA_FUSED_FINALIZE
// Descriptors of a fused norm launch also say where the chunk lies in its
// tensor: its index k there in the length word's bits from kPositionShift up
// (so tensors of at most kMaxPositions chunks; the host falls back to the
// three-kernel path beyond), and kLastChunkBit on the tensor's last chunk.
constexpr int kPositionShift = 17;
constexpr uint32_t kLengthMask = (1u << kPositionShift) - 1;
constexpr int64_t kMaxPositions = int64_t{1} << (32 - kPositionShift);
constexpr uint32_t kLastChunkBit = 1u << 31;
static_assert(kChunkSize <= kLengthMask, "chunk lengths fit below the position bits");
static_assert(kMaxTensors << kDTypeBits <= kLastChunkBit, "tensor and dtype fit below the last-chunk bit");
// A tensor's counter reaches kDoneTarget when all its chunks are in: the last
// chunk (index k) adds kDoneTarget - k, each of the k others adds 1.
constexpr uint32_t kDoneTarget = 1u << 31;

template <typename out_t>
struct FusedFinalize {
  NormPartial* parts;          // [chunks]
  NormPartial* tensor_parts;   // [tensors], zeroed (an empty tensor keeps {0, 0})
  uint32_t* tensor_done;       // [tensors], zeroed
  uint32_t* tensors_done;      // [1], zeroed
  uint32_t* tensor_chunks;     // [tensors], written by each tensor's last chunk
  int64_t num_tensors;
  uint32_t nonempty_tensors;   // > 0: the host takes the three-kernel path otherwise
  out_t* total;
  out_t* per;                  // nullptr: no per-tensor norms
};
static_assert(sizeof(ChunkBatch) + sizeof(double) + sizeof(FusedFinalize<double>) + 16 <= 32764,
              "kernel parameters are limited to 32,764 bytes (16 for alignment padding)");

// Stages 1-3 in one kernel. Every block writes its chunk's partial; the block
// that completes a tensor combines that tensor's partials and the block that
// completes the last tensor combines the tensors and writes the outputs, both
// with block_combine<kThreads>: a fixed tree, so the results are the same on
// every run, though not bitwise those of the three-kernel path (a warp per
// tensor, 512 threads for the total). Release: the writer's __threadfence()
// before its atomicAdd; acquire: a __threadfence() in the thread that saw the
// count complete, before the barrier, and load_partial's L2 reads.
// grid: (chunks in this batch), block: kThreads.
template <NormKind K, typename out_t>
__global__ void TRAINOPS_NORM_LAUNCH_BOUNDS
    norm_chunks_fused_kernel(const __grid_constant__ ChunkBatch batch, double p,
                             const FusedFinalize<out_t> f) {
  __shared__ bool s_tensor_done;
  __shared__ bool s_all_done;
  const ChunkDesc& d = batch.chunks[blockIdx.x];
  const uint32_t length_word = static_cast<uint32_t>(d.length);
  const uint32_t tensor_word = static_cast<uint32_t>(d.tensor_dtype);
  const int32_t n = static_cast<int32_t>(length_word & kLengthMask);
  const NormPartial r =
      chunk_partial_of<K>(static_cast<int>(tensor_word & kDTypeMask), d.data, n, p);

  const int64_t c = batch.first_chunk + blockIdx.x;
  const int64_t t = static_cast<int64_t>((tensor_word & ~kLastChunkBit) >> kDTypeBits);
  const uint32_t k = length_word >> kPositionShift;
  const bool last = (tensor_word & kLastChunkBit) != 0;
  if (threadIdx.x == 0) {
    f.parts[c] = r;
    if (last) f.tensor_chunks[t] = k + 1;
    __threadfence();
    const uint32_t add = last ? kDoneTarget - k : 1u;
    const bool done = atomicAdd(f.tensor_done + t, add) + add == kDoneTarget;
    if (done) __threadfence();  // acquire, in the thread that saw the count
    s_tensor_done = done;
  }
  __syncthreads();
  if (!s_tensor_done) return;  // block-uniform

  const uint32_t count = last ? k + 1 : __ldcg(f.tensor_chunks + t);
  const NormPartial tensor_part = block_combine<kThreads>(f.parts + (c - k), count, K, p);
  if (threadIdx.x == 0) {
    f.tensor_parts[t] = tensor_part;
    __threadfence();
    const bool done = atomicAdd(f.tensors_done, 1u) + 1u == f.nonempty_tensors;
    if (done) __threadfence();
    s_all_done = done;
  }
  __syncthreads();
  if (!s_all_done) return;  // block-uniform

  const NormPartial all = block_combine<kThreads>(f.tensor_parts, f.num_tensors, K, p);
  if (threadIdx.x == 0) *f.total = static_cast<out_t>(partial_to_norm(all, K, p));
  if (f.per != nullptr) {
    for (int64_t i = threadIdx.x; i < f.num_tensors; i += kThreads) {
      f.per[i] = static_cast<out_t>(partial_to_norm(load_partial(f.tensor_parts + i), K, p));
    }
  }
}
#endif  // TRAINOPS_CUDA_FUSED_FINALIZE

// x *= coef over one chunk, 16-byte vectors where aligned. fp16/bf16 are
// scaled in fp32 and rounded once (torch's opmath), like the CPU.
template <typename T, typename coef_t>
__device__ void block_scale_range(T* __restrict__ x, int32_t n, coef_t coef) {
  using V = VecOf<T>;
  constexpr int kN = V::kN;
  const int32_t nvec = is_aligned(x) ? n / kN : 0;
  uint4* xv = reinterpret_cast<uint4*>(x);
  for (int32_t base = threadIdx.x; base < nvec; base += kThreads * kUnroll) {
    V buf[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int32_t i = base + u * kThreads;
      if (i < nvec) buf[u].raw = xv[i];
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int32_t i = base + u * kThreads;
      if (i < nvec) {
#pragma unroll
        for (int j = 0; j < kN; ++j) store_from(&buf[u].v[j], load_as<coef_t>(buf[u].v[j]) * coef);
        xv[i] = buf[u].raw;
      }
    }
  }
  for (int32_t i = nvec * kN + threadIdx.x; i < n; i += kThreads) {
    store_from(x + i, load_as<coef_t>(x[i]) * coef);
  }
}

// In place x *= clip_coefficient(*total, max_norm); nothing is written when
// the coefficient is exactly 1 (each block decides alike from the same value).
// grid: (chunks in this batch), block: kThreads.
template <typename total_t>
__global__ void __launch_bounds__(kThreads)
    clip_scale_kernel(const __grid_constant__ ChunkBatch batch, const total_t* total,
                      double max_norm) {
  const total_t coef = clip_coefficient<total_t>(*total, max_norm);
  if (coef == static_cast<total_t>(1)) return;
  // The CPU's pair: the coefficient in the total's dtype, converted once.
  const double coef_double = static_cast<double>(coef);
  const float coef_float = static_cast<float>(coef);
  const ChunkDesc& d = batch.chunks[blockIdx.x];
  switch (static_cast<DType>(d.tensor_dtype & kDTypeMask)) {
    case DType::kHalf:
      block_scale_range(static_cast<half_bits*>(d.data), d.length, coef_float);
      break;
    case DType::kBFloat16:
      block_scale_range(static_cast<bf16_bits*>(d.data), d.length, coef_float);
      break;
    case DType::kFloat:
      block_scale_range(static_cast<float*>(d.data), d.length, coef_float);
      break;
    default:
      block_scale_range(static_cast<double*>(d.data), d.length, coef_double);
      break;
  }
}

// Clamp one chunk to [lo, hi] (bounds exact in T); a vector is stored only if
// one of its elements changed, so grads already inside the range are not
// written. NaN compares false both ways and stays.
template <typename T, typename acc_t>
__device__ void block_clamp_range(T* __restrict__ x, int32_t n, acc_t lo, acc_t hi) {
  using V = VecOf<T>;
  constexpr int kN = V::kN;
  const int32_t nvec = is_aligned(x) ? n / kN : 0;
  uint4* xv = reinterpret_cast<uint4*>(x);
  for (int32_t base = threadIdx.x; base < nvec; base += kThreads * kUnroll) {
    V buf[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int32_t i = base + u * kThreads;
      if (i < nvec) buf[u].raw = xv[i];
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int32_t i = base + u * kThreads;
      if (i < nvec) {
        bool changed = false;
#pragma unroll
        for (int j = 0; j < kN; ++j) {
          const acc_t v = load_as<acc_t>(buf[u].v[j]);
          if (v < lo || v > hi) {
            store_from(&buf[u].v[j], clamp_keep_nan(v, lo, hi));
            changed = true;
          }
        }
        if (changed) xv[i] = buf[u].raw;
      }
    }
  }
  for (int32_t i = nvec * kN + threadIdx.x; i < n; i += kThreads) {
    const acc_t v = load_as<acc_t>(x[i]);
    if (v < lo || v > hi) store_from(x + i, clamp_keep_nan(v, lo, hi));
  }
}

// grid: (chunks in this batch), block: kThreads.
__global__ void __launch_bounds__(kThreads)
    clamp_kernel(const __grid_constant__ ChunkBatch batch, const __grid_constant__ ClampBounds bounds) {
  const ChunkDesc& d = batch.chunks[blockIdx.x];
  const int code = d.tensor_dtype & kDTypeMask;
  const double lo = bounds.lo[code];
  const double hi = bounds.hi[code];
  switch (static_cast<DType>(code)) {
    case DType::kHalf:
      block_clamp_range(static_cast<half_bits*>(d.data), d.length, static_cast<float>(lo),
                        static_cast<float>(hi));
      break;
    case DType::kBFloat16:
      block_clamp_range(static_cast<bf16_bits*>(d.data), d.length, static_cast<float>(lo),
                        static_cast<float>(hi));
      break;
    case DType::kFloat:
      block_clamp_range(static_cast<float*>(d.data), d.length, static_cast<float>(lo),
                        static_cast<float>(hi));
      break;
    default:
      block_clamp_range(static_cast<double*>(d.data), d.length, lo, hi);
      break;
  }
}

// ---------------------------------------------------------------------------
// Host side

// Call launch(batch, chunks_in_batch) for the plan's chunks, kMaxChunksPerLaunch
// at a time, in plan order. Returns the number of chunks.
// with_positions: descriptors also carry each chunk's place in its tensor
// (norm_chunks_fused_kernel).
template <typename Launch>
int64_t for_each_batch(const FlatList& flat, const Launch& launch, bool with_positions = false) {
  const ChunkPlan plan = make_chunk_plan(flat.numel);
  const int64_t num_chunks = static_cast<int64_t>(plan.chunks.size());
  // 32 KB: on the heap, not the host stack.
  auto batch = std::make_unique<ChunkBatch>();
  int count = 0;
  batch->first_chunk = 0;
  for (int64_t c = 0; c < num_chunks; ++c) {
    const Chunk& ch = plan.chunks[c];
    const int64_t t = ch.tensor;
    uint32_t length_word = static_cast<uint32_t>(ch.length);
    uint32_t tensor_word = static_cast<uint32_t>((t << kDTypeBits) | static_cast<int32_t>(flat.dtype[t]));
#if TRAINOPS_CUDA_FUSED_FINALIZE
    if (with_positions) {
      length_word |= static_cast<uint32_t>(ch.begin / kChunkSize) << kPositionShift;
      if (ch.begin + ch.length == flat.numel[t]) tensor_word |= kLastChunkBit;
    }
#else
    (void)with_positions;
#endif
    batch->chunks[count++] = ChunkDesc{flat.chunk_ptr(ch), static_cast<int32_t>(length_word),
                                       static_cast<int32_t>(tensor_word)};
    if (count == kMaxChunksPerLaunch || c + 1 == num_chunks) {
      launch(*batch, count);
      batch->first_chunk = c + 1;
      count = 0;
    }
  }
  return num_chunks;
}

std::vector<TensorFacts> check_cuda_list(TensorListArg tensors, const char* op) {
  TRAINOPS_CHECK_VALUE(!tensors.empty(), op, ": expected at least one tensor");
  auto facts = check_tensor_list(tensors, op);
  TRAINOPS_CHECK_VALUE(is_cuda_facts(facts[0]), op, ": expected CUDA tensors, got ",
                       device_str(tensor_at(tensors, 0)));
  TRAINOPS_CHECK_VALUE(static_cast<int64_t>(tensors.size()) < kMaxTensors, op, ": at most ",
                    kMaxTensors, " tensors per call, got ", tensors.size());
  return facts;
}

template <NormKind K>
void launch_norm_chunks(const FlatList& flat, double p, NormPartial* parts, int32_t* chunk_tensor,
                        cudaStream_t stream) {
  for_each_batch(flat, [&](const ChunkBatch& batch, int count) {
    norm_chunks_kernel<K><<<count, kThreads, 0, stream>>>(batch, p, parts, chunk_tensor);
    TRAINOPS_CUDA_LAUNCH_CHECK();
  });
}

#if TRAINOPS_CUDA_FUSED_FINALIZE
// The fused pass takes lists with at least one chunk whose tensors have at
// most kMaxPositions chunks each (2^31 elements).
bool fused_finalize_fits(const FlatList& flat, int64_t num_chunks) {
  if (num_chunks == 0) return false;
  for (int64_t n : flat.numel) {
    if (num_chunks_of(n) > kMaxPositions) return false;
  }
  return true;
}

template <typename out_t>
void launch_norm_fused(const FlatList& flat, const NormSpec& spec, const FusedFinalize<out_t>& f,
                       cudaStream_t stream) {
  const auto launch = [&](auto kind) {
    constexpr NormKind K = decltype(kind)::value;
    for_each_batch(
        flat,
        [&](const ChunkBatch& batch, int count) {
          norm_chunks_fused_kernel<K, out_t><<<count, kThreads, 0, stream>>>(batch, spec.p, f);
          TRAINOPS_CUDA_LAUNCH_CHECK();
        },
        /*with_positions=*/true);
  };
  switch (spec.kind) {
    case NormKind::kOne:
      launch(std::integral_constant<NormKind, NormKind::kOne>{});
      break;
    case NormKind::kTwo:
      launch(std::integral_constant<NormKind, NormKind::kTwo>{});
      break;
    case NormKind::kInf:
      launch(std::integral_constant<NormKind, NormKind::kInf>{});
      break;
    default:
      launch(std::integral_constant<NormKind, NormKind::kP>{});
      break;
  }
}

// norm_pass in one memset and one kernel launch per batch (see
// norm_chunks_fused_kernel). Workspace: chunk partials, then the zeroed
// region (tensor partials, per-tensor counters, the tensors counter), then
// the per-tensor chunk counts.
std::tuple<Tensor, Tensor> fused_norm_pass(const Tensor& first, const FlatList& flat,
                                           const NormSpec& spec, bool per_tensor,
                                           ScalarType out_dtype, int64_t num_chunks,
                                           cudaStream_t stream) {
  const int64_t num_tensors = static_cast<int64_t>(flat.numel.size());
  int64_t nonempty = 0;
  for (int64_t n : flat.numel) nonempty += n > 0 ? 1 : 0;
  const int64_t part_bytes = static_cast<int64_t>(sizeof(NormPartial));
  const int64_t counter_bytes = static_cast<int64_t>(sizeof(uint32_t));
  const int64_t zeroed_bytes = num_tensors * (part_bytes + counter_bytes) + counter_bytes;
  Tensor workspace = empty_like_device(
      first, {num_chunks * part_bytes + zeroed_bytes + num_tensors * counter_bytes},
      ScalarType::Byte);
  auto* parts = static_cast<NormPartial*>(workspace.data_ptr());
  NormPartial* tensor_parts = parts + num_chunks;
  auto* tensor_done = reinterpret_cast<uint32_t*>(tensor_parts + num_tensors);
  uint32_t* tensors_done = tensor_done + num_tensors;
  uint32_t* tensor_chunks = tensors_done + 1;
  TRAINOPS_CUDA_CHECK(cudaMemsetAsync(tensor_parts, 0, static_cast<size_t>(zeroed_bytes), stream));

  Tensor total = empty_like_device(first, {}, out_dtype);
  Tensor per = empty_like_device(first, {per_tensor ? num_tensors : 0}, out_dtype);
  const auto run = [&](auto* total_out, auto* per_out) {
    using out_t = std::remove_pointer_t<decltype(total_out)>;
    const FusedFinalize<out_t> f{parts,       tensor_parts,
                                 tensor_done, tensors_done,
                                 tensor_chunks, num_tensors,
                                 static_cast<uint32_t>(nonempty), total_out,
                                 per_tensor ? per_out : nullptr};
    launch_norm_fused(flat, spec, f, stream);
  };
  if (out_dtype == ScalarType::Double) {
    run(static_cast<double*>(total.data_ptr()), static_cast<double*>(per.data_ptr()));
  } else {
    run(static_cast<float*>(total.data_ptr()), static_cast<float*>(per.data_ptr()));
  }
  return {total, per};
}
#endif  // TRAINOPS_CUDA_FUSED_FINALIZE

// The norm pass over a prepared list: (total, per-tensor norms or empty), in
// the result dtype, both on the device. Three launches (chunks, tensors,
// total), no host sync.
std::tuple<Tensor, Tensor> norm_pass(const Tensor& first, const std::vector<TensorFacts>& facts,
                                     const FlatList& flat, const NormSpec& spec, bool per_tensor,
                                     cudaStream_t stream) {
  const ScalarType out_dtype = norm_result_dtype(facts);
  int64_t num_chunks = 0;
  for (int64_t n : flat.numel) num_chunks += num_chunks_of(n);
  const int64_t num_tensors = static_cast<int64_t>(facts.size());
#if TRAINOPS_CUDA_FUSED_FINALIZE
  if (fused_finalize_fits(flat, num_chunks)) {
    return fused_norm_pass(first, flat, spec, per_tensor, out_dtype, num_chunks, stream);
  }
#endif

  // Workspace, O(tensors + chunks): chunk partials, tensor partials (16 B
  // each, so they stay 16-byte aligned), then the chunk -> tensor map.
  const int64_t part_bytes = static_cast<int64_t>(sizeof(NormPartial));
  Tensor workspace = empty_like_device(
      first, {(num_chunks + num_tensors) * part_bytes + num_chunks * 4}, ScalarType::Byte);
  auto* parts = static_cast<NormPartial*>(workspace.data_ptr());
  NormPartial* tensor_parts = parts + num_chunks;
  auto* chunk_tensor = reinterpret_cast<int32_t*>(tensor_parts + num_tensors);

  Tensor total = empty_like_device(first, {}, out_dtype);
  Tensor per = empty_like_device(first, {per_tensor ? num_tensors : 0}, out_dtype);

  switch (spec.kind) {
    case NormKind::kOne:
      launch_norm_chunks<NormKind::kOne>(flat, spec.p, parts, chunk_tensor, stream);
      break;
    case NormKind::kTwo:
      launch_norm_chunks<NormKind::kTwo>(flat, spec.p, parts, chunk_tensor, stream);
      break;
    case NormKind::kInf:
      launch_norm_chunks<NormKind::kInf>(flat, spec.p, parts, chunk_tensor, stream);
      break;
    default:
      launch_norm_chunks<NormKind::kP>(flat, spec.p, parts, chunk_tensor, stream);
      break;
  }

  const auto finalize = [&](auto* total_out, auto* per_out) {
    using out_t = std::remove_pointer_t<decltype(total_out)>;
    const int64_t blocks = (num_tensors + kTensorWarpsPerBlock - 1) / kTensorWarpsPerBlock;
    tensor_norms_kernel<out_t><<<blocks, kTensorWarpsPerBlock * kWarpSize, 0, stream>>>(
        parts, chunk_tensor, num_chunks, num_tensors, spec.kind, spec.p, tensor_parts,
        per_tensor ? per_out : nullptr);
    TRAINOPS_CUDA_LAUNCH_CHECK();
    total_norm_kernel<out_t><<<1, kTotalThreads, 0, stream>>>(tensor_parts, num_tensors,
                                                              spec.kind, spec.p, total_out);
    TRAINOPS_CUDA_LAUNCH_CHECK();
  };
  if (out_dtype == ScalarType::Double) {
    finalize(static_cast<double*>(total.data_ptr()),
             per_tensor ? static_cast<double*>(per.data_ptr()) : nullptr);
  } else {
    finalize(static_cast<float*>(total.data_ptr()),
             per_tensor ? static_cast<float*>(per.data_ptr()) : nullptr);
  }
  return {total, per};
}

// The scale pass: every block reads the total on the device and returns
// before any write when the coefficient is 1.
void scale_pass(TensorListArg tensors, FlatList& flat, const Tensor& total_norm, double max_norm,
                cudaStream_t stream) {
  flat.make_writable(tensors);
  if (total_norm.scalar_type() == ScalarType::Double) {
    const auto* total = static_cast<const double*>(total_norm.data_ptr());
    for_each_batch(flat, [&](const ChunkBatch& batch, int count) {
      clip_scale_kernel<double><<<count, kThreads, 0, stream>>>(batch, total, max_norm);
      TRAINOPS_CUDA_LAUNCH_CHECK();
    });
  } else {
    const auto* total = static_cast<const float*>(total_norm.data_ptr());
    for_each_batch(flat, [&](const ChunkBatch& batch, int count) {
      clip_scale_kernel<float><<<count, kThreads, 0, stream>>>(batch, total, max_norm);
      TRAINOPS_CUDA_LAUNCH_CHECK();
    });
  }
  flat.write_back();
}

std::tuple<Tensor, Tensor> multi_tensor_norm_cuda(TensorListArg tensors, double norm_type,
                                                  bool per_tensor) {
  constexpr const char* kOp = "trainops.multi_tensor_norm";
  const auto facts = check_cuda_list(tensors, kOp);
  check_norm_type(norm_type, kOp);
  const Tensor first = tensor_at(tensors, 0);
  const DeviceScope scope(first);
  const FlatList flat(tensors, facts);
  return norm_pass(first, facts, flat, make_norm_spec(norm_type), per_tensor, current_stream(first));
}

void multi_tensor_clip_scale_cuda(TensorListArg tensors, const Tensor& total_norm,
                                  double max_norm) {
  constexpr const char* kOp = "trainops.multi_tensor_clip_scale_";
  const auto facts = check_cuda_list(tensors, kOp);
  check_max_norm(max_norm, kOp);
  check_total_norm(total_norm, tensors, kOp);
  check_writable(tensors, facts, kOp);
  const Tensor first = tensor_at(tensors, 0);
  const DeviceScope scope(first);
  FlatList flat(tensors, facts);
  scale_pass(tensors, flat, total_norm, max_norm, current_stream(first));
}

// clip_grad_norm_ in one call: one list preparation for both passes; the
// coefficient stays on the device (no host sync).
Tensor multi_tensor_clip_grad_norm_cuda(TensorListArg tensors, double max_norm, double norm_type) {
  constexpr const char* kOp = "trainops.multi_tensor_clip_grad_norm_";
  const auto facts = check_cuda_list(tensors, kOp);
  check_max_norm(max_norm, kOp);
  check_norm_type(norm_type, kOp);
  check_writable(tensors, facts, kOp);
  const Tensor first = tensor_at(tensors, 0);
  const DeviceScope scope(first);
  const cudaStream_t stream = current_stream(first);
  FlatList flat(tensors, facts);
  Tensor total =
      std::get<0>(norm_pass(first, facts, flat, make_norm_spec(norm_type), false, stream));
  scale_pass(tensors, flat, total, max_norm, stream);
  return total;
}

void multi_tensor_clamp_cuda(TensorListArg tensors, double clip_value) {
  constexpr const char* kOp = "trainops.multi_tensor_clamp_";
  const auto facts = check_cuda_list(tensors, kOp);
  check_clip_value(clip_value, kOp);
  check_writable(tensors, facts, kOp);
  const Tensor first = tensor_at(tensors, 0);
  const DeviceScope scope(first);
  const cudaStream_t stream = current_stream(first);

  ClampBounds bounds;
  for (DType d : {DType::kHalf, DType::kBFloat16, DType::kFloat, DType::kDouble}) {
    bounds.lo[static_cast<int>(d)] = clamp_bound_in(d, -clip_value);
    bounds.hi[static_cast<int>(d)] = clamp_bound_in(d, clip_value);
  }
  FlatList flat(tensors, facts);
  flat.make_writable(tensors);
  for_each_batch(flat, [&](const ChunkBatch& batch, int count) {
    clamp_kernel<<<count, kThreads, 0, stream>>>(batch, bounds);
    TRAINOPS_CUDA_LAUNCH_CHECK();
  });
  flat.write_back();
}

}  // namespace

TRAINOPS_LIBRARY_IMPL(CUDA, m) {
  m.impl("multi_tensor_norm", TRAINOPS_KERNEL(multi_tensor_norm_cuda));
  m.impl("multi_tensor_clip_scale_", TRAINOPS_KERNEL(multi_tensor_clip_scale_cuda));
  m.impl("multi_tensor_clip_grad_norm_", TRAINOPS_KERNEL(multi_tensor_clip_grad_norm_cuda));
  m.impl("multi_tensor_clamp_", TRAINOPS_KERNEL(multi_tensor_clamp_cuda));
}

}  // namespace cuda
}  // namespace trainops
