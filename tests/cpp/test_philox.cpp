// Known-answer tests of the torch-free random cores: Philox4x32-10 against
// Random123's kat_vectors, and properties of the distribution transforms in
// trainops/distributions.h. A plain program: exit status 0 when all pass.
#include <cmath>
#include <cstdint>
#include <cstdio>

#include <vector>

#include "trainops/distributions.h"
#include "trainops/init_plan.h"
#include "trainops/philox.h"

namespace {

int g_failures = 0;

void expect(bool ok, const char* what) {
  if (!ok) {
    std::printf("FAIL: %s\n", what);
    ++g_failures;
  }
}

struct Kat {
  uint32_t ctr[4];
  uint32_t key[2];
  uint32_t out[4];
};

// Random123 kat_vectors, philox4x32 with 10 rounds.
constexpr Kat kKats[] = {
    {{0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u},
     {0x00000000u, 0x00000000u},
     {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
    {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
     {0xffffffffu, 0xffffffffu},
     {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
    {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
     {0xa4093822u, 0x299f31d0u},
     {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
};

void test_philox_kat() {
  for (const Kat& kat : kKats) {
    const trainops::Philox4x32 out = trainops::philox4x32_10(
        trainops::Philox4x32{{kat.ctr[0], kat.ctr[1], kat.ctr[2], kat.ctr[3]}},
        trainops::PhiloxKey{{kat.key[0], kat.key[1]}});
    for (int i = 0; i < 4; ++i) {
      if (out.v[i] != kat.out[i]) {
        std::printf("FAIL: philox kat word %d: got %08x want %08x\n", i, out.v[i], kat.out[i]);
        ++g_failures;
      }
    }
  }
}

template <typename T>
void test_math(double tol) {
  // Own log / sincos / erfinv against libm, in the type's precision.
  double worst_log = 0, worst_sin = 0, worst_erfinv = 0;
  for (int i = 1; i < 100000; ++i) {
    const T x = static_cast<T>(i) / static_cast<T>(100000);
    worst_log = std::fmax(worst_log, std::fabs(double(trainops::dist::log_approx(x)) -
                                               std::log(double(x))) /
                                         std::fmax(std::fabs(std::log(double(x))), 1e-30));
    if constexpr (sizeof(T) == 8) {  // sin / cos serve the fp64 Box-Muller only
      const T phi = (x - T(0.5)) * T(1.5707963267948966);
      T s, c;
      trainops::dist::sincos_small(phi, &s, &c);
      worst_sin = std::fmax(worst_sin, std::fabs(double(s) - std::sin(double(phi))));
      worst_sin = std::fmax(worst_sin, std::fabs(double(c) - std::cos(double(phi))));
    }
    const T z = static_cast<T>(2) * x - static_cast<T>(1);
    const T y = trainops::dist::erfinv_approx(z);
    // erf(erfinv(z)) == z, relative to the derivative near the ends.
    worst_erfinv = std::fmax(worst_erfinv, std::fabs(std::erf(double(y)) - double(z)) /
                                               std::fmax(1.0 - std::fabs(double(z)), 1e-30));
  }
  expect(worst_log < tol, "log_approx accuracy");
  expect(worst_sin < tol, "sincos_small accuracy (fp64)");
  expect(worst_erfinv < 1e3 * tol, "erfinv_approx accuracy");
  if constexpr (sizeof(T) == 8) {
    std::printf("fp64: max rel err log %.3g, abs err sin/cos %.3g, erfinv %.3g\n", worst_log, worst_sin,
                worst_erfinv);
  } else {
    std::printf("fp32: max rel err log %.3g, erfinv %.3g\n", worst_log, worst_erfinv);
  }
}

// sqrt_rn is the IEEE square root on both CPU and CUDA, correctly rounded for
// every input >= 0, so it agrees bitwise; the two differ only in the NaN they
// return for a negative input. What keeps them equal is therefore the inputs
// the transforms give it, checked here: the fp64 Box-Muller's -2 log(u) is
// positive and finite at the extremes of u, and erfinv's -log((1 - x)(1 + x))
// is >= 0 (or -0) and not NaN over (0, 1]. (The fp32 normal takes no sqrt.)
void test_sqrt_inputs() {
  using trainops::dist::log_approx;
  using trainops::dist::u01_open;
  for (const uint32_t hi : {0u, 1u, 0x80000000u, 0xffffffffu}) {
    for (const uint32_t lo : {0u, 1u, 0x7ffu, 0x800u, 0xffffffffu}) {
      const double r2 = -2.0 * log_approx(u01_open(hi, lo));
      expect(r2 > 0.0 && std::isfinite(r2), "Box-Muller sqrt argument > 0 (fp64)");
    }
  }
  int bad_w = 0;
  for (float v = 0x1p-24f; v <= 1.0f; v = std::nextafter(v, 2.0f)) {
    const float w = -log_approx(v);
    bad_w += !(w >= 0.0f);  // -0 compares equal to 0; NaN fails
    for (int skip = 0; skip < 15 && v < 1.0f; ++skip) v = std::nextafter(v, 2.0f);
  }
  expect(bad_w == 0 && -log_approx(1.0f) >= 0.0f, "erfinv sqrt argument >= 0 over (0, 1]");
  expect(trainops::dist::sqrt_rn(0.0f) == 0.0f && trainops::dist::sqrt_rn(4.0) == 2.0,
         "sqrt_rn exact on exact squares");
}

// The float64 standard normal quantile of p in (0, 0.5]: Newton on
// Phi(x) = erfc(-x / sqrt2) / 2 (libm's erfc, relative accuracy in the tail)
// from a start within 1e-6; two steps take it to double precision.
double quantile(double p, double x) {
  for (int it = 0; it < 2; ++it) {
    const double cdf = 0.5 * std::erfc(-x / 1.4142135623730951);
    x -= (cdf - p) / (std::exp(-0.5 * x * x) * 0.3989422804014327);
  }
  return x;
}

// std_normal_icdf, the fp32 normal of every init call, for the word
// w = n - 1 (top bit clear; n odd): p = fp32(n) 2^-32 and x = Phi^-1(p) <= 0.
// Against the float64 quantile of that p: within 2 ulp (1.55 seen) for every
// 64th odd n and all odd n within 2^12 of each binade's ends; exactly 0 at
// p = 0.5; the top bit of the word flips the sign only. And non-decreasing
// over all 2^28 fp32 p in [2^-32, 0.5] (about 2 s).
void test_normal_icdf() {
  const trainops::dist::NormalIcdfTable& tab = trainops::dist::kNormalIcdfHost;
  double worst_ulp = 0;
  int64_t bad_sign = 0;
  const auto check = [&](uint32_t n) {
    const uint32_t w = n - 1;  // (w & 0x7fffffff) | 1 == n
    const float x = trainops::dist::std_normal_icdf(tab, w);
    const float p = static_cast<float>(static_cast<int32_t>(n)) * 0x1p-32f;
    const double ref = p == 0.5f ? 0.0 : quantile(double(p), double(x));
    const float ax = std::fabs(static_cast<float>(ref));
    const double ulp = double(std::nextafter(ax, 1.0f / 0.0f)) - double(ax);
    worst_ulp = std::fmax(worst_ulp, ref == 0.0 ? std::fabs(double(x)) * 1e30 : std::fabs(x - ref) / ulp);
    bad_sign += trainops::dist::std_normal_icdf(tab, w | 0x80000000u) != -x;
  };
  for (uint64_t n = 1; n < (uint64_t{1} << 31); n += 128) check(static_cast<uint32_t>(n));
  for (int k = 1; k <= 31; ++k) {
    const int64_t edge = int64_t{1} << k;
    for (int64_t n = edge - 4095; n <= edge + 4095; n += 2) {
      if (n >= 1 && n < (int64_t{1} << 31)) check(static_cast<uint32_t>(n));
    }
  }
  int64_t bad_order = 0;
  float prev = -1e30f;
  for (uint32_t b = 0x2f800000u; b <= 0x3f000000u; ++b) {  // 2^-32 .. 0.5
    const float x = trainops::dist::normal_quantile_lower(tab, trainops::u32_as_float(b));
    bad_order += x < prev;
    prev = x;
  }
  std::printf("std_normal_icdf: worst %.3f ulp from the float64 quantile\n", worst_ulp);
  expect(worst_ulp <= 2.0, "std_normal_icdf within 2 ulp of the float64 quantile");
  expect(bad_order == 0, "normal quantile non-decreasing over every fp32 p");
  expect(bad_sign == 0, "the top bit of the word flips the sign");
  expect(trainops::dist::std_normal_icdf(tab, 0x7fffffffu) == 0.0f, "p = 0.5 gives 0");
  expect(std::fabs(trainops::dist::std_normal_icdf(tab, 0u) + 6.2304f) < 1e-3f,
         "the smallest p, 2^-32, gives -6.2304");
}

void test_distributions() {
  using trainops::dist::DistParams;
  const trainops::dist::NormalIcdfTable& tab = trainops::dist::kNormalIcdfHost;
  // Uniform stays in [low, high); truncated normal in [a, b].
  const DistParams<float> u = trainops::dist::make_params<float>(trainops::InitKind::kUniform,
                                                                 -1.0, 1.0, 0.0, 0.0);
  const DistParams<float> t = trainops::dist::make_params<float>(
      trainops::InitKind::kTruncNormal, 0.0, 1.0, -0.5, 2.0);
  const DistParams<double> td = trainops::dist::make_params<double>(
      trainops::InitKind::kTruncNormal, 1.0, 2.0, -3.0, 1.5);
  bool in_range = true;
  double mean = 0;
  const int kBlocks = 1 << 16;
  for (int b = 0; b < kBlocks; ++b) {
    const trainops::Philox4x32 w = trainops::philox_block(7, 3, static_cast<uint64_t>(b));
    float out[4];
    trainops::dist::sample_block(u, w, out, tab);
    for (float v : out) in_range &= (v >= -1.0f && v < 1.0f);
    trainops::dist::sample_block(t, w, out, tab);
    for (float v : out) in_range &= (v >= -0.5f && v <= 2.0f);
    double outd[2];
    trainops::dist::sample_block(td, w, outd, tab);
    for (double v : outd) in_range &= (v >= -3.0 && v <= 1.5);
    trainops::dist::sample_block(trainops::dist::make_params<float>(trainops::InitKind::kNormal,
                                                                    0.0, 1.0, 0.0, 0.0),
                                 w, out, tab);
    for (float v : out) mean += v;
  }
  expect(in_range, "uniform / truncated normal stay inside their bounds");
  mean /= 4.0 * kBlocks;
  // 5 standard errors of 2^18 standard normal samples.
  expect(std::fabs(mean) < 5.0 / std::sqrt(4.0 * kBlocks), "normal mean");
}

// The CUDA kernel's work decomposition (init_item), run on the host: for
// whole tensors and row / column / block shards, every element is written
// exactly once and holds the value of its global index.
template <typename T>
void check_items(std::vector<int64_t> local, std::vector<int64_t> global,
                 std::vector<int64_t> offset) {
  constexpr int kPer = trainops::dist::RealTraits<T>::kPerBlock;
  const int64_t ndim = static_cast<int64_t>(local.size());
  int64_t numel = 1;
  for (int64_t v : local) numel *= v;
  std::vector<T> out(static_cast<size_t>(numel), T(0));
  std::vector<int> writes(static_cast<size_t>(numel), 0);
  trainops::InitTensorPlan p{};
  int64_t bad = 0;
  expect(trainops::make_init_layout(ndim, local.data(), global.data(), offset.data(), &p.layout,
                                    &bad) == trainops::LayoutError::kNone,
         "layout");
  p.data = out.data();
  p.dtype = sizeof(T) == 8 ? trainops::DType::kDouble : trainops::DType::kFloat;
  p.kind = trainops::InitKind::kNormal;
  p.key = 17;
  trainops::set_work_items(&p);
  const auto d = trainops::dist::make_params<T>(p.kind, 0.0, 1.0, 0.0, 0.0);
  for (int64_t i = 0; i < p.items; ++i) {
    const trainops::InitItem it = trainops::init_item(p, i);
    if (it.g_end <= it.g_begin) continue;
    T vals[kPer];
    trainops::dist::sample_block(d, trainops::philox_block(5, p.key, it.block), vals,
                                 trainops::dist::kNormalIcdfHost);
    for (int64_t g = it.g_begin; g < it.g_end; ++g) {
      const int64_t j = it.local_begin + (g - it.g_begin);
      out[j] = vals[g - static_cast<int64_t>(it.block) * kPer];
      ++writes[j];
    }
  }
  bool ok = true;
  for (int64_t j = 0; j < numel; ++j) {
    // Global index of local element j.
    int64_t rem = j, g = 0, gstride = 1;
    std::vector<int64_t> idx(static_cast<size_t>(ndim));
    for (int64_t k = ndim - 1; k >= 0; --k) {
      idx[k] = rem % local[k];
      rem /= local[k];
    }
    for (int64_t k = ndim - 1; k >= 0; --k) {
      g += (idx[k] + offset[k]) * gstride;
      gstride *= global[k];
    }
    T vals[kPer];
    trainops::dist::sample_block(d, trainops::philox_block(5, p.key, static_cast<uint64_t>(g / kPer)),
                                 vals, trainops::dist::kNormalIcdfHost);
    ok &= writes[j] == 1 && out[j] == vals[g % kPer];
  }
  expect(ok, "init_item writes every element once with its global index's value");
}

}  // namespace

int main() {
  test_philox_kat();
  test_math<float>(4e-7);
  test_math<double>(1e-15);
  test_sqrt_inputs();
  test_normal_icdf();
  test_distributions();
  check_items<float>({64, 30}, {64, 30}, {0, 0});
  check_items<float>({10, 30}, {64, 30}, {17, 0});
  check_items<float>({64, 7}, {64, 30}, {0, 13});
  check_items<float>({5, 3}, {64, 30}, {3, 27});
  check_items<double>({64, 1}, {64, 31}, {0, 1});
  check_items<double>({3, 5, 9}, {6, 10, 9}, {1, 2, 0});
  check_items<float>({6, 10, 5}, {6, 10, 9}, {0, 0, 4});
  check_items<float>({1, 1}, {3, 3}, {2, 2});
  if (g_failures == 0) std::printf("test_philox: all passed\n");
  return g_failures == 0 ? 0 : 1;
}
