// Torch-free norm math shared by the CPU and CUDA kernels.
//
// A p-norm is reduced in three levels, each in a fixed order so results are
// bitwise reproducible for any thread count or launch grid:
//   1. per element:  |x|^p in the accumulation type (fp32, fp64 for fp64),
//      together with the running max |x| of the chunk;
//   2. per chunk:    a NormPartial {max, scaled} meaning  max^p * scaled,
//      i.e. the sum of |x|^p expressed relative to the chunk's largest value;
//   3. across chunks and tensors: combine_partials(), in fp64, scaling every
//      partial by the overall max first.
// Keeping each partial relative to its own max is what makes the norm free of
// spurious overflow and underflow: 1000 fp32 elements of 1e30 have a sum of
// squares of 1e63 (fp32 overflows at 3.4e38) yet a norm of 3.2e31, which the
// combine computes as 1e30 * sqrt(1000) without ever forming 1e63.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "trainops/common.h"

namespace trainops {

enum class NormKind : int32_t { kOne = 0, kTwo = 1, kInf = 2, kP = 3 };

struct NormSpec {
  NormKind kind;
  double p;  // the order; +inf for kInf
};

// Classify a user norm order. Callers validate p > 0 (or +inf) beforehand.
inline NormSpec make_norm_spec(double p) {
  if (std::isinf(p)) return {NormKind::kInf, p};
  if (p == 1.0) return {NormKind::kOne, p};
  if (p == 2.0) return {NormKind::kTwo, p};
  return {NormKind::kP, p};
}

inline bool is_valid_norm_order(double p) { return p > 0.0 && !std::isnan(p); }

// Accumulation type of a plain (unscaled) chunk sum of |x|^p over elements of
// type T: fp32 for fp16 / bf16 / fp32 (fp64 for fp64), except for a general
// order p, which takes fp64 for every type. The norm is sum^(1/p), so the
// sum's relative error reaches the norm multiplied by 1/p: fp32 sums gave
// 1.2e-6 at p = 0.1 against the 1e-6 target. A general p pays a pow per
// element anyway, so the fp64 pow and sum cost little more.
template <NormKind K, typename T>
using NormAcc = typename std::conditional<K == NormKind::kP, double, typename AccType<T>::type>::type;

// Per-element contribution |x|^p of an absolute value a.
// Also instantiated with CPU SIMD vector types for kOne / kTwo.
template <NormKind K, typename acc_t>
TRAINOPS_HD acc_t norm_term(acc_t a, acc_t p) {
  if constexpr (K == NormKind::kTwo) {
    return a * a;
  } else if constexpr (K == NormKind::kP) {
    return pow(a, p);
  } else {
    return a;  // kOne; for kInf unused, the max carries the result
  }
}

// max that sticks to NaN once it has seen one (std::max would drop it), in a
// form the vectoriser turns into compare + blend.
template <typename acc_t>
TRAINOPS_HD acc_t nan_max(acc_t m, acc_t a) {
  return ((a > m) | (a != a)) ? a : m;
}

// A chunk's (or tensor's) reduced value: sum |x|^p == max^p * scaled, where
// `max` is a reference magnitude: the range's max |x| when its sum had to be
// rescaled, or 1 for a plain sum (plain_partial). max == 0 means an all-zero
// (or empty) range; a non-finite max (inf or NaN) carries the inf/NaN result
// of the whole norm.
struct NormPartial {
  double max;
  double scaled;
};

// Range of max^p (as a power of two) inside which a chunk's plain sum of |x|^p
// in the accumulation type neither overflows nor loses small terms to
// underflow. fp32: a chunk sums at most kChunkSize = 2^16 terms <= max^p, so
// max^p <= 2^100 keeps the sum <= 2^116 < 2^128; max^p >= 2^-60 keeps every
// term within 2^66 of the largest above fp32's subnormal range (2^-126).
// fp64: the same reasoning with 2^+-900 against fp64's range of 2^+-1022.
template <typename acc_t>
struct PlainRange;
template <>
struct PlainRange<float> {
  static constexpr int kMinExp = -60;
  static constexpr int kMaxExp = 100;
};
template <>
struct PlainRange<double> {
  static constexpr int kMinExp = -900;
  static constexpr int kMaxExp = 900;
};

// Lower bound (as a power of two) of a trusted plain sum of |x|^p, for the
// CPU kernels, which find the max only when they need it: a finite sum means
// no accumulator overflowed, and a sum >= 2^kMinSumExp means the terms lost
// below fp32's normal range (< 2^-126 each, at most 2^16 of them) change it by
// less than 2^-50 relative. fp64: the same against 2^-1022.
template <typename acc_t>
struct PlainSumRange;
// The upper bound leaves room for the fp64 combine: fp32 sums are at most
// ~2^143 (2^16 terms < 2^128), but a plain fp64 sum near DBL_MAX would
// overflow when chunks are added, so fp64 sums above 2^900 are rescaled too.
template <>
struct PlainSumRange<float> {
  static constexpr int kMinSumExp = -60;
  static constexpr int kMaxSumExp = 1000;
};
template <>
struct PlainSumRange<double> {
  static constexpr int kMinSumExp = -900;
  static constexpr int kMaxSumExp = 900;
};

template <typename acc_t>
TRAINOPS_HD bool plain_sum_ok(double sum) {
  return sum >= ldexp(1.0, PlainSumRange<acc_t>::kMinSumExp) &&
         sum <= ldexp(1.0, PlainSumRange<acc_t>::kMaxSumExp);
}

// The partial of a trusted plain sum: reference magnitude 1.
TRAINOPS_HD NormPartial plain_partial(double sum) { return {1.0, sum}; }

TRAINOPS_HD double pow_p(double x, NormKind kind, double p) {
  if (kind == NormKind::kOne) return x;
  if (kind == NormKind::kTwo) return x * x;
  return pow(x, p);
}

// True when a chunk with this max can be summed without rescaling.
template <typename acc_t>
TRAINOPS_HD bool plain_sum_is_safe(double max_abs, NormKind kind, double p) {
  if (!(max_abs > 0.0) || !(max_abs <= std::numeric_limits<double>::max())) {
    return true;  // zero, inf or NaN: the plain sum is already the answer
  }
  const double mp = pow_p(max_abs, kind, p);
  return mp >= ldexp(1.0, PlainRange<acc_t>::kMinExp) &&
         mp <= ldexp(1.0, PlainRange<acc_t>::kMaxExp);
}

// Turn a chunk's plain sum of |x|^p and its max |x| into a partial.
TRAINOPS_HD NormPartial make_partial(double max_abs, double sum, NormKind kind, double p) {
  if (kind == NormKind::kInf) return {max_abs, max_abs > 0.0 ? 1.0 : 0.0};
  if (!(max_abs > 0.0)) return {max_abs, sum};          // 0 or NaN
  if (max_abs > std::numeric_limits<double>::max()) {   // inf element
    return {max_abs, sum};
  }
  return {max_abs, sum / pow_p(max_abs, kind, p)};  // sum == max^p * scaled
}

// The partial of the rescaled pass, which sums (|x| / max)^p in fp64 for a
// finite max > 0: every term is <= 1 and the max's is exactly 1, so the sum
// is in [1, count] for any p (scaling by a power of two overflowed for
// p >~ 1000: 1.9^1100 = inf) and for any max (multiplying by 1 / max did not:
// 1 / max is inf below 2^-1024, i.e. for fp64 subnormals, and gave NaN).
TRAINOPS_HD NormPartial rescaled_partial(double max_abs, double scaled_sum) {
  return {max_abs, scaled_sum};
}

// combine_partials() in three steps, so that a parallel reduction (the CUDA
// finalize kernels) computes the same function: fold every partial into
// (max, has_nan) with combine_max_step (exact, order-free), then, only if
// combine_needs_sum, add up combine_term over the partials (the one
// order-dependent step: fixed order or fixed tree), and finish with
// combine_finish.
TRAINOPS_HD void combine_max_step(NormPartial q, double& m, bool& has_nan) {
  has_nan = has_nan || (q.max != q.max) || (q.scaled != q.scaled);
  m = (q.max > m) ? q.max : m;
}

TRAINOPS_HD bool combine_needs_sum(double m, bool has_nan, NormKind kind) {
  return !has_nan && m > 0.0 && m <= std::numeric_limits<double>::max() &&
         kind != NormKind::kInf;
}

// q's share of the combined sum, relative to the overall max m.
TRAINOPS_HD double combine_term(NormPartial q, double m, NormKind kind, double p) {
  return q.max > 0.0 ? pow_p(q.max / m, kind, p) * q.scaled : 0.0;
}

// NaN anywhere wins, then inf.
TRAINOPS_HD NormPartial combine_finish(double m, bool has_nan, double sum, NormKind kind) {
  if (has_nan) return {NAN, NAN};
  if (!(m > 0.0)) return {0.0, 0.0};
  if (m > std::numeric_limits<double>::max()) return {m, 1.0};
  if (kind == NormKind::kInf) return {m, 1.0};
  return {m, sum};
}

// Combine partials in index order. NaN anywhere wins, then inf.
TRAINOPS_HD NormPartial combine_partials(const NormPartial* parts, int64_t n, NormKind kind,
                                         double p) {
  double m = 0.0;
  bool has_nan = false;
  for (int64_t i = 0; i < n; ++i) combine_max_step(parts[i], m, has_nan);
  double s = 0.0;
  if (combine_needs_sum(m, has_nan, kind)) {
    for (int64_t i = 0; i < n; ++i) s += combine_term(parts[i], m, kind, p);
  }
  return combine_finish(m, has_nan, s, kind);
}

// The norm of a (combined) partial: max * scaled^(1/p).
TRAINOPS_HD double partial_to_norm(NormPartial r, NormKind kind, double p) {
  if (r.max != r.max || r.scaled != r.scaled) return NAN;
  if (!(r.max > 0.0)) return 0.0;
  if (r.max > std::numeric_limits<double>::max()) return r.max;
  switch (kind) {
    case NormKind::kInf:
      return r.max;
    case NormKind::kOne:
      return r.max * r.scaled;
    case NormKind::kTwo:
      return r.max * sqrt(r.scaled);
    default:
      return r.max * pow(r.scaled, 1.0 / p);
  }
}

// The clip coefficient of torch.nn.utils.clip_grads_with_norm_:
// min(max_norm / (total + 1e-6), 1), evaluated in the total's dtype the way
// torch evaluates it (reciprocal, then multiply), so that the scaled grads
// match torch bit for bit. NaN stays NaN (clamp propagates it), so grads are
// scaled by NaN exactly as torch would.
template <typename T>
TRAINOPS_HD T clip_coefficient(T total, double max_norm) {
  constexpr T kEps = static_cast<T>(1e-6);
  const T coef = (static_cast<T>(1) / (total + kEps)) * static_cast<T>(max_norm);
  return (coef > static_cast<T>(1)) ? static_cast<T>(1) : coef;
}

// In-place clamp to [lo, hi] that keeps NaN (torch.clamp propagates it).
template <typename acc_t>
TRAINOPS_HD acc_t clamp_keep_nan(acc_t x, acc_t lo, acc_t hi) {
  return x < lo ? lo : (x > hi ? hi : x);
}

}  // namespace trainops
