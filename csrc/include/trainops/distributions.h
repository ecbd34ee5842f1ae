// Distribution transforms of the counter-based initialisers: Philox words ->
// uniform, normal (inverse CDF in fp32, Box-Muller in fp64), truncated normal
// (inverse CDF) and constant values. Torch-free and __host__ __device__: the
// CPU kernels, the CUDA kernels and the C++ unit tests run this very code.
//
// Bitwise equality between CPU and CUDA: every transform uses only IEEE
// operations that both round identically -- +, -, *, / and explicit fused
// multiply-adds (fma_rn) -- and its own sqrt / log / sin / cos / erfinv
// approximations built from them (no libm, no fast-math). The CPU build uses
// -ffp-contract=off and the CUDA build --fmad=false, so no compiler fuses a
// multiply-add that the other platform does not.
//
// Stream layout (see philox.h): element g of a tensor (its row-major index in
// the *global*, unsharded tensor) takes block g / kPerBlock, slot
// g % kPerBlock, of the Philox stream (seed, tensor key). fp32 (and fp16/bf16,
// which are computed in fp32 and rounded once) use one 32-bit word per
// uniform, four elements per block; fp64 uses two words (53 bits) per uniform,
// two elements per block. An fp32 normal is the inverse CDF of its own word; an
// fp64 normal pair (Box-Muller) uses the two uniforms of its block. So element
// values never depend on any other element's place in memory, on threads, on
// the launch grid or on sharding.
#pragma once

#include <cstdint>

#include "trainops/common.h"
#include "trainops/normal_icdf_table.h"
#include "trainops/philox.h"

#include <cmath>
#include <limits>

namespace trainops {

// Kinds of the init_tensors_ op (the int codes are part of its schema).
enum class InitKind : int { kUniform = 0, kNormal = 1, kTruncNormal = 2, kConstant = 3 };
constexpr int kNumInitKinds = 4;

namespace dist {

template <typename T>
struct RealTraits;
template <>
struct RealTraits<float> {
  static constexpr int kPerBlock = 4;  // one 32-bit word per uniform
};
template <>
struct RealTraits<double> {
  static constexpr int kPerBlock = 2;  // two 32-bit words (53 bits) per uniform
};

TRAINOPS_HD_INLINE float fma_rn(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return __builtin_fmaf(a, b, c);
#endif
}
TRAINOPS_HD_INLINE double fma_rn(double a, double b, double c) {
#if defined(__CUDA_ARCH__)
  return __fma_rn(a, b, c);
#else
  return __builtin_fma(a, b, c);
#endif
}
TRAINOPS_HD_INLINE uint64_t double_as_u64(double d) {
#if defined(__CUDA_ARCH__)
  return static_cast<uint64_t>(__double_as_longlong(d));
#else
  uint64_t u;
  std::memcpy(&u, &d, sizeof(u));
  return u;
#endif
}
TRAINOPS_HD_INLINE double u64_as_double(uint64_t u) {
#if defined(__CUDA_ARCH__)
  return __longlong_as_double(static_cast<long long>(u));
#else
  double d;
  std::memcpy(&d, &u, sizeof(d));
  return d;
#endif
}

// Square root of x >= 0: the IEEE square root, correctly rounded on every
// platform (x86 sqrtps/sqrtpd, CUDA __fsqrt_rn/__dsqrt_rn), so it is as
// bitwise-portable as + and *. One instruction where the Newton iteration it
// replaced took 14 (measured: normal fp32 transform 13% faster). The CPU build
// uses -fno-math-errno, without which GCC guards each sqrt with a branch to libm
// and refuses to vectorise the loop.
TRAINOPS_HD_INLINE float sqrt_rn(float x) {
#if defined(__CUDA_ARCH__)
  return __fsqrt_rn(x);
#else
  return __builtin_sqrtf(x);
#endif
}
TRAINOPS_HD_INLINE double sqrt_rn(double x) {
#if defined(__CUDA_ARCH__)
  return __dsqrt_rn(x);
#else
  return __builtin_sqrt(x);
#endif
}

// Horner's rule with fma: horner(x, c0, c1, ..., cn) = (..(c0 x + c1) x ..) x + cn.
template <typename T>
TRAINOPS_HD_INLINE T horner(T, T c) {
  return c;
}
template <typename T, typename... Rest>
TRAINOPS_HD_INLINE T horner(T x, T c0, T c1, Rest... rest) {
  return horner<T>(x, fma_rn(c0, x, c1), static_cast<T>(rest)...);
}

// Branch-free select: c ? a : b on the bit patterns. Written with masks, not
// `?:`, because GCC keeps some float `?:` as branches and then refuses to
// vectorise the CPU loop on AVX2 ("control flow in loop").
TRAINOPS_HD_INLINE float select_bits(bool c, float a, float b) {
  const uint32_t m = 0u - static_cast<uint32_t>(c);
  return u32_as_float((float_as_u32(a) & m) | (float_as_u32(b) & ~m));
}
TRAINOPS_HD_INLINE double select_bits(bool c, double a, double b) {
  const uint64_t m = uint64_t{0} - static_cast<uint64_t>(c);
  return u64_as_double((double_as_u64(a) & m) | (double_as_u64(b) & ~m));
}
// -x when c, else x (flips the sign bit).
TRAINOPS_HD_INLINE float negate_if(bool c, float x) {
  return u32_as_float(float_as_u32(x) ^ (static_cast<uint32_t>(c) << 31));
}
TRAINOPS_HD_INLINE double negate_if(bool c, double x) {
  return u64_as_double(double_as_u64(x) ^ (static_cast<uint64_t>(c) << 63));
}

// ---- uniforms from Philox words ------------------------------------------

// [0, 1): 24 bits (fp32) / 53 bits (fp64), multiples of 2^-24 / 2^-53.
TRAINOPS_HD_INLINE float u01_closed_open(uint32_t w) {
  return static_cast<float>(static_cast<int32_t>(w >> 8)) * 0x1p-24f;
}
TRAINOPS_HD_INLINE double u01_closed_open(uint32_t hi, uint32_t lo) {
  const uint64_t x = (static_cast<uint64_t>(hi) << 32) | lo;
  return static_cast<double>(static_cast<int64_t>(x >> 11)) * 0x1p-53;
}
// (0, 1): odd multiples of 2^-24 / 2^-53, never 0 or 1 (log(u) is finite).
TRAINOPS_HD_INLINE float u01_open(uint32_t w) {
  return static_cast<float>(static_cast<int32_t>((w >> 8) | 1u)) * 0x1p-24f;
}
TRAINOPS_HD_INLINE double u01_open(uint32_t hi, uint32_t lo) {
  const uint64_t x = (static_cast<uint64_t>(hi) << 32) | lo;
  return static_cast<double>(static_cast<int64_t>((x >> 11) | 1u)) * 0x1p-53;
}

// ---- natural logarithm of a positive normal number ------------------------
// x = 2^e m with m in [sqrt(1/2), sqrt(2)); e ln2 in two parts. fp32: a
// minimax polynomial in m - 1; fp64: log m = 2 atanh(s), s = (m-1)/(m+1),
// |s| <= 0.1716, by its odd series (11 terms: the first omitted term is below
// 2^-59 relative).
TRAINOPS_HD_INLINE float log_approx(float x) {
  const uint32_t bits = float_as_u32(x);
  int32_t e = static_cast<int32_t>(bits >> 23) - 127;
  float m = u32_as_float((bits & 0x007fffffu) | 0x3f800000u);
  // m > sqrt(2): halve m (exactly, via its exponent bits) and bump e.
  const uint32_t big = static_cast<uint32_t>(m > 1.41421356f);
  m = u32_as_float(float_as_u32(m) - (big << 23));
  e += static_cast<int32_t>(big);
  // log(1 + f), f = m - 1 (exact) in [-0.293, 0.415]: f - f^2/2 + f^3 P(f),
  // with Cephes' logf minimax polynomial (no division: 2x faster than the
  // atanh series when vectorised).
  const float f = m - 1.0f;
  const float z = f * f;
  const float p = horner<float>(f, 7.0376836292e-2f, -1.1514610310e-1f, 1.1676998740e-1f,
                                -1.2420140846e-1f, 1.4249322787e-1f, -1.6668057665e-1f,
                                2.0000714765e-1f, -2.4999993993e-1f, 3.3333331174e-1f);
  const float lm = f + fma_rn(-0.5f, z, (f * z) * p);
  const float ef = static_cast<float>(e);
  constexpr float kLn2Hi = 0.693145751953125f;     // 0x3f317200: e * kLn2Hi is exact
  constexpr float kLn2Lo = 1.42860682030941723e-6f;
  return fma_rn(ef, kLn2Hi, fma_rn(ef, kLn2Lo, lm));
}
TRAINOPS_HD_INLINE double log_approx(double x) {
  const uint64_t bits = double_as_u64(x);
  int64_t e = static_cast<int64_t>(bits >> 52) - 1023;
  double m = u64_as_double((bits & 0x000fffffffffffffull) | 0x3ff0000000000000ull);
  const uint64_t big = static_cast<uint64_t>(m > 1.4142135623730951);
  m = u64_as_double(double_as_u64(m) - (big << 52));
  e += static_cast<int64_t>(big);
  const double s = (m - 1.0) / (m + 1.0);
  const double s2 = s * s;
  const double p = horner<double>(s2, 2.0 / 21.0, 2.0 / 19.0, 2.0 / 17.0, 2.0 / 15.0, 2.0 / 13.0,
                                  2.0 / 11.0, 2.0 / 9.0, 2.0 / 7.0, 2.0 / 5.0, 2.0 / 3.0, 2.0);
  const double ef = static_cast<double>(e);
  constexpr double kLn2Hi = 6.93147180369123816490e-01;  // 0x3fe62e42fee00000
  constexpr double kLn2Lo = 1.90821492927058770002e-10;
  return fma_rn(ef, kLn2Hi, fma_rn(ef, kLn2Lo, s * p));
}

// ---- sin and cos on [-pi/4, pi/4], for the fp64 Box-Muller ---------------
// Taylor series to x^19 / x^20 (the first omitted term is below 2^-60 at pi/4).
TRAINOPS_HD_INLINE void sincos_small(double x, double* s, double* c) {
  const double x2 = x * x;
  const double ps = horner<double>(
      x2, -1.0 / 121645100408832000.0, 1.0 / 355687428096000.0, -1.0 / 1307674368000.0,
      1.0 / 6227020800.0, -1.0 / 39916800.0, 1.0 / 362880.0, -1.0 / 5040.0, 1.0 / 120.0,
      -1.0 / 6.0);
  const double pc = horner<double>(
      x2, 1.0 / 2432902008176640000.0, -1.0 / 6402373705728000.0, 1.0 / 20922789888000.0,
      -1.0 / 87178291200.0, 1.0 / 479001600.0, -1.0 / 3628800.0, 1.0 / 40320.0, -1.0 / 720.0,
      1.0 / 24.0, -0.5);
  *s = fma_rn(x * x2, ps, x);
  *c = fma_rn(x2, pc, 1.0);
}

// (cos t, sin t) of an angle t uniform on the circle: the top two bits pick
// the quadrant q, the next 53 bits an offset phi uniform on [-pi/4, pi/4), and
// t = q pi/2 + phi covers [-pi/4, 7pi/4) uniformly -- no range reduction.
template <typename T>
TRAINOPS_HD_INLINE void rotate_quadrant(uint32_t q, T s, T c, T* cos_t, T* sin_t) {
  const bool odd = (q & 1u) != 0;
  const T cq = select_bits(odd, s, c);
  const T sq = select_bits(odd, c, s);
  *cos_t = negate_if((((q + 1u) >> 1) & 1u) != 0, cq);
  *sin_t = negate_if((q >> 1) != 0, sq);
}
TRAINOPS_HD_INLINE void unit_circle(uint32_t hi, uint32_t lo, double* cos_t, double* sin_t) {
  const uint64_t x = ((static_cast<uint64_t>(hi & 0x3fffffffu) << 32) | lo) >> 9;  // 53 bits
  const int64_t k = static_cast<int64_t>(x) - (int64_t{1} << 52);
  constexpr double kStep = 1.7438035521820613e-16;  // (pi / 2) * 2^-53
  double s, c;
  sincos_small(static_cast<double>(k) * kStep, &s, &c);
  rotate_quadrant(hi >> 30, s, c, cos_t, sin_t);
}

// ---- inverse error function on (-1, 1) -------------------------------------
// M. Giles, "Approximating the erfinv function", GPU Computing Gems Jade
// (2011): the single- and double-precision polynomials, all branches
// evaluated and selected (branch-free, so the CPU loops vectorise).
TRAINOPS_HD_INLINE float erfinv_approx(float x) {
  const float w = -log_approx((1.0f - x) * (1.0f + x));
  const float p1 = horner<float>(w - 2.5f, 2.81022636e-08f, 3.43273939e-07f, -3.5233877e-06f,
                                 -4.39150654e-06f, 0.00021858087f, -0.00125372503f,
                                 -0.00417768164f, 0.246640727f, 1.50140941f);
  const float p2 = horner<float>(sqrt_rn(w) - 3.0f, -0.000200214257f, 0.000100950558f,
                                 0.00134934322f, -0.00367342844f, 0.00573950773f, -0.0076224613f,
                                 0.00943887047f, 1.00167406f, 2.83297682f);
  return select_bits(w < 5.0f, p1, p2) * x;
}
TRAINOPS_HD_INLINE double erfinv_approx(double x) {
  const double w = -log_approx((1.0 - x) * (1.0 + x));
  const double sw = sqrt_rn(w);
  const double p1 = horner<double>(
      w - 3.125, -3.6444120640178196996e-21, -1.685059138182016589e-19, 1.2858480715256400167e-18,
      1.115787767802518096e-17, -1.333171662854620906e-16, 2.0972767875968561637e-17,
      6.6376381343583238325e-15, -4.0545662729752068639e-14, -8.1519341976054721522e-14,
      2.6335093153082322977e-12, -1.2975133253453532498e-11, -5.4154120542946279317e-11,
      1.051212273321532285e-09, -4.1126339803469836976e-09, -2.9070369957882005086e-08,
      4.2347877827932403518e-07, -1.3654692000834678645e-06, -1.3882523362786468719e-05,
      0.0001867342080340571352, -0.00074070253416626697512, -0.0060336708714301490533,
      0.24015818242558961693, 1.6536545626831027356);
  const double p2 = horner<double>(
      sw - 3.25, 2.2137376921775787049e-09, 9.0756561938885390979e-08, -2.7517406297064545428e-07,
      1.8239629214389227755e-08, 1.5027403968909827627e-06, -4.013867526981545969e-06,
      2.9234449089955446044e-06, 1.2475304481671778723e-05, -4.7318229009055733981e-05,
      6.8284851459573175448e-05, 2.4031110387097893999e-05, -0.0003550375203628474796,
      0.00095328937973738049703, -0.0016882755560235047313, 0.0024914420961078508066,
      -0.0037512085075692412107, 0.005370914553590063617, 1.0052589676941592334,
      3.0838856104922207635);
  const double p3 = horner<double>(
      sw - 5.0, -2.7109920616438573243e-11, -2.5556418169965252055e-10, 1.5076572693500548083e-09,
      -3.7894654401267369937e-09, 7.6157012080783393804e-09, -1.4960026627149240478e-08,
      2.9147953450901080826e-08, -6.7711997758452339498e-08, 2.2900482228026654717e-07,
      -9.9298272942317002539e-07, 4.5260625972231537039e-06, -1.9681778105531670567e-05,
      7.5995277030017761139e-05, -0.00021503011930044477347, -0.00013871931833623122026,
      1.0103004648645343977, 4.8499064014085844221);
  return select_bits(w < 6.25, p1, select_bits(w < 16.0, p2, p3)) * x;
}

// ---- per-tensor parameters ---------------------------------------------------

// Derived parameters of one tensor's distribution, in the compute type T.
//   uniform:     p0 = low, p1 = high - low, p2 = largest T below high (the
//                result is kept in [low, high) as torch's uniform_ is)
//   normal:      p0 = mean, p1 = std
//   trunc normal: p0 = mean, p1 = std sqrt(2), p2 = erf(alpha / sqrt2),
//                p3 = erf(beta / sqrt2) - p2, p4 = a, p5 = b
//   constant:    p0 = value
template <typename T>
struct DistParams {
  InitKind kind;
  T p[6];
};

// Host only (libm's erf): both the CPU and the CUDA op compute the derived
// parameters here, on the host, so both kernels see the very same values.
// Arguments as in the op schema: uniform (low, high), normal (mean, std),
// trunc normal (mean, std, a, b), constant (value).
template <typename T>
inline DistParams<T> make_params(InitKind kind, double a, double b, double c, double d) {
  DistParams<T> out{kind, {T(0), T(0), T(0), T(0), T(0), T(0)}};
  switch (kind) {
    case InitKind::kUniform: {
      out.p[0] = static_cast<T>(a);
      out.p[1] = static_cast<T>(b - a);
      const T high = static_cast<T>(b);
      out.p[2] = (b > a) ? std::nextafter(high, -std::numeric_limits<T>::infinity()) : high;
      break;
    }
    case InitKind::kNormal:
      out.p[0] = static_cast<T>(a);
      out.p[1] = static_cast<T>(b);
      break;
    case InitKind::kTruncNormal: {
      constexpr double kSqrt2 = 1.4142135623730951;
      const double lo = (b > 0) ? std::erf((c - a) / (b * kSqrt2)) : -1.0;
      const double hi = (b > 0) ? std::erf((d - a) / (b * kSqrt2)) : 1.0;
      out.p[0] = static_cast<T>(a);
      out.p[1] = static_cast<T>(b * kSqrt2);
      out.p[2] = static_cast<T>(lo);
      out.p[3] = static_cast<T>(hi - lo);
      out.p[4] = static_cast<T>(c);
      out.p[5] = static_cast<T>(d);
      break;
    }
    default:
      out.p[0] = static_cast<T>(a);
      break;
  }
  return out;
}

// Host only. uniform's cap for fp16 / bf16 outputs: the largest value of the
// 16-bit type that is < high (as a float), so that rounding a capped fp32
// value (<= the cap, which is representable) never reaches high: torch's
// uniform_ is [low, high) in every dtype. `cap32` is the fp32 cap of
// make_params; kept when no 16-bit value lies in [low, high).
inline float largest_below_16(bool is_half, float cap32, double low, double high) {
  if (!(high > low)) return cap32;
  const auto to16 = [&](float f) { return is_half ? float_to_half(f).x : float_to_bf16(f).x; };
  const auto from16 = [&](uint16_t h) {
    return is_half ? half_to_float(half_bits{h}) : bf16_to_float(bf16_bits{h});
  };
  uint16_t h = to16(cap32);
  float v = from16(h);
  if (static_cast<double>(v) >= high) {
    // One step towards -inf: the bit pattern's magnitude down for a positive
    // value, up for a negative one; +0 steps to the smallest negative subnormal.
    const uint16_t mag = h & 0x7fffu;
    h = (h & 0x8000u) ? static_cast<uint16_t>(h + 1) : (mag == 0 ? uint16_t{0x8001u} : static_cast<uint16_t>(h - 1));
    v = from16(h);
  }
  return (static_cast<double>(v) >= low && static_cast<double>(v) < high) ? v : cap32;
}

// ---- one Philox block -> kPerBlock values ------------------------------------

template <typename T>
TRAINOPS_HD_INLINE T min_sel(T a, T b) {
  return select_bits(a < b, a, b);
}
template <typename T>
TRAINOPS_HD_INLINE T clamp_sel(T x, T lo, T hi) {
  return select_bits(x < lo, lo, select_bits(x > hi, hi, x));
}

// Truncated normal from a uniform u in (0, 1): z = erf(alpha/sqrt2) + u * (erf(beta/sqrt2)
// - erf(alpha/sqrt2)) is uniform on the truncated range of erf, x = mean +
// std sqrt2 erfinv(z). z is kept inside (-1, 1) and x inside [a, b], so the
// bounds hold even where the approximations round outwards. In fp32 the
// reachable tail is |x - mean| < ~5.4 std (z has 24 bits); a truncation inside
// that range (the usual +-2 std) is exact in distribution.
template <typename T>
TRAINOPS_HD_INLINE T trunc_normal_from_uniform(const DistParams<T>& d, T u) {
  constexpr T kOneBelow = sizeof(T) == 4 ? T(0x1.fffffep-1) : T(0x1.fffffffffffffp-1);
  const T z = clamp_sel(fma_rn(u, d.p[3], d.p[2]), -kOneBelow, kOneBelow);
  return clamp_sel(fma_rn(d.p[1], erfinv_approx(z), d.p[0]), d.p[4], d.p[5]);
}

// ---- fp32 standard normal: the inverse CDF of one word --------------------
// The top bit of the word is the sign; the other 31, made odd, are n, and
// p = fp32(n) 2^-32 lies in [2^-32, 0.5] (the conversion rounds to nearest:
// every odd n rounds alike on both platforms). Phi^-1(p) <= 0 is a degree-9
// polynomial in y = m - 2 (exact), m the mantissa of p, with coefficients per
// fp32 binade of p (normal_icdf_table.h, from scripts/gen_normal_icdf.py),
// looked up by the exponent's low 5 bits. Within 1.6 ulp of the float64
// quantile of that p and non-decreasing over every fp32 p (tests/cpp/
// test_philox.cpp); reaches |x| = 6.2303 (p = 2^-32).
// Branch-free and one word per element: on AVX-512 ~26 instructions per 16
// elements (one table lookup per coefficient: a vpermps over 16 entries for
// the binades near p = 0.5, a vpermt2ps over all 32 otherwise; see the CPU
// kernel), about half of Box-Muller's ~54.
constexpr int kNormalIcdfSegments = 32;
constexpr int kNormalIcdfTerms = TRAINOPS_NORMAL_ICDF_DEGREE + 1;
struct alignas(64) NormalIcdfTable {
  float c[kNormalIcdfTerms][kNormalIcdfSegments];  // [Horner step][exponent mod 32]
};
// The host copy; CUDA kernels stage their own copy in shared memory.
inline constexpr NormalIcdfTable kNormalIcdfHost{TRAINOPS_NORMAL_ICDF_COEFFS};

// Phi^-1(p) for an fp32 p in [2^-32, 0.5], given p or p 2^32 (only the
// mantissa and the exponent mod 32 are read, and 2^32 changes neither).
TRAINOPS_HD_INLINE float normal_quantile_lower(const NormalIcdfTable& tab, float p) {
  const uint32_t bits = float_as_u32(p);
  const uint32_t seg = (bits >> 23) & (kNormalIcdfSegments - 1);
  const float y = u32_as_float((bits & 0x007fffffu) | 0x3f800000u) - 2.0f;
  float x = tab.c[0][seg];
#if defined(__CUDACC__)
#pragma unroll
#else
#pragma GCC unroll 16
#endif
  for (int i = 1; i < kNormalIcdfTerms; ++i) x = fma_rn(x, y, tab.c[i][seg]);
  return x;
}
TRAINOPS_HD_INLINE float std_normal_icdf(const NormalIcdfTable& tab, uint32_t w) {
  const float p_2_32 = static_cast<float>(static_cast<int32_t>((w & 0x7fffffffu) | 1u));
  return u32_as_float(float_as_u32(normal_quantile_lower(tab, p_2_32)) ^ (w & 0x80000000u));
}

// `tab` is read by the fp32 normal only (kNormalIcdfHost on the CPU, a shared
// memory copy on CUDA).
template <InitKind K>
TRAINOPS_HD_INLINE void sample_block_k(const DistParams<float>& d, const Philox4x32& w, float* out,
                                       const NormalIcdfTable& tab) {
  // Straight-line code per kind (no inner loops): GCC vectorises the CPU
  // kernel's loop over blocks only then.
  if (K == InitKind::kUniform) {
    out[0] = min_sel(fma_rn(u01_closed_open(w.v[0]), d.p[1], d.p[0]), d.p[2]);
    out[1] = min_sel(fma_rn(u01_closed_open(w.v[1]), d.p[1], d.p[0]), d.p[2]);
    out[2] = min_sel(fma_rn(u01_closed_open(w.v[2]), d.p[1], d.p[0]), d.p[2]);
    out[3] = min_sel(fma_rn(u01_closed_open(w.v[3]), d.p[1], d.p[0]), d.p[2]);
  } else if (K == InitKind::kNormal) {
    out[0] = fma_rn(d.p[1], std_normal_icdf(tab, w.v[0]), d.p[0]);
    out[1] = fma_rn(d.p[1], std_normal_icdf(tab, w.v[1]), d.p[0]);
    out[2] = fma_rn(d.p[1], std_normal_icdf(tab, w.v[2]), d.p[0]);
    out[3] = fma_rn(d.p[1], std_normal_icdf(tab, w.v[3]), d.p[0]);
  } else if (K == InitKind::kTruncNormal) {
    out[0] = trunc_normal_from_uniform(d, u01_open(w.v[0]));
    out[1] = trunc_normal_from_uniform(d, u01_open(w.v[1]));
    out[2] = trunc_normal_from_uniform(d, u01_open(w.v[2]));
    out[3] = trunc_normal_from_uniform(d, u01_open(w.v[3]));
  } else {
    out[0] = d.p[0];
    out[1] = d.p[0];
    out[2] = d.p[0];
    out[3] = d.p[0];
  }
}

template <InitKind K>
TRAINOPS_HD_INLINE void sample_block_k(const DistParams<double>& d, const Philox4x32& w, double* out,
                                       const NormalIcdfTable&) {
  if (K == InitKind::kUniform) {
    out[0] = min_sel(fma_rn(u01_closed_open(w.v[0], w.v[1]), d.p[1], d.p[0]), d.p[2]);
    out[1] = min_sel(fma_rn(u01_closed_open(w.v[2], w.v[3]), d.p[1], d.p[0]), d.p[2]);
  } else if (K == InitKind::kNormal) {
    const double r = sqrt_rn(-2.0 * log_approx(u01_open(w.v[0], w.v[1])));
    double c, s;
    unit_circle(w.v[2], w.v[3], &c, &s);
    out[0] = fma_rn(d.p[1], r * c, d.p[0]);
    out[1] = fma_rn(d.p[1], r * s, d.p[0]);
  } else if (K == InitKind::kTruncNormal) {
    out[0] = trunc_normal_from_uniform(d, u01_open(w.v[0], w.v[1]));
    out[1] = trunc_normal_from_uniform(d, u01_open(w.v[2], w.v[3]));
  } else {
    out[0] = d.p[0];
    out[1] = d.p[0];
  }
}

template <typename T>
TRAINOPS_HD_INLINE void sample_block(const DistParams<T>& d, const Philox4x32& w, T* out,
                                     const NormalIcdfTable& tab) {
  switch (d.kind) {
    case InitKind::kUniform:
      sample_block_k<InitKind::kUniform>(d, w, out, tab);
      break;
    case InitKind::kNormal:
      sample_block_k<InitKind::kNormal>(d, w, out, tab);
      break;
    case InitKind::kTruncNormal:
      sample_block_k<InitKind::kTruncNormal>(d, w, out, tab);
      break;
    default:
      sample_block_k<InitKind::kConstant>(d, w, out, tab);
      break;
  }
}

}  // namespace dist
}  // namespace trainops
