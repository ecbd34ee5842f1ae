// fp16 / bf16 <-> fp32 conversions of trainops/common.h, exhaustively.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>

#include "check.h"
#include "trainops/common.h"

using namespace trainops;

// Reference fp16 decode from the IEEE definition.
static double half_value(uint16_t h) {
  const int sign = (h >> 15) ? -1 : 1;
  const int exp = (h >> 10) & 0x1f;
  const int mant = h & 0x3ff;
  if (exp == 0) return sign * std::ldexp(mant, -24);
  if (exp == 31) return mant ? NAN : sign * INFINITY;
  return sign * std::ldexp(1024 + mant, exp - 25);
}

// IEEE round-to-nearest-even fp32 -> 16 bits, from the definition: of the
// two representable values around f (lo toward zero, the next one away from
// it; the largest finite value's next is inf, counted as one step further),
// the nearer, ties to the one with an even bit pattern. Distances are exact
// in double. value(b) decodes a non-negative pattern (inf included).
template <typename Decode>
static uint16_t nearest_even(float f, uint16_t inf_bits, uint16_t lo, Decode value) {
  const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  const double a = std::fabs(static_cast<double>(f));
  if (a >= value(inf_bits)) return static_cast<uint16_t>(inf_bits | sign);  // f is inf (or beyond the step)
  const uint16_t hi = static_cast<uint16_t>(lo + 1);
  const double dlo = a - value(lo);
  const double dhi = value(hi) - a;
  const uint16_t pick = dlo < dhi ? lo : dhi < dlo ? hi : (lo & 1) ? hi : lo;
  return static_cast<uint16_t>(pick | sign);
}

static double half_step_value(uint16_t h) {  // inf as 65536, one step above 65504's neighbour
  return h == 0x7c00 ? 65536.0 : half_value(h);
}

static double bf16_step_value(uint16_t b) {  // inf as 2^128
  return b == 0x7f80 ? std::ldexp(1.0, 128) : static_cast<double>(bf16_to_float(bf16_bits{b}));
}

static uint16_t half_rne(float f) {
  // lo: the largest non-negative fp16 <= |f|, by bisection over the
  // patterns (their values increase with the pattern).
  const double a = std::fabs(static_cast<double>(f));
  uint32_t lo = 0, hi = 0x7c00;  // value(lo) <= a < value(hi); a >= 65536 is inf in nearest_even
  while (a < 65536.0 && hi - lo > 1) {
    const uint32_t mid = (lo + hi) / 2;
    (half_step_value(static_cast<uint16_t>(mid)) <= a ? lo : hi) = mid;
  }
  return nearest_even(f, 0x7c00, static_cast<uint16_t>(lo), half_step_value);
}

static uint16_t bf16_rne(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return nearest_even(f, 0x7f80, static_cast<uint16_t>((u >> 16) & 0x7fff), bf16_step_value);
}

// float_to_half / float_to_bf16 equal IEEE rounding on f: the GPU's
// conversion instructions (cvt.rn), which the CUDA kernels use instead
// (common.h), round this way, so both store the same values.
static void check_ieee_rounding(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  if (std::isnan(f)) return;
  CHECK(float_to_half(f).x == half_rne(f));
  CHECK(float_to_bf16(f).x == bf16_rne(f));
}

int main() {
  // Every fp16 bit pattern decodes exactly and survives a round trip.
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = half_to_float(half_bits{static_cast<uint16_t>(h)});
    const double want = half_value(static_cast<uint16_t>(h));
    if (std::isnan(want)) {
      CHECK(std::isnan(f));
      CHECK((float_to_half(f).x & 0x7c00u) == 0x7c00u && (float_to_half(f).x & 0x3ffu) != 0);
    } else {
      CHECK(static_cast<double>(f) == want);
      CHECK(float_to_half(f).x == h);
    }
  }
  // Every bf16 bit pattern round-trips (NaNs stay NaN).
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = bf16_to_float(bf16_bits{static_cast<uint16_t>(h)});
    if (std::isnan(f)) {
      CHECK(std::isnan(bf16_to_float(float_to_bf16(f))));
    } else {
      CHECK(float_to_bf16(f).x == h);
    }
  }
  // Round to nearest even at the halfway points.
  CHECK(float_to_half(1.0f + std::ldexp(1.0f, -11)).x == 0x3c00);   // tie -> even (1.0)
  CHECK(float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)).x == 0x3c02);  // tie -> even (up)
  CHECK(float_to_half(65504.0f).x == 0x7bff);
  CHECK(float_to_half(65519.99f).x == 0x7bff);
  CHECK(float_to_half(65520.0f).x == 0x7c00);  // rounds to inf
  CHECK(float_to_half(std::ldexp(1.0f, -25)).x == 0);  // tie below the smallest subnormal -> 0
  CHECK(float_to_half(std::ldexp(1.5f, -25)).x == 1);
  CHECK(float_to_half(-0.0f).x == 0x8000);
  CHECK(float_to_bf16(1.0f + std::ldexp(1.0f, -8)).x == 0x3f80);  // tie -> even
  CHECK(float_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)).x == 0x3f82);
  CHECK(float_to_bf16(3.4e38f).x == 0x7f80);  // overflow to inf
  // IEEE rounding: every tie of both formats (the dropped bits exactly half
  // an ulp, in every exponent, subnormal results included), their neighbours
  // one fp32 ulp either side, and every 997th fp32 pattern. All 2^32 patterns
  // agree too (a 6-minute run: benchmarks/RESULTS.md, "Twentieth session").
  for (uint32_t high = 0; high < (1u << 19); ++high) {  // fp16 keeps 10 of fp32's 23 mantissa bits
    for (uint32_t d : {0x0fffu, 0x1000u, 0x1001u}) check_ieee_rounding((high << 13) | d);
  }
  for (uint32_t high = 0; high < (1u << 16); ++high) {
    for (uint32_t d : {0x7fffu, 0x8000u, 0x8001u}) check_ieee_rounding((high << 16) | d);
  }
  // fp32 values below fp16's normal range, whose fp16 ties sit at other bits.
  for (uint32_t u = 0x33000000u; u < 0x38800000u; u += 61) check_ieee_rounding(u);
  for (uint64_t u = 0; u < (uint64_t{1} << 32); u += 997) check_ieee_rounding(static_cast<uint32_t>(u));
  TEST_MAIN_RETURN();
}
