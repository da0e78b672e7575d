r"""Tensor-core `mma.sync` for generated kernels: the CUDA C++ of small device helpers
(`DEVICE_CODE`), and a Python mirror of their fragment layouts (for tests and the emitter).

Three instructions, each D (16x8, f32) = A (16xK) * B (Kx8) + C (16x8, f32), one warp:

    ft_mma_m16n8k16_f16_f32(d, a, b, c)    mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32
    ft_mma_m16n8k16_bf16_f32(d, a, b, c)   mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
    ft_mma_m16n8k8_tf32_f32(d, a, b, c)    mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32

with `float d[4], const unsigned a[4], const unsigned b[2], const float c[4]` per lane.  On a GPU
each is the inline PTX; in the emulation (`__FT_EMULATION__`, cuda_emu_mma.h) a warp collective
that assembles A, B and C by the PTX ISA's lane layout and computes D in float.  Where each lane's
registers come from ("Matrix Fragments for mma.m16n8k16 / mma.m16n8k8" in the PTX ISA), with
g = lane / 4 (groupID) and t = lane % 4 (threadID_in_group):

    f16/bf16 A, element i (register i / 2, low half first): row g + 8 * (i / 2 % 2), col 2t + i % 2 + 8 * (i / 4)
    f16/bf16 B, element i (register i / 2):                 row 2t + i % 2 + 8 * (i / 2), col g
    tf32 A, register i:                                     row g + 8 * (i % 2), col t + 4 * (i / 2)
    tf32 B, register i:                                     row t + 4 * i, col g
    C and D, register i:                                    row g + 8 * (i / 2), col 2t + i % 2

The helpers `ft_frag_{a,b}_m16n8k16`, `ft_frag_{a,b}_m16n8k8_tf32` and `ft_frag_c_m16n8` give
(row, col) for (lane, element) as `ft_rc`, and loaders fill whole fragments from a tile in memory
(a global pointer or a `__shared__` array; `lda`: its row stride): A row-major (MxK), B row-major
(KxN, `_row`) or column-major (element (k, n) at `B[n * ldb + k]`, `_col`).  A GEMM tile, one warp:

    unsigned a[4], b[2];
    float acc[4] = {0.f, 0.f, 0.f, 0.f};
    int lane = threadIdx.x % 32;
    for (int k0 = 0; k0 < K; k0 += 16) {
      ft_load_a_m16n8k16(a, A + row0 * K + k0, K, lane);   // __half or __nv_bfloat16 tiles
      ft_load_b_m16n8k16_row(b, B + k0 * N + col0, N, lane);
      ft_mma_m16n8k16_f16_f32(acc, a, b, acc);
    }
    ft_store_d_m16n8(C + row0 * N + col0, N, acc, lane);

`lane` is the thread's linear index in its block modulo 32 (its lane in the warp).  TF32
operands are rounded by `ft_f32_to_tf32` (cvt.rna.tf32.f32: to nearest, ties away from zero) as
the tf32 loaders fill the registers; the tensor core reads a register's upper 19 bits.
`DEVICE_CODE` goes once into a kernel source (it includes cuda_fp16.h and cuda_bf16.h, and
guards against a second copy); each mma helper in it reads, printed:

    __device__ __forceinline__ void ft_mma_m16n8k16_f16_f32(float d[4], const unsigned a[4], const unsigned b[2], const float c[4]) {
    #if defined(__CUDA_ARCH__)
      asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};\n"
                   : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                   : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]),
                     "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
    #elif defined(__FT_EMULATION__)
      ::__ft::mma_sync(::__ft::MmaKind::f16, d, a, b, c);
    #endif
    }
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

M, N = 16, 8


@dataclass(frozen=True)
class Mma:
    """One mma.sync instruction: its helper, its PTX, K, and elements per lane of A and B."""
    helper: str
    ptx: str
    k: int
    a_elements: int
    b_elements: int


MMAS = {
    "f16": Mma("ft_mma_m16n8k16_f16_f32", "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32", 16, 8, 4),
    "bf16": Mma("ft_mma_m16n8k16_bf16_f32", "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32", 16, 8, 4),
    "tf32": Mma("ft_mma_m16n8k8_tf32_f32", "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32", 8, 4, 2),
}


def a_index(kind: str, lane: int, i: int) -> tuple[int, int]:
    """(row, col) in A of element `i` of `lane`'s A fragment (f16/bf16: register i // 2, half i % 2)."""
    g, t = lane // 4, lane % 4
    if kind == "tf32":
        return g + 8 * (i % 2), t + 4 * (i // 2)
    return g + 8 * (i // 2 % 2), 2 * t + i % 2 + 8 * (i // 4)


def b_index(kind: str, lane: int, i: int) -> tuple[int, int]:
    """(row, col) in B (K x 8) of element `i` of `lane`'s B fragment."""
    g, t = lane // 4, lane % 4
    if kind == "tf32":
        return t + 4 * i, g
    return 2 * t + i % 2 + 8 * (i // 2), g


def c_index(lane: int, i: int) -> tuple[int, int]:
    """(row, col) in C and D (16 x 8) of register `i` of `lane`'s accumulator fragment."""
    g, t = lane // 4, lane % 4
    return g + 8 * (i // 2), 2 * t + i % 2


def tf32_round(x) -> np.ndarray:
    """float32 values rounded as cvt.rna.tf32.f32 does: 10 mantissa bits, ties away from zero
    (NaN becomes the canonical NaN 0x7fffffff)."""
    bits = np.asarray(x, np.float32).view(np.uint32)
    out = (bits + np.uint32(0x1000)) & np.uint32(0xFFFFE000)
    out = np.where((bits & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000), np.uint32(0x7FFFFFFF), out)
    return out.astype(np.uint32).view(np.float32)


def mma_reference(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """D = A * B + C as the emulation computes it: float32 sums over k in order, starting from
    C, of products that are exact in float32 (A and B hold f16, bf16 or tf32 values)."""
    d = np.array(c, np.float32)
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    for k in range(a.shape[1]):
        d = d + a[:, k:k + 1] * b[k:k + 1, :]
    return d


DEVICE_CODE = r"""
#ifndef FT_MMA_HELPERS
#define FT_MMA_HELPERS
#include <cuda_fp16.h>
#include <cuda_bf16.h>
// mma.sync helpers (fractal/backends/cuda/mma.py); g = lane / 4, t = lane % 4.
struct ft_rc { int row, col; };
__device__ __forceinline__ ft_rc ft_frag_a_m16n8k16(int lane, int i) {
  return {lane / 4 + 8 * ((i >> 1) & 1), 2 * (lane % 4) + (i & 1) + 8 * (i >> 2)};
}
__device__ __forceinline__ ft_rc ft_frag_b_m16n8k16(int lane, int i) {
  return {2 * (lane % 4) + (i & 1) + 8 * (i >> 1), lane / 4};
}
__device__ __forceinline__ ft_rc ft_frag_a_m16n8k8_tf32(int lane, int i) {
  return {lane / 4 + 8 * (i & 1), lane % 4 + 4 * (i >> 1)};
}
__device__ __forceinline__ ft_rc ft_frag_b_m16n8k8_tf32(int lane, int i) { return {lane % 4 + 4 * i, lane / 4}; }
__device__ __forceinline__ ft_rc ft_frag_c_m16n8(int lane, int i) {
  return {lane / 4 + 8 * (i >> 1), 2 * (lane % 4) + (i & 1)};
}

__device__ __forceinline__ unsigned ft_bits16(__half x) { return __half_as_ushort(x); }
__device__ __forceinline__ unsigned ft_bits16(__nv_bfloat16 x) { return __bfloat16_as_ushort(x); }
template <class T> __device__ __forceinline__ unsigned ft_pack16x2(T lo, T hi) {
  return ft_bits16(lo) | (ft_bits16(hi) << 16);
}
__device__ __forceinline__ unsigned ft_f32_to_tf32(float x) {
#if defined(__CUDA_ARCH__)
  unsigned r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
#elif defined(__FT_EMULATION__)
  return ::__ft::f32_to_tf32(x);
#else
  return 0u;  // (host compilation of device code: never called)
#endif
}

// Fragments from a tile whose (0, 0) is at p, rows `ld` elements apart.
template <class P> __device__ __forceinline__ void ft_load_a_m16n8k16(unsigned a[4], P p, int ld, int lane) {
  for (int r = 0; r < 4; ++r) {
    ft_rc lo = ft_frag_a_m16n8k16(lane, 2 * r), hi = ft_frag_a_m16n8k16(lane, 2 * r + 1);
    a[r] = ft_pack16x2(p[lo.row * ld + lo.col], p[hi.row * ld + hi.col]);
  }
}
template <class P> __device__ __forceinline__ void ft_load_b_m16n8k16_row(unsigned b[2], P p, int ld, int lane) {
  for (int r = 0; r < 2; ++r) {
    ft_rc lo = ft_frag_b_m16n8k16(lane, 2 * r), hi = ft_frag_b_m16n8k16(lane, 2 * r + 1);
    b[r] = ft_pack16x2(p[lo.row * ld + lo.col], p[hi.row * ld + hi.col]);
  }
}
template <class P> __device__ __forceinline__ void ft_load_b_m16n8k16_col(unsigned b[2], P p, int ld, int lane) {
  for (int r = 0; r < 2; ++r) {
    ft_rc lo = ft_frag_b_m16n8k16(lane, 2 * r), hi = ft_frag_b_m16n8k16(lane, 2 * r + 1);
    b[r] = ft_pack16x2(p[lo.col * ld + lo.row], p[hi.col * ld + hi.row]);
  }
}
template <class P> __device__ __forceinline__ void ft_load_a_m16n8k8_tf32(unsigned a[4], P p, int ld, int lane) {
  for (int i = 0; i < 4; ++i) { ft_rc e = ft_frag_a_m16n8k8_tf32(lane, i); a[i] = ft_f32_to_tf32(p[e.row * ld + e.col]); }
}
template <class P> __device__ __forceinline__ void ft_load_b_m16n8k8_tf32_row(unsigned b[2], P p, int ld, int lane) {
  for (int i = 0; i < 2; ++i) { ft_rc e = ft_frag_b_m16n8k8_tf32(lane, i); b[i] = ft_f32_to_tf32(p[e.row * ld + e.col]); }
}
template <class P> __device__ __forceinline__ void ft_load_b_m16n8k8_tf32_col(unsigned b[2], P p, int ld, int lane) {
  for (int i = 0; i < 2; ++i) { ft_rc e = ft_frag_b_m16n8k8_tf32(lane, i); b[i] = ft_f32_to_tf32(p[e.col * ld + e.row]); }
}
template <class P> __device__ __forceinline__ void ft_load_c_m16n8(float c[4], P p, int ld, int lane) {
  for (int i = 0; i < 4; ++i) { ft_rc e = ft_frag_c_m16n8(lane, i); c[i] = p[e.row * ld + e.col]; }
}
template <class P> __device__ __forceinline__ void ft_store_d_m16n8(P p, int ld, const float d[4], int lane) {
  for (int i = 0; i < 4; ++i) { ft_rc e = ft_frag_c_m16n8(lane, i); p[e.row * ld + e.col] = d[i]; }
}
""" + "".join(f"""
__device__ __forceinline__ void {m.helper}(float d[4], const unsigned a[4], const unsigned b[2], const float c[4]) {{
#if defined(__CUDA_ARCH__)
  asm volatile("{m.ptx} {{%0, %1, %2, %3}}, {{%4, %5, %6, %7}}, {{%8, %9}}, {{%10, %11, %12, %13}};\\n"
               : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]),
                 "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
#elif defined(__FT_EMULATION__)
  ::__ft::mma_sync(::__ft::MmaKind::{kind}, d, a, b, c);
#endif
}}
""" for kind, m in MMAS.items()) + "#endif  // FT_MMA_HELPERS\n"
