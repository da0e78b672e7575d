// cuda_emu_half.h: __half and __nv_bfloat16 for the CUDA emulation (included by cuda_emu.h, in
// place of cuda_fp16.h and cuda_bf16.h, whose #include lines the emulation drops).
//
// Each type is 16 bits of storage.  Conversions from float round to nearest, ties to even, exactly
// (float -> __half matches NumPy's float16 astype bit for bit, NaN payloads included: the upper
// payload bits are kept, and a payload that would vanish becomes 1; float -> __nv_bfloat16 keeps
// a NaN's upper half with the quiet bit set); from double and integers too, through a float
// rounded to odd (so rounding once).  Conversions to float are exact.  Arithmetic
// computes in float and rounds once to the 16-bit type: exact, since a float holds 24 bits, at
// least 2p + 2 for p = 11 (fp16) and p = 8 (bf16), so rounding twice equals rounding once for
// + - * /.  Comparisons compare the float values (NaN compares unequal, as on a GPU).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace __ft {

inline uint32_t f32_bits(float f) { uint32_t x; std::memcpy(&x, &f, 4); return x; }
inline float f32_from(uint32_t x) { float f; std::memcpy(&f, &x, 4); return f; }

// Rounds the `drop` low bits of `m` away, to nearest, ties to even.
inline uint32_t round_shift(uint32_t m, unsigned drop) {
  uint32_t kept = m >> drop, rest = m & ((1u << drop) - 1), half = 1u << (drop - 1);
  return kept + (rest > half || (rest == half && (kept & 1)));
}

inline uint16_t float_to_half_bits(float f) {
  uint32_t x = f32_bits(f), ax = x & 0x7fffffffu;
  uint16_t sign = uint16_t((x >> 16) & 0x8000u);
  if (ax > 0x7f800000u) {  // NaN: the upper 10 payload bits, never 0 (that would read as inf)
    uint16_t m = uint16_t((ax & 0x7fffffu) >> 13);
    return uint16_t(sign | 0x7c00u | (m ? m : 1));
  }
  if (ax >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // 65520 and up (and inf): inf
  if (ax >= 0x38800000u) return uint16_t(sign | round_shift(ax - (112u << 23), 13));  // normal
  if (ax <= 0x33000000u) return sign;  // at most 2^-25 (a tie, to the even 0): zero
  uint32_t m = (ax & 0x7fffffu) | 0x800000u;  // subnormal: m * 2^(e - 150) in units of 2^-24
  return uint16_t(sign | round_shift(m, 126 - (ax >> 23)));
}

inline float half_bits_to_float(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0x1f) return f32_from(sign | 0x7f800000u | (m << 13));
  if (e) return f32_from(sign | ((e + 112) << 23) | (m << 13));
  float v = std::ldexp(float(m), -24);  // subnormal (or zero): exact in float
  return sign ? -v : v;
}

inline uint16_t float_to_bfloat16_bits(float f) {
  uint32_t x = f32_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x40u);  // NaN stays NaN
  return uint16_t((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

inline float bfloat16_bits_to_float(uint16_t b) { return f32_from(uint32_t(b) << 16); }

// A double rounded to float to odd (toward zero, the last bit set when inexact): rounding that
// float to a 16-bit type then equals rounding the double directly (24 bits >= p + 2).
inline float double_to_float_odd(double d) {
  float f = float(d);
  if (double(f) == d || std::isnan(d)) return f;
  if (std::fabs(double(f)) > std::fabs(d)) f = std::nextafter(f, 0.0f);
  return f32_from(f32_bits(f) | 1u);
}

}  // namespace __ft

struct __half {
  uint16_t __x;
  __half() = default;
  __half(float f) : __x(::__ft::float_to_half_bits(f)) {}
  __half(double d) : __half(::__ft::double_to_float_odd(d)) {}
  template <class I, class = std::enable_if_t<std::is_integral<I>::value>> __half(I i) : __half(double(i)) {}
  operator float() const { return ::__ft::half_bits_to_float(__x); }
};

struct __nv_bfloat16 {
  uint16_t __x;
  __nv_bfloat16() = default;
  __nv_bfloat16(float f) : __x(::__ft::float_to_bfloat16_bits(f)) {}
  __nv_bfloat16(double d) : __nv_bfloat16(::__ft::double_to_float_odd(d)) {}
  template <class I, class = std::enable_if_t<std::is_integral<I>::value>> __nv_bfloat16(I i) : __nv_bfloat16(double(i)) {}
  operator float() const { return ::__ft::bfloat16_bits_to_float(__x); }
};

using half = __half;
using nv_bfloat16 = __nv_bfloat16;
static_assert(sizeof(__half) == 2 && sizeof(__nv_bfloat16) == 2, "16-bit storage");

inline __half __float2half(float f) { return __half(f); }
inline __half __float2half_rn(float f) { return __half(f); }
inline __half __double2half(double d) { return __half(d); }
inline float __half2float(__half h) { return float(h); }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline __half __ushort_as_half(unsigned short u) { __half h; h.__x = u; return h; }
inline __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16(f); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16(f); }
inline __nv_bfloat16 __double2bfloat16(double d) { return __nv_bfloat16(d); }
inline float __bfloat162float(__nv_bfloat16 b) { return float(b); }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.__x; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { __nv_bfloat16 b; b.__x = u; return b; }

// The intrinsics and operators of cuda_fp16.h / cuda_bf16.h that kernels use, for both types.
#define FT_HALF_OPS(T)                                                                              \
  inline T __hadd(T a, T b) { return T(float(a) + float(b)); }                                     \
  inline T __hsub(T a, T b) { return T(float(a) - float(b)); }                                     \
  inline T __hmul(T a, T b) { return T(float(a) * float(b)); }                                     \
  inline T __hdiv(T a, T b) { return T(float(a) / float(b)); }                                     \
  inline T __hneg(T a) { T r = a; r.__x ^= 0x8000u; return r; }                                    \
  inline T __habs(T a) { T r = a; r.__x &= 0x7fffu; return r; }                                    \
  inline T __hmax(T a, T b) { return T(std::fmax(float(a), float(b))); }                           \
  inline T __hmin(T a, T b) { return T(std::fmin(float(a), float(b))); }                           \
  inline bool __heq(T a, T b) { return float(a) == float(b); }                                     \
  inline bool __hne(T a, T b) { return float(a) != float(b) && !std::isnan(float(a)) && !std::isnan(float(b)); } \
  inline bool __hlt(T a, T b) { return float(a) < float(b); }                                      \
  inline bool __hle(T a, T b) { return float(a) <= float(b); }                                     \
  inline bool __hgt(T a, T b) { return float(a) > float(b); }                                      \
  inline bool __hge(T a, T b) { return float(a) >= float(b); }                                     \
  inline bool __hisnan(T a) { return std::isnan(float(a)); }                                       \
  inline T operator+(const T& a, const T& b) { return __hadd(a, b); }                              \
  inline T operator-(const T& a, const T& b) { return __hsub(a, b); }                              \
  inline T operator*(const T& a, const T& b) { return __hmul(a, b); }                              \
  inline T operator/(const T& a, const T& b) { return __hdiv(a, b); }                              \
  inline T operator-(const T& a) { return __hneg(a); }                                             \
  inline T& operator+=(T& a, const T& b) { return a = __hadd(a, b); }                              \
  inline T& operator-=(T& a, const T& b) { return a = __hsub(a, b); }                              \
  inline T& operator*=(T& a, const T& b) { return a = __hmul(a, b); }                              \
  inline T& operator/=(T& a, const T& b) { return a = __hdiv(a, b); }                              \
  inline bool operator==(const T& a, const T& b) { return float(a) == float(b); }                  \
  inline bool operator!=(const T& a, const T& b) { return float(a) != float(b); }                  \
  inline bool operator<(const T& a, const T& b) { return float(a) < float(b); }                    \
  inline bool operator<=(const T& a, const T& b) { return float(a) <= float(b); }                  \
  inline bool operator>(const T& a, const T& b) { return float(a) > float(b); }                    \
  inline bool operator>=(const T& a, const T& b) { return float(a) >= float(b); }
FT_HALF_OPS(__half)
FT_HALF_OPS(__nv_bfloat16)
#undef FT_HALF_OPS
