// Division of 63-bit numbers by a divisor fixed on the host, as one 64x64-bit
// high multiply and a shift: the CUDA init kernel divides work-item indices by
// a tensor's blocks per run and by its shard's outer sizes for every Philox
// block of a column shard, and a 64-bit division by a run-time value is a
// ~60-instruction routine on a GPU. Torch-free and __host__ __device__.
//
// Granlund & Montgomery, "Division by invariant integers using
// multiplication" (PLDI'94), theorem 4.2 with N = 63: for d >= 2, l =
// ceil(log2 d) and m = floor(2^(63+l) / d) + 1, we have 2^(63+l) < m d <=
// 2^(63+l) + 2^l, so floor(n m / 2^(63+l)) = floor(n / d) for every
// 0 <= n < 2^63; and m < 2^64. d = 1 is the identity.
#pragma once

#include <cstdint>

#include "trainops/common.h"

namespace trainops {

__extension__ typedef unsigned __int128 uint128_host;  // GCC / Clang; __extension__: fine under -pedantic

struct DivU63 {
  uint64_t magic;  // m (unused for d = 1)
  uint32_t shift;  // l - 1
  uint32_t identity;  // d == 1
};

// Host only. d >= 1 (no caller passes 0, which would give the identity).
inline DivU63 make_div_u63(uint64_t d) {
  if (d <= 1) return DivU63{0, 0, 1};
  const uint32_t l = 64u - static_cast<uint32_t>(__builtin_clzll(d - 1));  // ceil(log2 d), 1..64
  const uint128_host m = ((static_cast<uint128_host>(1) << (63 + l)) / d) + 1;
  return DivU63{static_cast<uint64_t>(m), l - 1, 0};
}

TRAINOPS_HD uint64_t mulhi_u64(uint64_t a, uint64_t b) {
#if defined(__CUDA_ARCH__)
  return __umul64hi(a, b);
#else
  return static_cast<uint64_t>((static_cast<uint128_host>(a) * b) >> 64);
#endif
}

// floor(n / d) for 0 <= n < 2^63.
TRAINOPS_HD int64_t div_u63(int64_t n, const DivU63& f) {
  const uint64_t u = static_cast<uint64_t>(n);
  return static_cast<int64_t>(f.identity ? u : mulhi_u64(u, f.magic) >> f.shift);
}

}  // namespace trainops
