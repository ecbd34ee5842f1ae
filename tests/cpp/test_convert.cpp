// fp16 / bf16 <-> fp32 conversions of trainops/common.h, exhaustively.
#include <cmath>
#include <cstdint>

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
  TEST_MAIN_RETURN();
}
