"""16-bit floats in the CUDA emulation (cuda_emu_half.h): `__half` and `__nv_bfloat16` as
kernels use them, with conversions exact to the bit.

* float -> __half matches NumPy's float16 astype bit for bit: normals, subnormals, ties (to even),
  overflow to inf, inf, NaN payloads; __half -> float is exact.
* float -> __nv_bfloat16 rounds as the C++ emitter's constants do (`codegen.elementwise._bfloat16`).
* A kernel takes `__half*` (float16 arrays) and `__nv_bfloat16*` (uint16 arrays of bfloat16 bits),
  with `#include <cuda_fp16.h>` / `<cuda_bf16.h>` as on a GPU; arithmetic rounds once.
* Code can tell the emulation from a GPU by `__FT_EMULATION__`.
* The same kernels compile for sm_80 and sm_90 with NVRTC and nvcc (where present), against the
  real cuda_fp16.h and cuda_bf16.h.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fractal.backends.codegen.elementwise import _bfloat16
from fractal.backends.cuda.emulation import EmulationError, bfloat16_bits, emulate, from_bfloat16_bits
from fractal.backends.cuda.nvrtc import COMPILERS, compile_cuda, compilers

pytestmark = pytest.mark.skipif(shutil.which(os.environ.get("CXX") or "g++") is None,
                                reason="the CUDA emulation needs a host C++ compiler (g++)")

CONVERT = r"""
#include <cuda_fp16.h>
#include <cuda_bf16.h>
extern "C" __global__ void convert(const float* x, __half* h, __nv_bfloat16* b, float* h_back, float* b_back,
                                   int n) {
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    h[i] = __float2half(x[i]);
    b[i] = __float2bfloat16(x[i]);
    h_back[i] = __half2float(h[i]);
    b_back[i] = __bfloat162float(b[i]);
  }
}
"""


def convert(x: np.ndarray):
    n = x.size
    _, h, b, h_back, b_back = emulate(CONVERT, "convert", 1, 64, [
        x, np.zeros(n, np.float16), np.zeros(n, np.uint16), np.zeros(n, np.float32), np.zeros(n, np.float32), n])
    return h, b, h_back, b_back


def to_half(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # (overflow to inf is among the cases)
        return x.astype(np.float16)


def bits32(values) -> np.ndarray:
    return np.asarray(values, np.uint32).view(np.float32)


def hard_cases() -> np.ndarray:
    """Every float16 value, every midpoint between neighbours (the ties), and points just off
    them; the overflow threshold; the subnormal boundaries; inf and quiet and signalling NaNs."""
    h = np.arange(0x10000, dtype=np.uint32).astype(np.uint16).view(np.float16)
    h = h[np.isfinite(h)].astype(np.float32)
    h = np.unique(h)
    mid = (h[:-1].astype(np.float64) + h[1:]) / 2
    mid = mid.astype(np.float32)
    near = np.concatenate([np.nextafter(mid, np.float32(np.inf)), np.nextafter(mid, np.float32(-np.inf))])
    edges = np.array([65504, 65519.996, 65520, 65536, 2.0**-24, 2.0**-25, 2.0**-25 * 1.0000001, 2.0**-26,
                      2.0**-14, 2.0**-14 * (1 - 2.0**-11), 1e-45, np.inf, -np.inf], np.float32)
    nans = bits32([0x7FC00000, 0xFFC00001, 0x7F800001, 0x7FA00000, 0xFF802000, 0x7FFFFFFF])
    return np.concatenate([h, mid, near, edges, -edges, nans])


def test_float_to_half_matches_numpy_bit_for_bit_on_every_tie_and_edge():
    x = hard_cases()
    h, _, h_back, _ = convert(x)
    np.testing.assert_array_equal(h.view(np.uint16), to_half(x).view(np.uint16))
    np.testing.assert_array_equal(h_back.view(np.uint32), h.astype(np.float32).view(np.uint32))


@settings(max_examples=5, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_float_to_half_matches_numpy_bit_for_bit_on_random_bit_patterns(seed):
    rng = np.random.default_rng(seed)
    x = bits32(rng.integers(0, 2**32, 4096, dtype=np.uint64))
    small = rng.uniform(-2.0**-13, 2.0**-13, 1024).astype(np.float32)  # the subnormal range, densely
    x = np.concatenate([x, small])
    h, b, _, b_back = convert(x)
    np.testing.assert_array_equal(h.view(np.uint16), to_half(x).view(np.uint16))
    finite = np.isfinite(x)
    expected = np.array([_bfloat16(v) for v in x[finite]], np.float32)
    np.testing.assert_array_equal(b_back[finite].view(np.uint32), expected.view(np.uint32))
    np.testing.assert_array_equal(b, bfloat16_bits(x))
    assert np.isnan(b_back[np.isnan(x)]).all()


def test_bfloat16_rounds_ties_to_even_and_overflows_to_inf():
    x = bits32([0x3F808000, 0x3F818000, 0x3F808001, 0x7F7FFFFF, 0x7F7F7FFF, 0x00008000, 0x80018000])
    _, b, _, b_back = convert(x)
    assert b.tolist() == [0x3F80, 0x3F82, 0x3F81, 0x7F80, 0x7F7F, 0x0000, 0x8002]
    np.testing.assert_array_equal(b_back, from_bfloat16_bits(b))


ARITH = r"""
#include <cuda_fp16.h>
#include <cuda_bf16.h>
__global__ void arith(const __half* x, const __half* y, const __nv_bfloat16* p, const __nv_bfloat16* q,
                      __half* h_out, __nv_bfloat16* b_out, int* cmp, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  __half a = x[i], b = y[i];
  h_out[4 * i + 0] = a + b;
  h_out[4 * i + 1] = __hmul(a, b);
  h_out[4 * i + 2] = a / b;
  h_out[4 * i + 3] = __hmax(-a, b);
  b_out[2 * i + 0] = __hadd(p[i], q[i]);
  b_out[2 * i + 1] = p[i] * q[i];
  cmp[i] = (a < b) + 2 * __heq(a, b) + 4 * (p[i] >= q[i]) + 8 * __hisnan(a);
#ifdef __FT_EMULATION__
  cmp[i] += 16;
#endif
}
"""


def test_half_and_bfloat16_arithmetic_rounds_once_and_compares_as_numbers():
    rng = np.random.default_rng(1)
    n = 64
    x = (rng.standard_normal(n) * 100).astype(np.float16)
    y = (rng.standard_normal(n) * 100).astype(np.float16)
    y[:4] = x[:4]
    x[5] = np.nan
    p, q = bfloat16_bits(rng.standard_normal(n)), bfloat16_bits(rng.standard_normal(n))
    h, b, cmp = emulate(ARITH, "arith", 2, 32, [x, y, p, q, np.zeros(4 * n, np.float16),
                                                  np.zeros(2 * n, np.uint16), np.zeros(n, np.int32), n])[4:]
    xf, yf = x.astype(np.float32), y.astype(np.float32)
    expect = np.stack([xf + yf, xf * yf, xf / yf, np.fmax(-xf, yf)], axis=1).astype(np.float16)
    np.testing.assert_array_equal(h.view(np.uint16), expect.reshape(-1).view(np.uint16))
    pf, qf = from_bfloat16_bits(p), from_bfloat16_bits(q)
    np.testing.assert_array_equal(b, bfloat16_bits(np.stack([pf + qf, pf * qf], axis=1).reshape(-1)))
    with np.errstate(invalid="ignore"):
        flags = (xf < yf) + 2 * (xf == yf) + 4 * (pf >= qf) + 8 * np.isnan(xf) + 16
    np.testing.assert_array_equal(cmp, flags)


def test_a_bfloat16_pointer_takes_uint16_bits_not_floats():
    with pytest.raises(EmulationError, match=r"kernel arith: parameter 'p' is __nv_bfloat16\* and takes "
                       r"uint16 arrays, got float32"):
        emulate(ARITH, "arith", 1, 32, [np.zeros(1, np.float16), np.zeros(1, np.float16), np.zeros(1, np.float32),
                                       np.zeros(1, np.uint16), np.zeros(4, np.float16), np.zeros(2, np.uint16),
                                       np.zeros(1, np.int32), 1])


@pytest.mark.parametrize("compiler", [pytest.param(c, marks=pytest.mark.skipif(
    c not in compilers(), reason=f"{c} is not available here (NVRTC: pip install 'fractal-tensor[cuda]'; nvcc: a "
                                 "CUDA toolkit)")) for c in COMPILERS])
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_the_same_kernels_compile_for_the_gpu(compiler, arch):
    for source, kernel in ((CONVERT, b"convert"), (ARITH, b"arith")):
        assert kernel in compile_cuda(source, arch, compiler=compiler)
