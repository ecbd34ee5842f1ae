// The vector fp16 / bf16 conversions of csrc/cpu/simd.inc, on every ISA this
// CPU has, against the scalar ones of trainops/common.h: every fp16 and bf16
// value loaded, every fp32 value stored, with MXCSR's DAZ and FTZ off and on
// (torch.set_flush_denormal(True) sets both). AVX2 and AVX-512 convert fp16
// with F16C instructions and widen / narrow 16-bit lanes with vpmovzxwd /
// vpmovdw, so this is what shows that they round exactly as the scalar code.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "check.h"
#include "clip_isa.cpp"  // NOLINT: the kernels' translation unit, torch-free

// Each ISA's conversions over arrays of n values (n a multiple of its part's
// lanes), compiled in that ISA's target region: a vector argument cannot
// cross from code compiled for another ISA.
#define TRAINOPS_CONVERT_BATCH(ns)                                                        \
  namespace ns##_batch {                                                                  \
  namespace k = trainops::cpu::ns;                                                        \
  constexpr int kPer = static_cast<int>(sizeof(k::f32v) / sizeof(float));                 \
  void load(const uint16_t* in, float* half_out, float* bf16_out, int64_t n) {            \
    for (int64_t i = 0; i < n; i += kPer) {                                               \
      const k::f32v h = k::load_half_part(in + i);                                        \
      const k::f32v b = k::bf16_to_float_part(k::load_u16_part(in + i));                  \
      std::memcpy(half_out + i, &h, sizeof(h));                                           \
      std::memcpy(bf16_out + i, &b, sizeof(b));                                           \
    }                                                                                     \
  }                                                                                       \
  void store(const float* in, uint16_t* half_out, uint16_t* bf16_out, int64_t n) {        \
    for (int64_t i = 0; i < n; i += kPer) {                                               \
      k::f32v v;                                                                          \
      std::memcpy(&v, in + i, sizeof(v));                                                 \
      k::store_half_part(half_out + i, v);                                                \
      k::store_u16_part(bf16_out + i, k::float_to_bf16_part(v));                          \
    }                                                                                     \
  }                                                                                       \
  }

namespace trainops_test {
TRAINOPS_CONVERT_BATCH(baseline)
#if TRAINOPS_MULTI_ISA
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
TRAINOPS_CONVERT_BATCH(avx2)
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c,prefer-vector-width=512")
TRAINOPS_CONVERT_BATCH(avx512)
#pragma GCC pop_options
#endif
}  // namespace trainops_test

namespace {

using namespace trainops;

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

struct Isa {
  const char* name;
  void (*load)(const uint16_t*, float*, float*, int64_t);
  void (*store)(const float*, uint16_t*, uint16_t*, int64_t);
};

std::vector<Isa> isas_of_this_cpu() {
  std::vector<Isa> isas = {{"baseline", &trainops_test::baseline_batch::load, &trainops_test::baseline_batch::store}};
#if TRAINOPS_MULTI_ISA
  using trainops::cpu::CpuIsa;
  if (trainops::cpu::cpu_isa_usable(CpuIsa::kAvx2)) {
    isas.push_back({"avx2", &trainops_test::avx2_batch::load, &trainops_test::avx2_batch::store});
  } else {
    std::printf("avx2: not supported by this CPU, skipped\n");
  }
  if (trainops::cpu::cpu_isa_usable(CpuIsa::kAvx512)) {
    isas.push_back({"avx512", &trainops_test::avx512_batch::load, &trainops_test::avx512_batch::store});
  } else {
    std::printf("avx512: not supported by this CPU, skipped\n");
  }
#endif
  return isas;
}

constexpr int64_t kBatch = 1 << 16;

// Every fp16 / bf16 bit pattern loaded.
void check_loads(const Isa& isa) {
  std::vector<uint16_t> in(kBatch);
  std::vector<float> half_out(kBatch), bf16_out(kBatch);
  for (int64_t h = 0; h < kBatch; ++h) in[h] = static_cast<uint16_t>(h);
  isa.load(in.data(), half_out.data(), bf16_out.data(), kBatch);
  int bad_half = 0, bad_bf16 = 0;
  for (int64_t i = 0; i < kBatch; ++i) {
    const uint16_t h = in[i];
    const uint32_t want = bits_of(half_to_float(half_bits{h}));
    const uint32_t got = bits_of(half_out[i]);
    // F16C reads a signalling NaN as the quiet one (bit 22 set); nothing else may differ.
    const bool snan = (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0 && (h & 0x200u) == 0;
    bad_half += !(got == want || (snan && got == (want | 0x00400000u)));
    bad_bf16 += bits_of(bf16_out[i]) != bits_of(bf16_to_float(bf16_bits{h}));
  }
  if (bad_half || bad_bf16) std::printf("%s: loads: %d fp16 and %d bf16 values differ\n", isa.name, bad_half, bad_bf16);
  CHECK(bad_half == 0);
  CHECK(bad_bf16 == 0);
}

// fp32 bit patterns [first, last) stored as fp16 and bf16, a batch at a time.
void check_stores(const std::vector<Isa>& isas, uint64_t first, uint64_t last) {
  std::vector<float> in(kBatch);
  std::vector<uint16_t> want_half(kBatch), want_bf16(kBatch), half_out(kBatch), bf16_out(kBatch);
  std::vector<uint64_t> bad(isas.size(), 0);
  for (uint64_t u0 = first; u0 < last; u0 += kBatch) {
    for (int64_t i = 0; i < kBatch; ++i) {
      in[i] = float_of(static_cast<uint32_t>(u0 + i));
      want_half[i] = float_to_half(in[i]).x;
      want_bf16[i] = float_to_bf16(in[i]).x;
    }
    for (size_t k = 0; k < isas.size(); ++k) {
      isas[k].store(in.data(), half_out.data(), bf16_out.data(), kBatch);
      for (int64_t i = 0; i < kBatch; ++i) bad[k] += (half_out[i] != want_half[i]) + (bf16_out[i] != want_bf16[i]);
    }
  }
  for (size_t k = 0; k < isas.size(); ++k) {
    if (bad[k]) std::printf("%s: stores: %llu values differ\n", isas[k].name, static_cast<unsigned long long>(bad[k]));
    CHECK(bad[k] == 0);
  }
}

}  // namespace

int main() {
  const std::vector<Isa> isas = isas_of_this_cpu();
  for (const Isa& isa : isas) check_loads(isa);
  check_stores(isas, 0, uint64_t{1} << 32);  // every fp32 value
#if defined(__x86_64__)
  // DAZ and FTZ (MXCSR bits 6 and 15), as torch.set_flush_denormal(True) sets
  // them: the loads again, and the stores of every fp32 value whose exponent
  // field is below 114 (fp32 subnormals, and the values whose fp16 is
  // subnormal or zero), with either sign.
  const unsigned int csr = _mm_getcsr();
  _mm_setcsr(csr | 0x8040u);
  for (const Isa& isa : isas) check_loads(isa);
  check_stores(isas, 0, uint64_t{114} << 23);
  check_stores(isas, uint64_t{0x80000000u}, uint64_t{0x80000000u} + (uint64_t{114} << 23));
  _mm_setcsr(csr);
#endif
  for (const Isa& isa : isas) std::printf("%s: checked\n", isa.name);
  TEST_MAIN_RETURN();
}
