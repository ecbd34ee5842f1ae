// CUDA kernel of the init_tensors_ op: one launch for the whole list.
//
// The work items of every tensor (Philox blocks, see trainops/init_plan.h) are
// cut by the same chunk plan as on the CPU; CUDA block c handles chunk c, one
// item per thread per step. Each item computes one Philox block with the very
// code of trainops/philox.h and trainops/distributions.h that the CPU runs and
// writes its (up to 4) elements -- one vector store when the block is whole
// and aligned -- so the values are bitwise those of the CPU kernel. The
// per-tensor plans and the chunk table (O(tensors + chunks), never O(model
// size)) reach the device as kernel arguments (upload_kernel below): no host
// sync, and nothing in host memory that a captured CUDA graph would re-read.
#include <cstdint>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "../init_common.h"
#include "../torch_api.h"
#include "cuda_api.h"
#include "trainops/chunk_plan.h"
#include "trainops/distributions.h"
#include "trainops/init_plan.h"
#include "trainops/philox.h"

namespace trainops {
namespace cuda {
namespace {

constexpr int kInitThreads = 256;

// Vector stores to global memory, as PTX: a plain C++ store of a float4 (or
// double2, uint2) is split back into scalar stores by NVVM in this kernel
// (seen in the PTX, alignment known or not). Weak stores with the default
// cache policy (SASS STG.E.128 / STG.E.64, which test_cuda_build checks); the
// CUDA headers' __stwb emits .wb stores that SASS marks STRONG.SM instead.
__device__ __forceinline__ void store_global(float* p, float4 v) {
  asm volatile("st.global.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"(p), "f"(v.x), "f"(v.y), "f"(v.z),
               "f"(v.w)
               : "memory");
}
__device__ __forceinline__ void store_global(double* p, double2 v) {
  asm volatile("st.global.v2.f64 [%0], {%1, %2};" ::"l"(p), "d"(v.x), "d"(v.y) : "memory");
}
__device__ __forceinline__ void store_global(void* p, uint2 v) {
  asm volatile("st.global.v2.u32 [%0], {%1, %2};" ::"l"(p), "r"(v.x), "r"(v.y) : "memory");
}

// The device copy of dist::kNormalIcdfHost (same initialiser, same values).
__device__ const dist::NormalIcdfTable kNormalIcdfDevice{TRAINOPS_NORMAL_ICDF_COEFFS};

// A whole Philox block's values in one store where the output is aligned to
// it: 16 bytes for fp32 (4 values) and fp64 (2), 8 for fp16 / bf16 (4), so a
// warp writes 512 (256) contiguous bytes per instruction instead of four
// strided scalar stores. Returns false (nothing written) when unaligned.
template <typename Out, typename T, int kPer>
__device__ __forceinline__ bool store_block_vector(Out* out, const T (&vals)[kPer]) {
  if (reinterpret_cast<uintptr_t>(out) % (sizeof(Out) * kPer) != 0) return false;
  if constexpr (std::is_same<Out, float>::value) {
    static_assert(kPer == 4, "fp32: four values per block");
    store_global(out, make_float4(vals[0], vals[1], vals[2], vals[3]));
  } else if constexpr (std::is_same<Out, double>::value) {
    static_assert(kPer == 2, "fp64: two values per block");
    store_global(out, make_double2(vals[0], vals[1]));
  } else {
    static_assert(kPer == 4 && sizeof(Out) == 2, "fp16 / bf16: four 16-bit values per block");
    Out o[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) store_from(&o[j], vals[j]);
    // Little-endian: the value at the lower address in the low half.
    store_global(static_cast<void*>(out), make_uint2(o[0].x | (static_cast<uint32_t>(o[1].x) << 16),
                                                     o[2].x | (static_cast<uint32_t>(o[3].x) << 16)));
  }
  return true;
}

template <InitKind K, typename T, typename Out>
__device__ __forceinline__ void init_item_typed(const InitTensorPlan& p,
                                                const dist::DistParams<T>& d, uint64_t seed,
                                                int64_t i, const dist::NormalIcdfTable& tab) {
  constexpr int kPer = dist::RealTraits<T>::kPerBlock;
  const InitItem it = init_item(p, i);
  if (it.g_end <= it.g_begin) return;
  T vals[kPer];
  dist::sample_block_k<K>(d, philox_block(seed, p.key, it.block), vals, tab);
  Out* out = static_cast<Out*>(p.data) + it.local_begin;
  const int64_t first = it.g_begin - static_cast<int64_t>(it.block) * kPer;
  // The common case: every element of the block is in the run (and, unless
  // the run starts at a global index that is not a multiple of kPer, aligned).
  if (first == 0 && it.g_end - it.g_begin == kPer && store_block_vector(out, vals)) return;
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    if (j >= first && j < first + (it.g_end - it.g_begin)) store_from(out + (j - first), vals[j]);
  }
}

template <InitKind K>
__device__ __forceinline__ void init_item_kind(const InitTensorPlan& p, uint64_t seed,
                                               int64_t i, const dist::NormalIcdfTable& tab) {
  switch (p.dtype) {
    case DType::kHalf:
      init_item_typed<K, float, half_bits>(p, p.pf, seed, i, tab);
      break;
    case DType::kBFloat16:
      init_item_typed<K, float, bf16_bits>(p, p.pf, seed, i, tab);
      break;
    case DType::kFloat:
      init_item_typed<K, float, float>(p, p.pf, seed, i, tab);
      break;
    default:
      init_item_typed<K, double, double>(p, p.pd, seed, i, tab);
      break;
  }
}

// The plans and the chunk table go to the device as the arguments of small
// copy kernels, up to kUploadWordsLarge words each. Not a pinned host buffer and an
// asynchronous copy: under CUDA-graph capture that copy becomes a graph node
// that re-reads the host buffer at every replay, which is then safe only if
// torch's pinned-memory cache never hands that buffer out again (recent torch
// keeps blocks used during capture; older releases did not). Kernel arguments
// are copied into the graph when it is captured, and eagerly they cost a
// launch per 32 KB: a list of 1,000 tensors is ~14 launches of a few us.
// Two sizes of argument block: a call on one or a few tensors (model.apply of
// a drop-in function, one parameter at a time) sends ~0.5 KB, and a launch
// carries its whole block whatever the count.
template <int kWords>
struct UploadBatch {
  uint32_t words[kWords];
};
constexpr int kUploadWordsSmall = 256;   // 1,024 B
constexpr int kUploadWordsLarge = 8000;  // 32,000 B
static_assert(sizeof(UploadBatch<kUploadWordsLarge>) <= 32764,
              "kernel parameters are limited to 32,764 bytes");

template <int kWords>
__global__ void upload_kernel(const __grid_constant__ UploadBatch<kWords> batch,
                              uint32_t* __restrict dst, int count) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < count; i += gridDim.x * blockDim.x) {
    dst[i] = batch.words[i];
  }
}

template <int kWords>
void upload_words(const uint32_t* words, size_t n, uint32_t* dst, cudaStream_t stream) {
  auto batch = std::make_unique<UploadBatch<kWords>>();
  for (size_t w = 0; w < n; w += kWords) {
    const int count = static_cast<int>(n - w < kWords ? n - w : kWords);
    std::memcpy(batch->words, words + w, static_cast<size_t>(count) * sizeof(uint32_t));
    upload_kernel<kWords><<<(count + 255) / 256, 256, 0, stream>>>(*batch, dst + w, count);
    TRAINOPS_CUDA_LAUNCH_CHECK();
  }
}

// `size` bytes (a multiple of 4) copied into the device buffer `dst` on `stream`.
void upload(const void* bytes, size_t size, uint32_t* dst, cudaStream_t stream) {
  const size_t n = size / sizeof(uint32_t);
  const auto* words = static_cast<const uint32_t*>(bytes);
  if (n <= kUploadWordsSmall) {
    upload_words<kUploadWordsSmall>(words, n, dst, stream);
  } else {
    upload_words<kUploadWordsLarge>(words, n, dst, stream);
  }
}

// grid: one CUDA block per chunk; block: kInitThreads threads.
// seed_on_device: where to read the seed instead of `seed`, or null.
__global__ void init_tensors_kernel(const InitTensorPlan* __restrict plans,
                                    const Chunk* __restrict chunks, uint64_t seed,
                                    const int64_t* __restrict seed_on_device) {
  if (seed_on_device != nullptr) seed = static_cast<uint64_t>(*seed_on_device);
  const Chunk c = chunks[blockIdx.x];
  const InitTensorPlan& p = plans[c.tensor];
  const InitKind kind = p.kind;
  // The fp32 normal's coefficient table, [step][segment], staged in shared
  // memory: a warp's lanes read one step for up to 32 segments, each in its
  // own bank (lanes of one segment share a word: a broadcast), where constant
  // memory would serialise the distinct addresses.
  __shared__ dist::NormalIcdfTable tab;
  if (kind == InitKind::kNormal && p.dtype != DType::kDouble) {
    constexpr int kWords = dist::kNormalIcdfTerms * dist::kNormalIcdfSegments;
    for (int k = threadIdx.x; k < kWords; k += blockDim.x) {
      (&tab.c[0][0])[k] = (&kNormalIcdfDevice.c[0][0])[k];
    }
    __syncthreads();
  }
  for (int64_t i = c.begin + threadIdx.x; i < c.begin + c.length; i += blockDim.x) {
    switch (kind) {
      case InitKind::kUniform:
        init_item_kind<InitKind::kUniform>(p, seed, i, tab);
        break;
      case InitKind::kNormal:
        init_item_kind<InitKind::kNormal>(p, seed, i, tab);
        break;
      case InitKind::kTruncNormal:
        init_item_kind<InitKind::kTruncNormal>(p, seed, i, tab);
        break;
      default:
        init_item_kind<InitKind::kConstant>(p, seed, i, tab);
        break;
    }
  }
}

void init_tensors_cuda_impl(TensorListArg tensors, IntListArg kinds, FloatListArg params,
                            SeedArg seed, IntListArg keys, IntListArg global_shapes,
                            IntListArg global_offsets) {
  constexpr const char* kOp = "trainops.init_tensors_";
  InitCall call =
      prepare_init(tensors, kinds, params, seed.value, keys, global_shapes, global_offsets, kOp);
  const ChunkPlan plan = make_chunk_plan(call.items(), kInitItemsPerChunk);
  if (plan.chunks.empty()) {
    call.write_back();
    return;
  }
  const Tensor first = tensor_at(tensors, 0);
  const DeviceScope scope(first);
  const size_t plan_bytes = call.plans.size() * sizeof(InitTensorPlan);
  const size_t chunk_bytes = plan.chunks.size() * sizeof(Chunk);
  static_assert(sizeof(InitTensorPlan) % 8 == 0 && sizeof(Chunk) % 4 == 0,
                "the chunk table starts 8-byte aligned and both are whole words");
  std::vector<uint32_t> tables((plan_bytes + chunk_bytes) / sizeof(uint32_t));
  std::memcpy(tables.data(), call.plans.data(), plan_bytes);
  std::memcpy(reinterpret_cast<char*>(tables.data()) + plan_bytes, plan.chunks.data(), chunk_bytes);
  // From torch's caching allocator on this stream, so it lives until the
  // kernel below has run (and, under capture, in the graph's pool).
  Tensor dev = empty_like_device(first, {static_cast<int64_t>(plan_bytes + chunk_bytes)}, ScalarType::Byte);
  const cudaStream_t stream = current_stream(first);
  upload(tables.data(), plan_bytes + chunk_bytes, static_cast<uint32_t*>(dev.data_ptr()), stream);
  const auto* dplans = reinterpret_cast<const InitTensorPlan*>(dev.data_ptr());
  const auto* dchunks =
      reinterpret_cast<const Chunk*>(static_cast<const char*>(dev.data_ptr()) + plan_bytes);
  init_tensors_kernel<<<static_cast<unsigned>(plan.chunks.size()), kInitThreads, 0, stream>>>(
      dplans, dchunks, call.seed, seed.on_device);
  TRAINOPS_CUDA_LAUNCH_CHECK();
  call.write_back();
}

void init_tensors_cuda(TensorListArg tensors, IntListArg kinds, FloatListArg params, int64_t seed,
                       IntListArg keys, IntListArg global_shapes, IntListArg global_offsets) {
  init_tensors_cuda_impl(tensors, kinds, params, SeedArg{seed, nullptr}, keys, global_shapes,
                         global_offsets);
}

void init_tensors_seeded_cuda(TensorListArg tensors, IntListArg kinds, FloatListArg params,
                              const Tensor& seed, IntListArg keys, IntListArg global_shapes,
                              IntListArg global_offsets) {
  const SeedArg s = read_seed(seed, tensors, /*device_ok=*/true, "trainops.init_tensors_");
  init_tensors_cuda_impl(tensors, kinds, params, s, keys, global_shapes, global_offsets);
}

}  // namespace

TRAINOPS_LIBRARY_IMPL(CUDA, m) {
  m.impl("init_tensors_", TRAINOPS_KERNEL(init_tensors_cuda));
  m.impl("init_tensors_.seeded", TRAINOPS_KERNEL(init_tensors_seeded_cuda));
}

}  // namespace cuda
}  // namespace trainops
