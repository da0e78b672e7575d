"""`vecmath.h`'s float32 exp and tanh (what the native backend computes an LSTM cell's gates
with, in SIMD registers) against NumPy over their whole range: within a few ulp, the same
infinities, NaNs and signed zeros, and the loop calling them vectorised by the compiler."""

from __future__ import annotations

import ctypes
import subprocess

import numpy as np
import pytest

from fractal.backends.cxx_build import find_compiler
from fractal.backends.native.executable import FLAGS   # (the backend's own flags: -fwrapv kept GCC 12 from vectorising them)
from fractal.backends.native.scope import VECMATH
from tests.backends.native.conftest import needs_compiler

pytestmark = needs_compiler

SOURCE = VECMATH + """
extern "C" __attribute__((visibility("default"))) void vexp(const float* __restrict__ x, float* __restrict__ y, long n) { for (long i = 0; i < n; ++i) y[i] = ft_expf(x[i]); }
extern "C" __attribute__((visibility("default"))) void vtanh(const float* __restrict__ x, float* __restrict__ y, long n) { for (long i = 0; i < n; ++i) y[i] = ft_tanhf(x[i]); }
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("vecmath")
    (d / "v.cpp").write_text(SOURCE)
    done = subprocess.run([find_compiler().path, *FLAGS, "-fopt-info-vec-optimized", "v.cpp", "-o", "v.so"],
                          cwd=d, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return ctypes.CDLL(str(d / "v.so")), done.stderr


def call(lib, fn, x):
    y = np.empty_like(x)
    getattr(lib, fn)(x.ctypes.data_as(ctypes.c_void_p), y.ctypes.data_as(ctypes.c_void_p), ctypes.c_long(x.size))
    return y


SPECIAL = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 88.7, 88.72, 88.73, -87.3, -100.0, 1e-30, -1e-30, 0.25,
                    -0.25, 0.2499999, 9.99, 10.0, 20.0], np.float32)


@pytest.mark.parametrize("fn, ref, ulps", [("vexp", np.exp, 2.0), ("vtanh", np.tanh, 6.0)])
def test_within_a_few_ulp_of_numpy_with_the_same_special_values(built, fn, ref, ulps):
    lib, _ = built
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-104, 89, 200_000), rng.uniform(-1, 1, 100_000),
                        rng.uniform(-0.3, 0.3, 100_000), SPECIAL]).astype(np.float32)
    got = call(lib, fn, x)
    with np.errstate(all="ignore"):
        exact = ref(x.astype(np.float64))
        normal = np.isfinite(exact) & (np.abs(exact) >= np.finfo(np.float32).tiny) & (np.abs(exact) <= np.finfo(np.float32).max)
        err = np.abs(got[normal].astype(np.float64) - exact[normal]) / np.spacing(np.abs(exact[normal]).astype(np.float32))
        numpy_says = ref(x)
    assert err.max() <= ulps
    special = ~normal
    np.testing.assert_array_equal(np.isnan(got[special]), np.isnan(numpy_says[special]))
    big = special & ~np.isnan(numpy_says) & (np.abs(exact) > 1)
    np.testing.assert_array_equal(got[big], numpy_says[big])        # inf, and tanh's +-1
    zeros = x == 0
    np.testing.assert_array_equal(np.signbit(got[zeros]), np.signbit(numpy_says[zeros]))


def test_the_loops_calling_them_vectorise(built):
    _, log = built
    assert log.count("loop vectorized") >= 2, log
