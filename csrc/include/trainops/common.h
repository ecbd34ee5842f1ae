// Torch-free helpers shared by the CPU and CUDA kernels: the host/device
// qualifier, bit casts, and the fp16/bf16 <-> fp32 conversions.
//
// The conversions are written out in integer and float arithmetic (no
// intrinsics) so that every CPU ISA rounds identically and so that the C++
// unit tests can check them without torch. They are branch-free, which lets
// the compiler vectorise the CPU loops that call them. On the GPU they are
// its conversion instructions instead, which round the same way (to nearest
// even, subnormals kept: the same values as the code here; a NaN stays a NaN,
// with the GPU's payload). One instruction instead of 6-18 per element: the
// norm loop's fp16 conversion alone had made it slower than memory, and the
// 16-bit scale loops spent most of their instructions rounding
// (benchmarks/RESULTS.md, "Twentieth session"). The C++ unit tests check
// the code here; the CUDA tests compare the GPU's results with the CPU's.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define TRAINOPS_HD __host__ __device__ __forceinline__
#else
#define TRAINOPS_HD inline
#endif

namespace trainops {

// Element types of the kernels (a torch-free tag; the values are shared with
// the CUDA kernels' dtype codes and the init plans).
enum class DType : int { kHalf = 0, kBFloat16 = 1, kFloat = 2, kDouble = 3 };

inline constexpr int dtype_size(DType d) { return d == DType::kDouble ? 8 : (d == DType::kFloat ? 4 : 2); }

// Storage types for the two 16-bit formats: plain bit patterns, so that this
// header needs neither c10 nor cuda_fp16.h. Layout-compatible with c10::Half /
// c10::BFloat16 / __half / __nv_bfloat16 (one uint16_t).
struct half_bits {
  uint16_t x;
};
struct bf16_bits {
  uint16_t x;
};

TRAINOPS_HD uint32_t float_as_u32(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
#endif
}

TRAINOPS_HD float u32_as_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
#endif
}

TRAINOPS_HD float bf16_to_float(bf16_bits h) {
  return u32_as_float(static_cast<uint32_t>(h.x) << 16);
}

// Round to nearest even; NaN stays a (quiet) NaN, with its sign on the CPU
// (the GPU's instruction gives its canonical NaN, 0x7fff).
TRAINOPS_HD bf16_bits float_to_bf16(float f) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800 && !TRAINOPS_CUDA_V19_ELEMENT_MATH
  uint16_t out;
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(out) : "f"(f));
  return bf16_bits{out};
#else
  const uint32_t u = float_as_u32(f);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const bool is_nan = (u & 0x7fffffffu) > 0x7f800000u;
  const uint32_t out = is_nan ? ((u >> 16) | 0x0040u) : rounded;
  return bf16_bits{static_cast<uint16_t>(out)};
#endif
}

// fp16 -> fp32, exact, with no fp32 subnormal on the way (a denormals-are-zero
// mode, torch.set_flush_denormal(True), would read one as 0). Normal halves:
// the 15 exponent+mantissa bits shifted into fp32 position, exponent rebiased
// (15 -> 127) by an integer add. Subnormal halves (exponent 0): the mantissa
// m as a float times 2^-24, both exact, the product a normal fp32. inf/NaN
// (exponent all ones) keep their payload.
TRAINOPS_HD float half_to_float(half_bits h) {
#if defined(__CUDA_ARCH__) && !TRAINOPS_CUDA_V19_ELEMENT_MATH
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h.x));
  return f;
#else
  constexpr float kSubnormalStep = 5.9604644775390625e-8f;  // 2^-24
  const uint32_t sign = static_cast<uint32_t>(h.x & 0x8000u) << 16;
  const uint32_t em = static_cast<uint32_t>(h.x & 0x7fffu);
  const uint32_t normal = (em << 13) + (112u << 23);
  const float subnormal = static_cast<float>(static_cast<int32_t>(em)) * kSubnormalStep;
  const uint32_t inf_nan = (em << 13) | 0x7f800000u;
  const uint32_t bits = (em >= 0x7c00u) ? inf_nan : (em >= 0x400u) ? normal : float_as_u32(subnormal);
  return u32_as_float(bits | sign);
#endif
}

// fp32 -> fp16, round to nearest even, overflow to inf, NaN to quiet NaN
// (on the GPU its canonical NaN, 0x7fff).
TRAINOPS_HD half_bits float_to_half(float f) {
#if defined(__CUDA_ARCH__) && !TRAINOPS_CUDA_V19_ELEMENT_MATH
  uint16_t out;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(out) : "f"(f));
  return half_bits{out};
#else
  const uint32_t u = float_as_u32(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t a = u & 0x7fffffffu;
  // |f| >= 65520 rounds to inf (65504 is the largest finite half).
  constexpr uint32_t kOverflow = 0x477ff000u;
  // Below 2^-14 the result is an fp16 subnormal (or zero).
  constexpr uint32_t kMinNormal = 0x38800000u;
  uint32_t out;
  if (a > 0x7f800000u) {
    out = 0x7e00u;
  } else if (a >= kOverflow) {
    out = 0x7c00u;
  } else if (a < kMinNormal) {
    // Adding 0.5f aligns the value so that the float adder rounds it to a
    // multiple of 2^-24 (the fp16 subnormal step), nearest even.
    constexpr float kHalf = 0.5f;
    const float shifted = u32_as_float(a) + kHalf;
    out = float_as_u32(shifted) - float_as_u32(kHalf);
  } else {
    const uint32_t mant_odd = (a >> 13) & 1u;
    // Rebias 127 -> 15 and round to nearest even on the 13 dropped bits.
    out = (a - 0x38000000u + 0x0fffu + mant_odd) >> 13;
  }
  return half_bits{static_cast<uint16_t>(out | sign)};
#endif
}

// The largest finite value of each 16/32-bit element type.
constexpr double kHalfMax = 65504.0;
constexpr double kBFloat16Max = 3.3895313892515355e38;
constexpr double kFloatMax = 3.4028234663852886e38;

// A clamp bound v as the element type d represents it: torch converts the
// Python scalar of clamp_/clip_grad_value_ to the tensor's dtype before
// comparing. A bound beyond the type's largest finite value (where torch
// raises) becomes +-inf and clamps nothing of that type: rounded to nearest
// (65504.5 -> 65504 in fp16) it would turn +-inf gradients into finite ones.
// The CPU and CUDA clamp kernels both take their bounds from here.
inline double clamp_bound_in(DType d, double v) {
  const double max = d == DType::kHalf ? kHalfMax
                     : d == DType::kBFloat16 ? kBFloat16Max
                     : d == DType::kFloat ? kFloatMax
                                          : std::numeric_limits<double>::max();
  if (std::fabs(v) > max) return std::copysign(std::numeric_limits<double>::infinity(), v);
  switch (d) {
    case DType::kHalf:
      return half_to_float(float_to_half(static_cast<float>(v)));
    case DType::kBFloat16:
      return bf16_to_float(float_to_bf16(static_cast<float>(v)));
    case DType::kFloat:
      return static_cast<float>(v);
    default:
      return v;
  }
}

// Load any supported element as the accumulation type.
template <typename acc_t>
TRAINOPS_HD acc_t load_as(float v) { return static_cast<acc_t>(v); }
template <typename acc_t>
TRAINOPS_HD acc_t load_as(double v) { return static_cast<acc_t>(v); }
template <typename acc_t>
TRAINOPS_HD acc_t load_as(half_bits v) { return static_cast<acc_t>(half_to_float(v)); }
template <typename acc_t>
TRAINOPS_HD acc_t load_as(bf16_bits v) { return static_cast<acc_t>(bf16_to_float(v)); }

// Store an fp32/fp64 value into an element type, rounding once.
TRAINOPS_HD void store_from(float* p, float v) { *p = v; }
TRAINOPS_HD void store_from(double* p, double v) { *p = v; }
TRAINOPS_HD void store_from(half_bits* p, float v) { *p = float_to_half(v); }
TRAINOPS_HD void store_from(bf16_bits* p, float v) { *p = float_to_bf16(v); }

// Accumulation type: fp32 for fp16/bf16/fp32 elements, fp64 for fp64.
template <typename T>
struct AccType {
  using type = float;
};
template <>
struct AccType<double> {
  using type = double;
};

}  // namespace trainops
