// Compute cost of the CPU norm and scale loops, without the memory: one
// thread, one L2-resident chunk of 32,768 values, every ISA this CPU has. A
// loop whose GB/s here is not well above the DRAM bandwidth of one core is
// bound by its instructions, not by memory. Built by CMake (not a test):
//
//   make test-cpp && build-cmake/clip_kernels_ns
//
// Prints ns per 16 values (the best of 7 timings of 200 calls) and the bytes
// per second that pace allows: read for the norm, read + write for the scale.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

#include "clip_isa.cpp"  // NOLINT: the kernels' translation unit, torch-free

namespace {

using namespace trainops;
using namespace trainops::cpu;

template <typename F>
double best_ns(F f) {
  double best = 1e30;
  for (int r = 0; r < 7; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 200; ++i) f();
    const auto t1 = std::chrono::steady_clock::now();
    best = std::min(best, std::chrono::duration<double, std::nano>(t1 - t0).count() / 200);
  }
  return best;
}

struct Data {
  std::vector<float> f32;
  std::vector<double> f64;
  std::vector<uint16_t> bf16, fp16;
};

void run(const char* name, const ClipKernels& k, Data& d, int64_t n) {
  NormSpec spec{};
  spec.kind = NormKind::kTwo;
  spec.p = 2.0;
  volatile double sink = 0;
  std::printf("%-8s", name);
  const struct {
    const char* label;
    DType dtype;
    void* data;
    int bytes;
  } cases[] = {{"fp32", DType::kFloat, d.f32.data(), 4},
               {"bf16", DType::kBFloat16, d.bf16.data(), 2},
               {"fp16", DType::kHalf, d.fp16.data(), 2},
               {"fp64", DType::kDouble, d.f64.data(), 8}};
  for (const auto& c : cases) {
    const double norm = best_ns([&] { sink = k.norm_chunk(c.dtype, c.data, n, spec).scaled; }) / n;
    // Scaling by 1 keeps the data as it is from call to call.
    const double scale = best_ns([&] { k.scale_chunk(c.dtype, c.data, n, 1.0, 1.0f); }) / n;
    std::printf("  %s norm %5.2f (%3.0f GB/s) scale %5.2f (%3.0f GB/s)", c.label, 16 * norm, c.bytes / norm,
                16 * scale, 2 * c.bytes / scale);
  }
  std::printf("\n");
}

}  // namespace

int main() {
  const int64_t n = 32768;
  volatile int64_t runtime_n = n;  // not a constant the compiler could fold
  Data d;
  std::mt19937 gen(1);
  std::normal_distribution<float> normal;
  for (int64_t i = 0; i < n; ++i) {
    const float v = normal(gen);
    d.f32.push_back(v);
    d.f64.push_back(v);
    d.bf16.push_back(float_to_bf16(v).x);
    d.fp16.push_back(float_to_half(v).x);
  }
  std::printf("ns per 16 values, 1 thread, %lld values in L2 (GB/s: what that pace allows)\n",
              static_cast<long long>(n));
  run("baseline", baseline::kClipKernels, d, runtime_n);
#if TRAINOPS_MULTI_ISA
  if (cpu_isa_usable(CpuIsa::kAvx2)) run("avx2", avx2::kClipKernels, d, runtime_n);
  if (cpu_isa_usable(CpuIsa::kAvx512)) run("avx512", avx512::kClipKernels, d, runtime_n);
#endif
  return 0;
}
