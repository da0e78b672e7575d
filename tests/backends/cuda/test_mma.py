"""Tensor-core mma.sync (`fractal.backends.cuda.mma`): the device helpers on the emulation, checked
against the PTX ISA's fragment layouts and against NumPy.

* A kernel that fills fragments by the PTX ISA's formulas, written out in the kernel itself, and
  calls the f16, bf16 or tf32 helper computes D = A * B + C bit for bit as a NumPy model of the
  same rounding does (exact products, float32 sums over k in order), on random matrices.
* The same kernel with one register's rows and columns swapped computes a wrong D: a layout bug
  shows.
* The fragment loaders (`ft_load_*`, B row- or column-major, from global or shared memory) give
  the same D; the C++ layout helpers agree with the Python mirror, which covers each matrix once.
* cvt.rna.tf32.f32 is exact: the nearest tf32 value, ties away from zero.
* An mma that not all 32 lanes reach, a warp of 16 threads, lanes calling different mma
  instructions: clear `EmulationError`s.
* The same source compiles for sm_80 and sm_90 with NVRTC and nvcc (where present).
"""

from __future__ import annotations

import os
import shutil
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fractal.backends.cuda import mma
from fractal.backends.cuda.emulation import EmulationError, bfloat16_bits, emulate, from_bfloat16_bits
from fractal.backends.cuda.nvrtc import COMPILERS, compile_cuda, compilers

pytestmark = pytest.mark.skipif(shutil.which(os.environ.get("CXX") or "g++") is None,
                                reason="the CUDA emulation needs a host C++ compiler (g++)")

ELEMENT = {"f16": "__half", "bf16": "__nv_bfloat16"}

# One warp per 16x8 tile of D; A row-major (M x K), B row-major (K x N), C and D row-major.
# The fragments follow the PTX ISA's formulas, with g = groupID and t = threadID_in_group.
HAND_16 = r"""
#define SWAP_REGISTER_1 0
extern "C" __global__ void hand_KIND(const T* A, const T* B, const float* C, float* D, int M, int N, int K) {
  int lane = threadIdx.x, g = lane >> 2, t = lane & 3;
  int r0 = blockIdx.y * 16, c0 = blockIdx.x * 8;
  float acc[4];
  for (int i = 0; i < 4; ++i) acc[i] = C[(r0 + g + 8 * (i >> 1)) * N + c0 + 2 * t + (i & 1)];
  for (int k0 = 0; k0 < K; k0 += 16) {
    unsigned a[4], b[2];
    for (int r = 0; r < 4; ++r) {  // a0 a1 | a2 a3 | a4 a5 | a6 a7
      int row = g + 8 * (r & 1), col = 2 * t + 8 * (r >> 1);
      if (SWAP_REGISTER_1 && r == 1) { int s = row; row = col; col = s; }
      a[r] = ft_bits16(A[(r0 + row) * K + k0 + col]) | (ft_bits16(A[(r0 + row) * K + k0 + col + 1]) << 16);
    }
    for (int r = 0; r < 2; ++r) {  // b0 b1 | b2 b3
      int row = 2 * t + 8 * r;
      b[r] = ft_bits16(B[(k0 + row) * N + c0 + g]) | (ft_bits16(B[(k0 + row + 1) * N + c0 + g]) << 16);
    }
    ft_mma_m16n8k16_KIND_f32(acc, a, b, acc);
  }
  for (int i = 0; i < 4; ++i) D[(r0 + g + 8 * (i >> 1)) * N + c0 + 2 * t + (i & 1)] = acc[i];
}
"""

HAND_TF32 = r"""
extern "C" __global__ void hand_tf32(const float* A, const float* B, const float* C, float* D, int M, int N, int K) {
  int lane = threadIdx.x, g = lane >> 2, t = lane & 3;
  int r0 = blockIdx.y * 16, c0 = blockIdx.x * 8;
  float acc[4];
  for (int i = 0; i < 4; ++i) acc[i] = C[(r0 + g + 8 * (i >> 1)) * N + c0 + 2 * t + (i & 1)];
  for (int k0 = 0; k0 < K; k0 += 8) {
    unsigned a[4], b[2];
    for (int i = 0; i < 4; ++i) a[i] = ft_f32_to_tf32(A[(r0 + g + 8 * (i & 1)) * K + k0 + t + 4 * (i >> 1)]);
    for (int i = 0; i < 2; ++i) b[i] = ft_f32_to_tf32(B[(k0 + t + 4 * i) * N + c0 + g]);
    ft_mma_m16n8k8_tf32_f32(acc, a, b, acc);
  }
  for (int i = 0; i < 4; ++i) D[(r0 + g + 8 * (i >> 1)) * N + c0 + 2 * t + (i & 1)] = acc[i];
}
"""

# The library's loaders: A staged through shared memory, B from global memory, row-major
# (K x N) or column-major (given as N x K) as `b_col` says.
LOADERS = r"""
extern "C" __global__ void loaders_KIND(const T* A, const T* B, const float* C, float* D, int M, int N, int K,
                                        int b_col) {
  __shared__ T As[16][16 + 8];
  int lane = threadIdx.x, r0 = blockIdx.y * 16, c0 = blockIdx.x * 8;
  float acc[4];
  unsigned a[4], b[2];
  ft_load_c_m16n8(acc, C + r0 * N + c0, N, lane);
  for (int k0 = 0; k0 < K; k0 += STEP) {
    for (int e = lane; e < 16 * STEP; e += 32) As[e / STEP][e % STEP] = A[(r0 + e / STEP) * K + k0 + e % STEP];
    __syncwarp();
    LOAD_A(a, &As[0][0], 16 + 8, lane);
    if (b_col) LOAD_B_COL(b, B + c0 * K + k0, K, lane);
    else LOAD_B_ROW(b, B + k0 * N + c0, N, lane);
    MMA(acc, a, b, acc);
    __syncwarp();
  }
  ft_store_d_m16n8(D + r0 * N + c0, N, acc, lane);
}
"""
LOADER_NAMES = {
    "16": dict(STEP="16", LOAD_A="ft_load_a_m16n8k16", LOAD_B_COL="ft_load_b_m16n8k16_col",
               LOAD_B_ROW="ft_load_b_m16n8k16_row"),
    "tf32": dict(STEP="8", LOAD_A="ft_load_a_m16n8k8_tf32", LOAD_B_COL="ft_load_b_m16n8k8_tf32_col",
                 LOAD_B_ROW="ft_load_b_m16n8k8_tf32_row"),
}

LAYOUT = r"""
extern "C" __global__ void layout(int* a16, int* b16, int* a32, int* b32, int* c) {
  int lane = threadIdx.x;
  ft_rc e;
  for (int i = 0; i < 8; ++i) { e = ft_frag_a_m16n8k16(lane, i); a16[(lane * 8 + i) * 2] = e.row; a16[(lane * 8 + i) * 2 + 1] = e.col; }
  for (int i = 0; i < 4; ++i) { e = ft_frag_b_m16n8k16(lane, i); b16[(lane * 4 + i) * 2] = e.row; b16[(lane * 4 + i) * 2 + 1] = e.col; }
  for (int i = 0; i < 4; ++i) { e = ft_frag_a_m16n8k8_tf32(lane, i); a32[(lane * 4 + i) * 2] = e.row; a32[(lane * 4 + i) * 2 + 1] = e.col; }
  for (int i = 0; i < 2; ++i) { e = ft_frag_b_m16n8k8_tf32(lane, i); b32[(lane * 2 + i) * 2] = e.row; b32[(lane * 2 + i) * 2 + 1] = e.col; }
  for (int i = 0; i < 4; ++i) { e = ft_frag_c_m16n8(lane, i); c[(lane * 4 + i) * 2] = e.row; c[(lane * 4 + i) * 2 + 1] = e.col; }
}
extern "C" __global__ void to_tf32(const float* x, unsigned* r, int n) {
  for (int i = threadIdx.x; i < n; i += blockDim.x) r[i] = ft_f32_to_tf32(x[i]);
}
"""


def _loaders(kind: str) -> str:
    names = LOADER_NAMES["tf32" if kind == "tf32" else "16"]
    text = LOADERS.replace("KIND", kind).replace("MMA(", mma.MMAS[kind].helper + "(")
    for old, new in names.items():
        text = text.replace(old, new)
    return text.replace("const T*", f"const {ELEMENT.get(kind, 'float')}*").replace(
        "__shared__ T ", f"__shared__ {ELEMENT.get(kind, 'float')} ")


SOURCE = (mma.DEVICE_CODE
          + "".join(HAND_16.replace("KIND", k).replace("const T*", f"const {ELEMENT[k]}*") for k in ELEMENT)
          + HAND_TF32 + "".join(_loaders(k) for k in mma.MMAS) + LAYOUT)


def operands(kind: str, m: int, n: int, k: int, seed: int, scale: float):
    """(A, B as the kernel takes them, A, B as float32 values the tensor core multiplies, C)."""
    rng = np.random.default_rng(seed)
    a, b = (rng.standard_normal(s).astype(np.float32) * scale for s in ((m, k), (k, n)))
    c = rng.standard_normal((m, n)).astype(np.float32)
    if kind == "f16":
        a, b = a.astype(np.float16), b.astype(np.float16)
        return a, b, a.astype(np.float32), b.astype(np.float32), c
    if kind == "bf16":
        a, b = bfloat16_bits(a), bfloat16_bits(b)
        return a, b, from_bfloat16_bits(a), from_bfloat16_bits(b), c
    return a, b, mma.tf32_round(a), mma.tf32_round(b), c


def model(a: np.ndarray, b: np.ndarray, c: np.ndarray, step: int) -> np.ndarray:
    """D tile by tile, as a warp per 16x8 tile computes it with one mma per `step` of k."""
    d = np.empty_like(c)
    for r in range(0, c.shape[0], mma.M):
        for col in range(0, c.shape[1], mma.N):
            acc = c[r:r + mma.M, col:col + mma.N]
            for k0 in range(0, a.shape[1], step):
                acc = mma.mma_reference(a[r:r + mma.M, k0:k0 + step], b[k0:k0 + step, col:col + mma.N], acc)
            d[r:r + mma.M, col:col + mma.N] = acc
    return d


def run(kernel: str, a, b, c, source: str = SOURCE, extra=()):
    m, n = c.shape
    return emulate(source, kernel, (n // mma.N, m // mma.M), 32,
                   [a, b, c, np.zeros_like(c), m, n, a.shape[1], *extra])[3]


@settings(max_examples=6, deadline=None)
@given(st.sampled_from(list(mma.MMAS)), st.integers(0, 2**32 - 1), st.sampled_from([2.0**-12, 1.0, 2.0**6]),
       st.integers(1, 2), st.integers(1, 2), st.integers(1, 2))
def test_an_mma_gemm_from_the_ptx_layout_matches_the_numpy_model_bit_for_bit(kind, seed, scale, mt, nt, kt):
    step = mma.MMAS[kind].k
    a, b, av, bv, c = operands(kind, 16 * mt, 8 * nt, step * kt, seed, scale)
    d = run(f"hand_{kind}", a, b, c)
    expected = model(av, bv, c, step)
    np.testing.assert_array_equal(d.view(np.uint32), expected.view(np.uint32))
    exact = av.astype(np.float64) @ bv + c  # and close to the exact product of the rounded inputs
    np.testing.assert_allclose(d, exact, rtol=0, atol=1e-5 * (np.abs(av) @ np.abs(bv) + np.abs(c)).max())


def test_tf32_gemm_is_within_tf32_rounding_of_the_float32_product():
    a, b, _, _, c = operands("tf32", 32, 16, 32, 3, 1.0)
    d = run("hand_tf32", a, b, c)
    bound = 2 * 2.0**-11 * (np.abs(a) @ np.abs(b)) + 1e-5 * np.abs(c)  # two operands, half an ulp each
    assert (np.abs(d - (a.astype(np.float64) @ b + c)) <= bound).all()


@pytest.mark.parametrize("kind", list(ELEMENT))
def test_swapping_rows_and_columns_of_one_a_register_gives_a_wrong_d(kind):
    a, b, av, bv, c = operands(kind, 16, 8, 16, 7, 1.0)
    wrong = SOURCE.replace("#define SWAP_REGISTER_1 0", "#define SWAP_REGISTER_1 1")
    d = run(f"hand_{kind}", a, b, c, source=wrong)
    expected = model(av, bv, c, 16)
    assert not np.allclose(d, expected, rtol=1e-2, atol=1e-2)
    np.testing.assert_array_equal(d[:8], expected[:8])  # register 1 holds rows 8..15 of A: rows 0..7 are right


@pytest.mark.parametrize("kind", list(mma.MMAS))
@pytest.mark.parametrize("b_col", [0, 1])
def test_the_fragment_loaders_give_the_same_d_for_b_row_and_column_major(kind, b_col):
    step = mma.MMAS[kind].k
    a, b, av, bv, c = operands(kind, 32, 16, 2 * step, 11, 1.0)
    d = run(f"loaders_{kind}", a, np.ascontiguousarray(b.T) if b_col else b, c, extra=[b_col])
    np.testing.assert_array_equal(d.view(np.uint32), model(av, bv, c, step).view(np.uint32))


def test_the_cpp_layout_helpers_agree_with_the_python_mirror():
    shapes = {"a16": (8, lambda l, i: mma.a_index("f16", l, i)), "b16": (4, lambda l, i: mma.b_index("f16", l, i)),
              "a32": (4, lambda l, i: mma.a_index("tf32", l, i)), "b32": (2, lambda l, i: mma.b_index("tf32", l, i)),
              "c": (4, mma.c_index)}
    out = emulate(SOURCE, "layout", 1, 32, [np.zeros(32 * e * 2, np.int32) for e, _ in shapes.values()])
    for got, (name, (elements, index)) in zip(out, shapes.items()):
        mirror = [index(lane, i) for lane in range(32) for i in range(elements)]
        assert got.reshape(-1, 2).tolist() == [list(p) for p in mirror], name


@pytest.mark.parametrize("kind", list(mma.MMAS))
def test_the_python_mirror_covers_each_matrix_exactly_once(kind):
    k = mma.MMAS[kind].k
    a = sorted(mma.a_index(kind, lane, i) for lane in range(32) for i in range(mma.MMAS[kind].a_elements))
    b = sorted(mma.b_index(kind, lane, i) for lane in range(32) for i in range(mma.MMAS[kind].b_elements))
    c = sorted(mma.c_index(lane, i) for lane in range(32) for i in range(4))
    assert a == [(r, q) for r in range(mma.M) for q in range(k)]
    assert b == [(r, q) for r in range(k) for q in range(mma.N)]
    assert c == [(r, q) for r in range(mma.M) for q in range(mma.N)]


def _tf32_exact(x: np.float32) -> float:
    """The nearest tf32 value to finite `x`, ties away from zero, by exact arithmetic."""
    bits = int(np.float32(x).view(np.uint32))
    down = float(np.uint32(bits & 0xFFFFE000).view(np.float32))  # toward zero
    up = float(np.uint32((bits & 0xFFFFE000) + 0x2000).view(np.float32))  # away from zero: inf past the top
    up_exact = Fraction(up) if np.isfinite(up) else Fraction(2) ** 128 * (-1 if bits >> 31 else 1)
    exact = Fraction(float(x))
    return up if abs(up_exact - exact) <= abs(exact - Fraction(down)) else down


@settings(max_examples=5, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_tf32_rounding_is_to_nearest_with_ties_away_from_zero(seed):
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 0x7F800000, 512, dtype=np.uint64) | (rng.integers(0, 2, 512, dtype=np.uint64) << 31)
    ties = (bits & ~np.uint64(0x1FFF)) | np.uint64(0x1000)
    x = np.concatenate([bits, ties]).astype(np.uint32).view(np.float32)
    x = np.concatenate([x, np.float32([np.inf, -np.inf, np.nan, 3.4028235e38, 1e-45])])
    r = emulate(SOURCE, "to_tf32", 1, 64, [x, np.zeros(x.size, np.uint32), x.size])[1].view(np.float32)
    np.testing.assert_array_equal(r.view(np.uint32), mma.tf32_round(x).view(np.uint32))
    finite = np.isfinite(x[:-5])
    assert [float(v) for v in r[:-5][finite]] == [_tf32_exact(v) for v in x[:-5][finite]]
    assert np.isinf(r[-5:-3]).all() and np.isnan(r[-3]) and np.isinf(r[-2]) and r[-1] == 0


PARTIAL = mma.DEVICE_CODE + r"""
__global__ void partial(float* D, int lanes) {
  unsigned a[4] = {0u, 0u, 0u, 0u}, b[2] = {0u, 0u};
  float d[4], c[4] = {0.f, 0.f, 0.f, 0.f};
  if (threadIdx.x % 32 < lanes) ft_mma_m16n8k16_f16_f32(d, a, b, c);
  else if (lanes < 0) ft_mma_m16n8k16_bf16_f32(d, a, b, c);
  D[threadIdx.x] = d[0];
}
"""


def test_an_mma_that_only_half_the_warp_reaches_is_reported():
    with pytest.raises(EmulationError, match=r"kernel partial: block \(0,0,0\), warp 0: lanes 0xffff0000 of mask "
                       r"0xffffffff never reached mma.sync \(they exited or wait at another barrier\)"):
        emulate(PARTIAL, "partial", 1, 32, [np.zeros(32, np.float32), 16])


def test_an_mma_in_a_warp_of_16_threads_is_reported():
    with pytest.raises(EmulationError, match=r"kernel partial: mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                       r"is a warp-wide instruction that all 32 lanes execute together, but warp 0 has 16 "
                       r"threads \(a block of 16 threads\)"):
        emulate(PARTIAL, "partial", 1, 16, [np.zeros(16, np.float32), 32])


def test_lanes_calling_different_mma_instructions_are_reported():
    with pytest.raises(EmulationError, match=r"kernel partial: lanes of warp 0 called different mma instructions: "
                       r"lane 0 mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32, lane \d+ "
                       r"mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32"):
        emulate(PARTIAL.replace("lanes < 0", "lanes >= 0"), "partial", 1, 32, [np.zeros(32, np.float32), 16])


HAVE = compilers()


@pytest.mark.parametrize("compiler", [pytest.param(c, marks=pytest.mark.skipif(
    c not in HAVE, reason=f"{c} is not available here (NVRTC: pip install 'fractal-tensor[cuda]'; nvcc: a CUDA "
                          "toolkit)")) for c in COMPILERS])
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_the_same_source_compiles_for_the_gpu(compiler, arch):
    cubin = compile_cuda(SOURCE + PARTIAL.replace(mma.DEVICE_CODE, ""), arch, compiler=compiler, name="mma.cu")
    assert cubin[:4] == b"\x7fELF"
    for kernel in ("hand_f16", "hand_bf16", "hand_tf32", "loaders_f16", "loaders_bf16", "loaders_tf32", "partial"):
        assert kernel.encode() in cubin


def test_the_docstring_prints_an_mma_helper_as_device_code_has_it():
    start = mma.DEVICE_CODE.index("__device__ __forceinline__ void ft_mma_m16n8k16_f16_f32(")
    helper = mma.DEVICE_CODE[start:mma.DEVICE_CODE.index("\n}\n", start) + 2]
    assert "\n".join("    " + line if line else line for line in helper.splitlines()) in mma.__doc__
