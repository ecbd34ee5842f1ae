// Norm partials, their overflow-free combination, and the chunk plan.
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "check.h"
#include "trainops/chunk_plan.h"
#include "trainops/norm.h"

using namespace trainops;

// Partial of a plain range computed the slow way: sum of |x|^p in long double.
static NormPartial partial_of(const std::vector<double>& xs, NormKind kind, double p) {
  double m = 0;
  for (double x : xs) m = std::fmax(m, std::fabs(x));
  if (kind == NormKind::kInf) return make_partial(m, 0, kind, p);
  long double s = 0;
  if (plain_sum_is_safe<double>(m, kind, p)) {
    for (double x : xs) s += std::pow(static_cast<long double>(std::fabs(x)), p);
    return make_partial(m, static_cast<double>(s), kind, p);
  }
  for (double x : xs) s += std::pow(static_cast<long double>(std::fabs(x) / m), p);
  return rescaled_partial(m, static_cast<double>(s));
}

int main() {
  // Spec classification.
  CHECK(make_norm_spec(2.0).kind == NormKind::kTwo);
  CHECK(make_norm_spec(1.0).kind == NormKind::kOne);
  CHECK(make_norm_spec(INFINITY).kind == NormKind::kInf);
  CHECK(make_norm_spec(3.5).kind == NormKind::kP);
  CHECK(!is_valid_norm_order(0.0) && !is_valid_norm_order(-1.0) && !is_valid_norm_order(NAN));

  // Combining per-chunk partials equals the norm of the concatenation.
  std::vector<double> a = {3, 4}, b = {12}, c = {};
  for (NormKind kind : {NormKind::kOne, NormKind::kTwo, NormKind::kP, NormKind::kInf}) {
    const double p = kind == NormKind::kOne ? 1 : kind == NormKind::kTwo ? 2 : kind == NormKind::kP ? 3 : INFINITY;
    NormPartial parts[3] = {partial_of(a, kind, p), partial_of(b, kind, p), partial_of(c, kind, p)};
    const double got = partial_to_norm(combine_partials(parts, 3, kind, p), kind, p);
    const double want = kind == NormKind::kOne ? 19 : kind == NormKind::kTwo ? 13
                      : kind == NormKind::kP ? std::cbrt(27 + 64 + 1728) : 12;
    CHECK_NEAR_REL(got, want, 1e-15);
  }

  // No spurious overflow: 1000 x 1e200 in fp64 (sum of squares 1e403).
  std::vector<double> huge(1000, 1e200);
  NormPartial hp = partial_of(huge, NormKind::kTwo, 2);
  CHECK_NEAR_REL(partial_to_norm(hp, NormKind::kTwo, 2), 1e200 * std::sqrt(1000.0), 1e-14);
  // ... nor underflow: 1000 x 1e-200.
  std::vector<double> tiny(1000, 1e-200);
  NormPartial tp = partial_of(tiny, NormKind::kTwo, 2);
  CHECK_NEAR_REL(partial_to_norm(tp, NormKind::kTwo, 2), 1e-200 * std::sqrt(1000.0), 1e-14);
  // Huge and tiny partials together: the tiny one vanishes, nothing overflows.
  NormPartial both[2] = {hp, tp};
  CHECK_NEAR_REL(partial_to_norm(combine_partials(both, 2, NormKind::kTwo, 2), NormKind::kTwo, 2),
                 1e200 * std::sqrt(1000.0), 1e-14);
  // fp32 ranges: 1e30 is outside the plain range of an fp32 accumulator.
  CHECK(!plain_sum_is_safe<float>(1e30, NormKind::kTwo, 2));
  CHECK(plain_sum_is_safe<float>(1.0, NormKind::kTwo, 2));
  CHECK(!plain_sum_is_safe<float>(1e-30, NormKind::kTwo, 2));
  CHECK(plain_sum_is_safe<double>(1e30, NormKind::kTwo, 2));
  // fp64 subnormals: 1 / max is inf below 2^-1024, so the rescue divides.
  for (double m : {1e-310, 5e-324, 2.2e-308}) {
    std::vector<double> sub = {m, 0.0, m / 2};
    for (NormKind kind : {NormKind::kOne, NormKind::kTwo, NormKind::kP}) {
      const double p = kind == NormKind::kOne ? 1 : kind == NormKind::kTwo ? 2 : 3;
      const double got = partial_to_norm(partial_of(sub, kind, p), kind, p);
      const double want = m * std::pow(1.0 + std::pow(0.5, p), 1.0 / p);
      CHECK(std::isfinite(got) && got > 0);
      if (m / 2 * 2 == m) CHECK_NEAR_REL(got, want, 1e-15);  // m / 2 exact
    }
  }
  // Huge p: 100 values of 1.9 with p = 1100 (1.9^1100 overflows fp64).
  std::vector<double> big_p(100, 1.9);
  CHECK_NEAR_REL(partial_to_norm(partial_of(big_p, NormKind::kP, 1100.0), NormKind::kP, 1100.0),
                 1.9 * std::pow(100.0, 1.0 / 1100.0), 1e-12);
  // fp64 plain sums near the top of the range are not trusted (the combine
  // would overflow): 4.79e151^2 = 2.3e303 > 2^900.
  CHECK(!plain_sum_ok<double>(65536.0 * 4.79e151 * 4.79e151));
  CHECK(plain_sum_ok<double>(1e200));
  CHECK(!plain_sum_ok<float>(1e-30) && plain_sum_ok<float>(1e-10));

  // NaN wins over inf, inf over finite, as in torch.
  NormPartial fin = {2.0, 1.0}, inf = {INFINITY, INFINITY}, nan = {NAN, NAN};
  NormPartial fi[2] = {fin, inf};
  CHECK(std::isinf(partial_to_norm(combine_partials(fi, 2, NormKind::kTwo, 2), NormKind::kTwo, 2)));
  NormPartial fin_nan_inf[3] = {fin, nan, inf};
  CHECK(std::isnan(partial_to_norm(combine_partials(fin_nan_inf, 3, NormKind::kTwo, 2), NormKind::kTwo, 2)));
  CHECK(partial_to_norm(combine_partials(nullptr, 0, NormKind::kTwo, 2), NormKind::kTwo, 2) == 0.0);

  // torch's clip coefficient: min(max_norm / (total + 1e-6), 1).
  CHECK(clip_coefficient(0.5f, 1.0) == 1.0f);
  CHECK_NEAR_REL(clip_coefficient(4.0, 1.0), 1.0 / (4.0 + 1e-6), 1e-15);
  CHECK(std::isnan(clip_coefficient(static_cast<float>(NAN), 1.0)));
  CHECK(clip_coefficient(static_cast<float>(INFINITY), 1.0) == 0.0f);
  CHECK(clamp_keep_nan(5.0f, -1.0f, 1.0f) == 1.0f && std::isnan(clamp_keep_nan(static_cast<float>(NAN), -1.0f, 1.0f)));

  // Chunk plan: sizes only, 64-bit offsets, tasks of ~kChunkSize elements.
  const int64_t big = (int64_t{1} << 32) + 5;
  ChunkPlan plan = make_chunk_plan({0, 1, kChunkSize - 1, kChunkSize, kChunkSize + 1, big});
  CHECK(plan.chunk_begin.size() == 7);
  CHECK(plan.chunk_begin[1] - plan.chunk_begin[0] == 0);  // empty tensor: no chunk
  CHECK(plan.chunk_begin[5] - plan.chunk_begin[4] == 2);
  CHECK(plan.chunks.back().begin == big - 5 && plan.chunks.back().length == 5);
  int64_t covered = 0;
  for (const Chunk& ch : plan.chunks) {
    CHECK(ch.length > 0 && ch.length <= kChunkSize);
    covered += ch.length;
  }
  CHECK(covered == 1 + (kChunkSize - 1) + kChunkSize + (kChunkSize + 1) + big);
  CHECK(plan.task_begin.front() == 0 && plan.task_begin.back() == static_cast<int64_t>(plan.chunks.size()));
  ChunkPlan small = make_chunk_plan(std::vector<int64_t>(10000, 100));
  CHECK(small.chunks.size() == 10000);
  CHECK(small.num_tasks() == (10000 * 100 + kChunkSize - 1) / kChunkSize);
  TEST_MAIN_RETURN();
}
