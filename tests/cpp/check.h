// Minimal assertion helpers for the torch-free C++ unit tests (run by ctest).
#pragma once

#include <cstdio>
#include <cstdlib>

namespace trainops_test {
inline int& failures() {
  static int n = 0;
  return n;
}
}  // namespace trainops_test

#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++trainops_test::failures();                                           \
    }                                                                        \
  } while (0)

#define CHECK_NEAR_REL(a, b, tol)                                                        \
  do {                                                                                   \
    const double a_ = (a), b_ = (b);                                                     \
    const double d_ = a_ > b_ ? a_ - b_ : b_ - a_;                                       \
    const double m_ = b_ < 0 ? -b_ : b_;                                                 \
    if (!(d_ <= (tol) * m_)) {                                                           \
      std::fprintf(stderr, "%s:%d: %s = %.17g, expected %.17g (rel tol %g)\n", __FILE__, \
                   __LINE__, #a, a_, b_, static_cast<double>(tol));                      \
      ++trainops_test::failures();                                                       \
    }                                                                                    \
  } while (0)

#define TEST_MAIN_RETURN()                                                   \
  do {                                                                       \
    if (trainops_test::failures() == 0) std::printf("all checks passed\n");  \
    return trainops_test::failures() == 0 ? 0 : 1;                           \
  } while (0)
