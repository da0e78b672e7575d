"""`kernels.h`'s register-blocked small product (a point's GEMM in the native backend) against
NumPy: any sizes (edges of every width), transposed and strided operands, `=` and `+=`."""

from __future__ import annotations

import ctypes
import subprocess

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

from fractal.backends.cxx_build import find_compiler
from fractal.backends.native.scope import KERNELS
from tests.backends.native.conftest import needs_compiler

pytestmark = needs_compiler

SOURCE = KERNELS + """
#define WRAP(name, T) extern "C" void name(long long m, long long n, long long k, const T* A, long long ra, \\
    long long ca, const T* B, long long rb, long long cb, T* C, long long rc, long long cc, int acc) { \\
  ft_small_gemm<T>(m, n, k, A, ra, ca, B, rb, cb, C, rc, cc, acc != 0); }
WRAP(gemm_f32, float)
WRAP(gemm_f64, double)
"""


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    d = tmp_path_factory.mktemp("kernels")
    (d / "k.cpp").write_text(SOURCE)
    done = subprocess.run([find_compiler().path, "-std=c++17", "-O2", "-march=native", "-shared", "-fPIC", "-Wall",
                           "-Werror", "k.cpp", "-o", "k.so"], cwd=d, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return ctypes.CDLL(str(d / "k.so"))


def strided(a: np.ndarray):
    """A view's pointer and element strides."""
    return a.ctypes.data, *(s // a.itemsize for s in a.strides)


@settings(max_examples=60, deadline=None)
@given(m=st.integers(0, 40), n=st.integers(0, 70), k=st.integers(0, 40), trans_a=st.booleans(),
       trans_b=st.booleans(), accumulate=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]),
       pad=st.integers(0, 3))
@example(m=64, n=64, k=1, trans_a=True, trans_b=False, accumulate=True, dtype=np.float32, pad=0)   # (an outer product)
@example(m=7, n=512, k=3, trans_a=False, trans_b=False, accumulate=False, dtype=np.float32, pad=0)  # (B's rows 2 KiB apart: packed)
@example(m=13, n=48, k=64, trans_a=False, trans_b=True, accumulate=True, dtype=np.float64, pad=1)  # (B^T packed along its columns)
@example(m=13, n=70, k=37, trans_a=False, trans_b=True, accumulate=False, dtype=np.float32, pad=1)  # (B^T in 8 x 8 blocks, and tails)
def test_the_small_product_equals_numpy(lib, m, n, k, trans_a, trans_b, accumulate, dtype, pad):
    rng = np.random.default_rng(m * 10007 + n * 101 + k)
    # operands inside bigger arrays (row strides beyond their widths), transposed views where asked
    a_store = rng.standard_normal((k, m + pad) if trans_a else (m, k + pad)).astype(dtype)
    b_store = rng.standard_normal((n, k + pad) if trans_b else (k, n + pad)).astype(dtype)
    a = a_store[:, :m].T if trans_a else a_store[:, :k]
    b = b_store[:, :k].T if trans_b else b_store[:, :n]
    c_store = rng.standard_normal((m, n + pad)).astype(dtype)
    c = c_store[:, :n]
    want = (c.astype(np.float64) if accumulate else 0) + a.astype(np.float64) @ b.astype(np.float64)
    before = c_store.copy()
    fn = lib.gemm_f32 if dtype == np.float32 else lib.gemm_f64
    pa, ra, ca = strided(a)
    pb, rb, cb = strided(b)
    pc, rc, cc = strided(c)
    fn(*(ctypes.c_longlong(x) for x in (m, n, k)), ctypes.c_void_p(pa), ctypes.c_longlong(ra), ctypes.c_longlong(ca),
       ctypes.c_void_p(pb), ctypes.c_longlong(rb), ctypes.c_longlong(cb), ctypes.c_void_p(pc), ctypes.c_longlong(rc),
       ctypes.c_longlong(cc), ctypes.c_int(int(accumulate)))
    tol = 1e-5 * (k + 1) if dtype == np.float32 else 1e-12 * (k + 1)
    np.testing.assert_allclose(c, want, rtol=tol, atol=tol)
    np.testing.assert_array_equal(c_store[:, n:], before[:, n:])   # nothing written beside C
