// Philox4x32-10, exactly as in Random123 (Salmon et al., "Parallel random
// numbers: as easy as 1, 2, 3", SC'11): a counter-based generator, so the
// random words of any element are a pure function of (counter, key) and every
// thread, CUDA block or shard computes them independently.
//
// Torch-free and __host__ __device__: the CPU kernels, the CUDA kernels and the
// C++ unit tests (tests/cpp/test_philox.cpp, Random123's kat_vectors) all run
// this very code.
#pragma once

#include <cstdint>

#include "trainops/common.h"

// Like TRAINOPS_HD, but always inlined on the host too: the CPU kernels'
// loops vectorise only when the whole transform is inlined into them, and
// GCC's size heuristics stop inlining the larger transforms otherwise.
#if defined(__CUDACC__) || defined(__HIPCC__)
#define TRAINOPS_HD_INLINE __host__ __device__ __forceinline__
#elif defined(__GNUC__)
#define TRAINOPS_HD_INLINE inline __attribute__((always_inline))
#else
#define TRAINOPS_HD_INLINE inline
#endif

namespace trainops {

struct Philox4x32 {
  uint32_t v[4];
};
struct PhiloxKey {
  uint32_t v[2];
};

// Multipliers and Weyl key increments of Philox4x32 (Random123 philox.h).
constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;  // golden ratio
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;  // sqrt(3) - 1
constexpr int kPhiloxRounds = 10;

TRAINOPS_HD_INLINE uint32_t philox_mulhi(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __umulhi(a, b);
#else
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
#endif
}

TRAINOPS_HD_INLINE Philox4x32 philox_round(Philox4x32 c, PhiloxKey k) {
#if defined(__CUDA_ARCH__)
  const uint32_t hi0 = philox_mulhi(kPhiloxM0, c.v[0]);
  const uint32_t lo0 = kPhiloxM0 * c.v[0];
  const uint32_t hi1 = philox_mulhi(kPhiloxM1, c.v[2]);
  const uint32_t lo1 = kPhiloxM1 * c.v[2];
#else
  // One widening multiply per product gives both halves (vectorised: one
  // vpmuludq instead of vpmuludq + the slow vpmulld for the low half).
  const uint64_t p0 = static_cast<uint64_t>(kPhiloxM0) * c.v[0];
  const uint64_t p1 = static_cast<uint64_t>(kPhiloxM1) * c.v[2];
  const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32);
  const uint32_t lo0 = static_cast<uint32_t>(p0);
  const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32);
  const uint32_t lo1 = static_cast<uint32_t>(p1);
#endif
  return Philox4x32{{hi1 ^ c.v[1] ^ k.v[0], lo1, hi0 ^ c.v[3] ^ k.v[1], lo0}};
}

// Ten rounds, the key bumped between rounds (nine bumps), as Random123's
// philox4x32_R(10, ctr, key).
TRAINOPS_HD_INLINE Philox4x32 philox4x32_10(Philox4x32 ctr, PhiloxKey key) {
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int r = 0; r < kPhiloxRounds; ++r) {
    if (r > 0) {
      key.v[0] += kPhiloxW0;
      key.v[1] += kPhiloxW1;
    }
    ctr = philox_round(ctr, key);
  }
  return ctr;
}

// The stream layout used by trainops' initialisers: the Philox key is the
// 64-bit seed, the counter is (block index lo, hi, tensor key lo, hi), so each
// (seed, tensor key) pair owns 2^64 blocks of four 32-bit words.
TRAINOPS_HD_INLINE Philox4x32 philox_block(uint64_t seed, uint64_t tensor_key, uint64_t block) {
  const Philox4x32 ctr{{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
                        static_cast<uint32_t>(tensor_key),
                        static_cast<uint32_t>(tensor_key >> 32)}};
  const PhiloxKey key{{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)}};
  return philox4x32_10(ctr, key);
}

}  // namespace trainops
