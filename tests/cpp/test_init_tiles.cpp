// The per-ISA CPU init kernels (csrc/cpu/init_kernels.inc) against the
// scalar code they vectorise: every value of compute_tile, for every kind,
// fp32 and fp64, every tile length from 1 to kInitTileBlocks blocks, counters
// near 2^32 and 2^64, the tile path and the streaming path (aligned and not),
// must be bitwise philox_block + dist::sample_block_k, the streaming path
// must write nothing past its values and the tile path nothing past the
// tile; the fp32 normal kernels' words must be whole, padded groups. Then
// 2^21 fp32 normals per ISA, where the AVX-512 kernel's short tables and its
// full-table path both run (p < 2^-16 in about 60 lanes, p = 0.5 in one).
// ISAs the CPU lacks are skipped.
// A plain program: exit status 0 when all pass.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "check.h"
// The kernels, compiled per ISA exactly as the extension compiles them (the
// translation unit is torch-free; CMake links cpu_isa.cpp beside it).
#include "init_isa.cpp"

namespace {

using trainops::InitKind;
using trainops::Philox4x32;
namespace dist = trainops::dist;

template <typename T>
using TileFn = bool (*)(const dist::DistParams<T>&, uint64_t, uint64_t, uint64_t, int64_t, T*, T*);

constexpr int64_t kTileBlocks = trainops::cpu::baseline::kInitTileBlocks;

template <typename T>
dist::DistParams<T> params_of(InitKind kind) {
  switch (kind) {
    case InitKind::kUniform:
      return dist::make_params<T>(kind, -0.5, 2.0, 0, 0);
    case InitKind::kNormal:
      return dist::make_params<T>(kind, 0.25, 3.0, 0, 0);
    case InitKind::kTruncNormal:
      return dist::make_params<T>(kind, 0.1, 0.02, -0.03, 0.05);
    default:
      return dist::make_params<T>(kind, 1.5, 0, 0, 0);
  }
}

// Values of blocks block0 .. block0 + nb - 1 of one tile, as the scalar code gives them.
template <typename T>
void reference(const dist::DistParams<T>& d, uint64_t seed, uint64_t key, uint64_t block0, int64_t nb,
               T* out) {
  constexpr int kPer = dist::RealTraits<T>::kPerBlock;
  for (int64_t b = 0; b < nb; ++b) {
    const Philox4x32 w = trainops::philox_block(seed, key, block0 + static_cast<uint64_t>(b));
    dist::sample_block(d, w, out + b * kPer, dist::kNormalIcdfHost);
  }
}

// A canary around the values: NaN bit patterns that no kernel writes.
template <typename T>
T canary() {
  T x;
  std::memset(&x, 0xff, sizeof(T));
  return x;
}

template <typename T>
bool same_bits(T a, T b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

// Every tile length, several counters, the tile path and the streaming path.
template <typename T>
int64_t check_tiles(const char* isa, TileFn<T> tile_fn, InitKind kind) {
  constexpr int kPer = dist::RealTraits<T>::kPerBlock;
  constexpr int64_t kMax = kTileBlocks * kPer;
  const dist::DistParams<T> d = params_of<T>(kind);
  alignas(64) static T tile[kMax + 64];
  alignas(64) static T buf[kMax + 128];
  static T ref[kMax];
  int64_t tiles = 0;
  const uint64_t seeds[] = {0, 0x9e3779b97f4a7c15ull};
  // Counters that cross 2^32, and 2^64 (where they wrap).
  const uint64_t block0s[] = {0, 5, 0xffffffffull - 37, 0xffffffffffffffffull - 100};
  for (uint64_t seed : seeds) {
    for (uint64_t block0 : block0s) {
      for (int64_t nb = 1; nb <= kTileBlocks; ++nb) {
        reference(d, seed, 3, block0, nb, ref);
        const int64_t n = nb * kPer;
        // offset 0: aligned (may stream); 1: misaligned by one element (tile path only).
        for (int offset = -1; offset <= 1; ++offset) {
          for (int64_t i = 0; i < kMax + 128; ++i) buf[i] = canary<T>();
          for (int64_t i = kMax; i < kMax + 64; ++i) tile[i] = canary<T>();
          T* direct = offset < 0 ? nullptr : buf + 64 + offset;
          const bool wrote = tile_fn(d, seed, 3, block0, nb, tile, direct);
          CHECK(!wrote || direct != nullptr);
          const T* got = wrote ? direct : tile;
          int bad = 0;
          for (int64_t i = 0; i < n; ++i) bad += !same_bits(got[i], ref[i]);
          for (int64_t i = kMax; i < kMax + 64; ++i) bad += !same_bits(tile[i], canary<T>());  // the tile's room
          if (wrote) {
            for (int64_t i = 0; i < 64 + offset; ++i) bad += !same_bits(buf[i], canary<T>());
            for (int64_t i = 64 + offset + n; i < kMax + 128; ++i) bad += !same_bits(buf[i], canary<T>());
          }
          if (bad != 0) {
            std::fprintf(stderr, "%s kind %d fp%d: seed %llx block0 %llx nb %lld offset %d: %d wrong\n", isa,
                         static_cast<int>(kind), static_cast<int>(8 * sizeof(T)),
                         static_cast<unsigned long long>(seed), static_cast<unsigned long long>(block0),
                         static_cast<long long>(nb), offset, bad);
          }
          CHECK(bad == 0);
          ++tiles;
        }
      }
    }
  }
  return tiles;
}

// 2^21 fp32 normals in whole streamed tiles (seed 20261130, key 7: the stream
// of tests/test_init.py's ICDF_SLOT_INDEX, where element 2035035 has p = 0.5).
int64_t check_long_normal_run(const char* isa, TileFn<float> tile_fn) {
  const dist::DistParams<float> d = params_of<float>(InitKind::kNormal);
  constexpr int64_t kBlocks = (int64_t{1} << 21) / 4;
  alignas(64) static float tile[kTileBlocks * 4];
  alignas(64) static float out[kTileBlocks * 4];
  static float ref[kTileBlocks * 4];
  int64_t deep = 0, half = 0, bad = 0;
  for (int64_t b0 = 0; b0 < kBlocks; b0 += kTileBlocks) {
    const int64_t nb = kBlocks - b0 < kTileBlocks ? kBlocks - b0 : kTileBlocks;
    const bool wrote = tile_fn(d, 20261130, 7, static_cast<uint64_t>(b0), nb, tile, out);
    const float* got = wrote ? out : tile;
    reference(d, 20261130, 7, static_cast<uint64_t>(b0), nb, ref);
    for (int64_t i = 0; i < 4 * nb; ++i) bad += !same_bits(got[i], ref[i]);
    for (int64_t b = 0; b < nb; ++b) {
      const Philox4x32 w = trainops::philox_block(20261130, 7, static_cast<uint64_t>(b0 + b));
      for (uint32_t v : w.v) {
        const uint32_t m = v & 0x7fffffffu;
        deep += m < (1u << 16);                   // p < 2^-16: the full table
        half += m >= 0x7fffffc0u;                 // rounds to p = 0.5
      }
    }
  }
  if (bad != 0) std::fprintf(stderr, "%s: %lld of 2^21 normals wrong\n", isa, static_cast<long long>(bad));
  CHECK(bad == 0);
  CHECK(deep > 20 && half > 0);
  return kBlocks * 4;
}

#if TRAINOPS_MULTI_ISA
// The fp32 normal kernels' words: stream order (word j of block block0 + b
// at 4 b + j), whole groups of what the kernel reads, and past philox_tile's
// last group a padding word of the AVX-512 kernel's short tables, never
// whatever the stack held.
template <typename StreamWords>
void check_stream_words(const char* isa, StreamWords stream_words, int64_t group_words, int64_t read_words) {
  alignas(64) static uint32_t words[4 * kTileBlocks];
  int bad = 0;
  for (uint64_t block0 : {uint64_t{0}, uint64_t{0xffffffffull - 9}, uint64_t{0xffffffffffffffffull - 50}}) {
    for (int64_t nb = 1; nb <= kTileBlocks; ++nb) {
      std::memset(words, 0, sizeof(words));  // 0 would send a group to the full table
      stream_words(77, 5, block0, nb, words);
      const int64_t filled = (4 * nb + group_words - 1) / group_words * group_words;
      const int64_t needed = (4 * nb + read_words - 1) / read_words * read_words;
      for (int64_t i = 0; i < filled; ++i) {
        const Philox4x32 w = trainops::philox_block(77, 5, block0 + static_cast<uint64_t>(i / 4));
        bad += words[i] != w.v[i % 4];
      }
      for (int64_t i = filled; i < needed; ++i) bad += words[i] != 0x7fffffffu;
    }
  }
  if (bad != 0) std::fprintf(stderr, "%s stream_words: %d wrong words\n", isa, bad);
  CHECK(bad == 0);
}
#endif

// One kind, fp32 and fp64.
template <template <InitKind, typename> class Kernels, InitKind K>
int64_t check_kind(const char* isa) {
  return check_tiles<float>(isa, Kernels<K, float>::fn, K) + check_tiles<double>(isa, Kernels<K, double>::fn, K);
}

template <template <InitKind, typename> class Kernels>
void check_isa(const char* isa) {
  const int64_t tiles = check_kind<Kernels, InitKind::kUniform>(isa) + check_kind<Kernels, InitKind::kNormal>(isa) +
                        check_kind<Kernels, InitKind::kTruncNormal>(isa) + check_kind<Kernels, InitKind::kConstant>(isa);
  const int64_t normals = check_long_normal_run(isa, Kernels<InitKind::kNormal, float>::fn);
  std::printf("%s: %lld tiles and %lld streamed normals checked\n", isa, static_cast<long long>(tiles),
              static_cast<long long>(normals));
}

template <InitKind K, typename T>
struct Baseline {
  static constexpr TileFn<T> fn = &trainops::cpu::baseline::compute_tile<K, T>;
};
#if TRAINOPS_MULTI_ISA
template <InitKind K, typename T>
struct Avx2 {
  static constexpr TileFn<T> fn = &trainops::cpu::avx2::compute_tile<K, T>;
};
template <InitKind K, typename T>
struct Avx512 {
  static constexpr TileFn<T> fn = &trainops::cpu::avx512::compute_tile<K, T>;
};
#endif

}  // namespace

int main() {
  check_isa<Baseline>("baseline");
#if TRAINOPS_MULTI_ISA
  using trainops::cpu::CpuIsa;
  if (trainops::cpu::cpu_isa_usable(CpuIsa::kAvx2)) {
    check_isa<Avx2>("avx2");
    namespace k = trainops::cpu::avx2;
    check_stream_words("avx2", &k::stream_words<>, 4 * k::kBlockLanes * k::kPhiloxGroups, 8);
  } else {
    std::printf("avx2: not supported by this CPU, skipped\n");
  }
  if (trainops::cpu::cpu_isa_usable(CpuIsa::kAvx512)) {
    check_isa<Avx512>("avx512");
    namespace k = trainops::cpu::avx512;
    check_stream_words("avx512", &k::stream_words<>, 4 * k::kBlockLanes * k::kPhiloxGroups, 16 * k::kNormalVecs);
  } else {
    std::printf("avx512: not supported by this CPU, skipped\n");
  }
#endif
  if (trainops_test::failures() != 0) {
    std::printf("%d check(s) failed\n", trainops_test::failures());
    return 1;
  }
  std::printf("all passed\n");
  return 0;
}
