// Float32 exp and tanh the host compiler can vectorise: branch-free (selects only), no
// errno, no calls, so a loop calling them runs in SIMD registers, which std::exp and std::tanh
// (scalar libm calls) never do without -ffast-math.  Accuracy: a few ulp over the whole range
// (checked against NumPy in tests/backends/native/test_vecmath.py); inf, -inf and NaN as libm.
#include <cmath>
#include <cstdint>
#include <cstring>

// e^x = 2^n e^r with n = round(x / ln 2) and |r| <= ln 2 / 2 (ln 2 in two parts, so that r is
// exact); e^r by its Taylor polynomial of degree 7 (truncation below 1e-8 relative).
static inline float ft_expf(float x) {
  float c = x > 89.0f ? 89.0f : x;          // (NaN compares false: caught at the end)
  c = c < -104.0f ? -104.0f : c;
  // round to nearest by adding 1.5 * 2^23 and taking it away again (|c / ln 2| < 2^22): a
  // std::floor would keep the loop from vectorising
  const float n = (c * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = (c - n * 0.693145751953125f) - n * 1.42860682030941723e-6f;
  float p = 1.98412698412698413e-4f;
  p = p * r + 1.38888888888888889e-3f;
  p = p * r + 8.33333333333333333e-3f;
  p = p * r + 4.16666666666666667e-2f;
  p = p * r + 1.66666666666666667e-1f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // 2^n as two normal powers of two, multiplied in after p, so that results in the
  // subnormal range and overflow to inf round as the product does
  const std::int32_t ni = (std::int32_t)n, half = ni >> 1;   // (an arithmetic shift: floor(n / 2))
  const std::int32_t a = half + 127, b = ni - half + 127;
  const std::uint32_t ba = (std::uint32_t)a << 23, bb = (std::uint32_t)b << 23;
  float fa, fb;
  std::memcpy(&fa, &ba, 4);
  std::memcpy(&fb, &bb, 4);
  const float y = (p * fa) * fb;
  return x != x ? x : y;
}

// tanh: its odd Taylor series to x^11 below |x| = 0.25 (the next term is under 1e-10
// relative there), else 1 - 2 / (e^(2|x|) + 1) with the sign of x (1 to float precision
// from |x| = 10 on).
static inline float ft_tanhf(float x) {
  const float ax = std::fabs(x), x2 = x * x;
  float s = -8.86323552990219657e-3f;                                     // -1382/155925
  s = s * x2 + 2.18694885361552028e-2f;                                   //  62/2835
  s = s * x2 - 5.39682539682539683e-2f;                                   // -17/315
  s = s * x2 + 1.33333333333333333e-1f;                                   //  2/15
  s = s * x2 - 3.33333333333333333e-1f;                                   // -1/3
  const float small = x * (1.0f + x2 * s);   // (x times: keeps the sign of a zero)
  const float e = ft_expf(2.0f * (ax < 10.0f ? ax : 10.0f));
  const float big = std::copysign(1.0f - 2.0f / (e + 1.0f), x);
  const float y = ax < 0.25f ? small : big;
  return x != x ? x : y;
}
