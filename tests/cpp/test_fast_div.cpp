// trainops/fast_div.h against the hardware division, at the edges and at random.
#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "check.h"
#include "trainops/fast_div.h"
#include "trainops/init_plan.h"

using namespace trainops;

int main() {
  constexpr int64_t kMax = INT64_MAX;  // numerators are < 2^63
  std::vector<uint64_t> divisors;
  for (uint64_t d = 1; d <= 2000; ++d) divisors.push_back(d);
  for (int b = 1; b < 63; ++b) {
    const uint64_t p = uint64_t{1} << b;
    divisors.insert(divisors.end(), {p - 1, p, p + 1, p / 3 * 2 + 1});
  }
  divisors.insert(divisors.end(), {uint64_t(kMax) - 1, uint64_t(kMax), uint64_t(kMax) + 1,
                                   UINT64_MAX - 1, UINT64_MAX});
  std::mt19937_64 rng(12345);
  for (int i = 0; i < 2000; ++i) divisors.push_back(rng() >> (rng() % 64) | 1);

  for (const uint64_t d : divisors) {
    const DivU63 f = make_div_u63(d);
    std::vector<int64_t> nums = {0, 1, 2, kMax, kMax - 1};
    if (d <= uint64_t(kMax)) {
      const int64_t s = static_cast<int64_t>(d);
      nums.insert(nums.end(), {s - 1, s, kMax / s * s, kMax / s * s - 1});
      if (s < kMax) nums.push_back(s + 1);
      if (s <= kMax / 2) nums.insert(nums.end(), {2 * s - 1, 2 * s});
    }
    for (int i = 0; i < 200; ++i) nums.push_back(static_cast<int64_t>(rng() >> (1 + rng() % 63)));
    for (const int64_t n : nums) {
      const int64_t want = static_cast<int64_t>(static_cast<uint64_t>(n) / d);
      const int64_t got = div_u63(n, f);
      CHECK(got == want);
      if (got != want) return 1;  // one report is enough
    }
  }

  // Its users: the work items of column shards (init_item, run_global_start)
  // against the same arithmetic with / and %.
  struct Shard {
    std::vector<int64_t> global, local, offset;
  };
  const std::vector<Shard> shards = {
      {{64, 30}, {64, 7}, {0, 13}},           {{64, 31}, {64, 1}, {0, 1}},
      {{6, 10, 9}, {6, 10, 5}, {0, 0, 4}},    {{7, 5, 3, 11}, {3, 5, 2, 6}, {2, 0, 1, 3}},
      {{1000, 3000}, {1000, 3}, {0, 2997}},
  };
  for (const Shard& sh : shards) {
    for (const DType dt : {DType::kFloat, DType::kDouble}) {
      InitTensorPlan p{};
      int64_t bad = 0;
      CHECK(make_init_layout(static_cast<int64_t>(sh.local.size()), sh.local.data(), sh.global.data(),
                             sh.offset.data(), &p.layout, &bad) == LayoutError::kNone);
      p.dtype = dt;
      set_work_items(&p);
      CHECK(p.layout.num_runs > 1);
      const int per = elements_per_block(dt);
      for (int64_t i = 0; i < p.items; ++i) {
        const int64_t r = i / p.blocks_per_run, k = i % p.blocks_per_run;
        int64_t start = p.layout.base, rr = r;
        for (int d = p.layout.outer_dims - 1; d >= 0; --d) {
          start += (rr % p.layout.outer_size[d]) * p.layout.outer_gstride[d];
          rr /= p.layout.outer_size[d];
        }
        CHECK(run_global_start(p.layout, r) == start);
        const InitItem it = init_item(p, i);
        CHECK(it.block == static_cast<uint64_t>(start / per + k));
        const int64_t g0 = std::max<int64_t>(static_cast<int64_t>(it.block) * per, start);
        CHECK(it.local_begin == r * p.layout.run_len + (g0 - start));
      }
    }
  }
  return trainops_test::failures() == 0 ? 0 : 1;
}
