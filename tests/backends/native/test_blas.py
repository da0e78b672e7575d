"""`gemm_prelude` compiled by g++ computes NumPy's row-major GEMM on the BLAS `find_blas`
found (bound at load time), on the Fortran interface, and on its loops (no BLAS, unbound
slots, leading dimensions BLAS rejects): all four transposes, sub-matrix leading dimensions,
beta 0 and 1, m/n/k of 0 and 1."""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fractal.backends.codegen import HOST
from fractal.backends.native import blas as blas_module
from fractal.backends.native.blas import (Blas, bind, blas_threads, find_blas, gemm_prelude, get_threads,
                                          set_threads, why_no_blas)

GXX = shutil.which("g++")
LL = ctypes.c_longlong
WRAPPERS = "".join(f"""
extern "C" __attribute__((visibility("default")))
void gemm_{t}(int ta, int tb, long long m, long long n, long long k, {c} alpha, const {c}* a, long long lda,
              const {c}* b, long long ldb, {c} beta, {c}* c, long long ldc) {{
  ft_gemm_{t}(ta != 0, tb != 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}}
""" for t, c in (("f32", "float"), ("f64", "double")))


def compile_prelude(tmp_path_factory, name: str, prelude: str) -> ctypes.CDLL:
    """`prelude` + the wrappers as a shared library (hidden visibility: the setter must still export)."""
    if GXX is None:
        pytest.skip("g++ is not installed: the generated C++ cannot be compiled")
    d = tmp_path_factory.mktemp(f"blas_{name}")
    src, lib = d / f"{name}.cpp", d / f"lib{name}.so"
    src.write_text(prelude + WRAPPERS)
    run = subprocess.run([GXX, "-std=c++17", "-O1", "-shared", "-fPIC", "-fvisibility=hidden", "-Wall", "-Wextra",
                          "-Werror", "-Wno-unused-function", "-o", str(lib), str(src)], capture_output=True, text=True)
    assert run.returncode == 0, f"g++ failed on {src}:\n{run.stderr[:4000]}"
    lib = ctypes.CDLL(str(lib))
    for t, real in (("f32", ctypes.c_float), ("f64", ctypes.c_double)):
        fn = getattr(lib, f"gemm_{t}")
        fn.argtypes = [ctypes.c_int, ctypes.c_int, LL, LL, LL, real, ctypes.c_void_p, LL, ctypes.c_void_p, LL,
                       real, ctypes.c_void_p, LL]
        fn.restype = None
    return lib


def fortran_blas() -> Blas | None:
    """NumPy's OpenBLAS through its Fortran sgemm_/dgemm_ (ILP64): the Fortran prelude without SciPy."""
    found = find_blas()
    if found is None or found.int_bits != 64 or "openblas" not in found.library:
        return None
    lib = ctypes.CDLL(found.library)
    try:
        s, d = (ctypes.cast(getattr(lib, f"scipy_{p}gemm_64_"), ctypes.c_void_p).value for p in "sd")
    except AttributeError:
        return None
    return Blas("numpy's OpenBLAS, Fortran interface", found.library, s, d, "fortran", 64)


def variant_blas(variant: str) -> Blas | None:
    if variant in ("found", "unbound"):
        blas = find_blas()
        if blas is None:
            pytest.skip(f"no BLAS found: {why_no_blas()}")
        return blas
    if variant == "fortran":
        return fortran_blas() or pytest.skip("numpy's BLAS exports no ILP64 Fortran sgemm")
    if variant == "scipy":
        pytest.importorskip("scipy.linalg.cython_blas")
        return blas_module._scipy_blas() or pytest.skip(f"scipy's BLAS unusable: {blas_module._reasons}")
    return None


@pytest.fixture(scope="module", params=["found", "fortran", "scipy", "loops", "unbound"])
def lib(request, tmp_path_factory):
    blas = variant_blas(request.param)
    index = HOST.index_type if request.param == "loops" else "long long"
    lib = compile_prelude(tmp_path_factory, request.param, gemm_prelude(blas, index))
    if request.param != "unbound":
        bind(lib, blas)
    return lib


def operand(rng, rows: int, cols: int, dtype, ld: str) -> np.ndarray:
    """A (rows, cols) view: inside a bigger array ("padded"), contiguous ("tight"), one row with
    row stride 0 ("zero"), or one row repeated by a 0 stride ("broadcast": no BLAS takes it)."""
    if ld == "broadcast" and rows > 1:
        return np.broadcast_to(rng.standard_normal(cols).astype(dtype), (rows, cols))
    if ld in ("zero", "broadcast") and rows == 1:
        row = rng.standard_normal((1, cols)).astype(dtype)
        return np.lib.stride_tricks.as_strided(row, strides=(0, dtype.itemsize))
    if ld == "tight":
        return rng.standard_normal((rows, cols)).astype(dtype)
    return rng.standard_normal((rows + 3, cols + 5)).astype(dtype)[1:rows + 1, 2:cols + 2]


def check_gemm(lib, dtype, ta: bool, tb: bool, m: int, n: int, k: int, alpha: float, beta: float,
               lds=("padded", "padded", "padded"), seed: int = 0) -> None:
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    a = operand(rng, *((k, m) if ta else (m, k)), dtype, lds[0])
    b = operand(rng, *((n, k) if tb else (k, n)), dtype, lds[1])
    c_base = rng.standard_normal((m + 2, n + 4)).astype(dtype)
    c = c_base[1:m + 1, 1:n + 1]
    if lds[2] == "tight":
        c_base = c = rng.standard_normal((m, n)).astype(dtype)
    elif lds[2] == "zero" and m == 1:
        c = np.lib.stride_tricks.as_strided(c, strides=(0, dtype.itemsize))
    if beta == 0:
        c[...] = np.nan  # BLAS semantics: C is not read when beta is 0
    before = c_base.copy()
    op_a, op_b = (a.T if ta else a).astype(np.float64), (b.T if tb else b).astype(np.float64)
    expect = alpha * (op_a @ op_b) + (beta * c.astype(np.float64) if beta else 0.0)
    scale = abs(alpha) * (np.abs(op_a) @ np.abs(op_b)) + (abs(beta) * np.abs(c.astype(np.float64)) if beta else 0)

    item = dtype.itemsize
    getattr(lib, "gemm_f32" if dtype == np.float32 else "gemm_f64")(
        ta, tb, m, n, k, alpha, a.ctypes.data, a.strides[0] // item, b.ctypes.data, b.strides[0] // item,
        beta, c.ctypes.data, c.strides[0] // item)

    tolerance = 4 * (k + 2) * np.finfo(dtype).eps * scale + np.finfo(dtype).tiny
    assert np.all(np.abs(c - expect) <= tolerance), (
        f"{dtype} ta={ta} tb={tb} m={m} n={n} k={k} lds={lds}: max error {np.max(np.abs(c - expect))}")
    outside = np.ones(c_base.shape, bool)
    if lds[2] != "tight":
        outside[1:m + 1, 1:n + 1] = False
        assert np.array_equal(c_base[outside], before[outside]), "GEMM wrote outside C"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
def test_transposes_of_sub_matrices(lib, dtype, ta, tb):
    check_gemm(lib, dtype, ta, tb, 67, 45, 129, 1.0, 0.0, seed=1)
    check_gemm(lib, dtype, ta, tb, 33, 70, 18, -0.5, 1.0, seed=2)  # accumulates into C


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (1, 9, 5), (7, 1, 5), (7, 9, 1), (1, 1, 40), (5, 6, 0), (0, 4, 3),
                                   (4, 0, 3), (0, 0, 0)])
@pytest.mark.parametrize("beta", [0.0, 1.0, 2.5])
def test_degenerate_shapes(lib, dtype, m, n, k, beta):
    for ta in (False, True):
        for tb in (False, True):
            check_gemm(lib, dtype, ta, tb, m, n, k, 1.5, beta, lds=("zero", "tight", "zero"))


@settings(max_examples=30, deadline=None)
@given(dtype=st.sampled_from(["float32", "float64"]), ta=st.booleans(), tb=st.booleans(),
       m=st.integers(0, 40), n=st.integers(0, 40), k=st.integers(0, 40),
       alpha=st.sampled_from([1.0, -0.75, 0.0]), beta=st.sampled_from([0.0, 1.0, 0.5]),
       lds=st.tuples(*[st.sampled_from(["padded", "tight", "zero", "broadcast"])] * 2,
                     st.sampled_from(["padded", "tight", "zero"])),
       seed=st.integers(0, 2**32 - 1))
def test_random_gemms_match_numpy(lib, dtype, ta, tb, m, n, k, alpha, beta, lds, seed):
    check_gemm(lib, dtype, ta, tb, m, n, k, alpha, beta, lds, seed)


@pytest.mark.parametrize("interface,bits", [("cblas", 64), ("cblas", 32), ("fortran", 32), ("fortran", 64)])
def test_calls_reach_the_bound_blas_with_legal_leading_dimensions(tmp_path_factory, interface, bits):
    """A recording stand-in for sgemm: row-major transposes and dimensions, raised single-row
    lds, and loops (no call) for a broadcast operand or an ld past an LP64 BLAS's ints."""
    calls = []  # (trans_a, trans_b, m, n, k, lda, ldb, ldc) in row-major terms
    i, f, p = (ctypes.c_int64 if bits == 64 else ctypes.c_int32), ctypes.c_float, ctypes.c_void_p
    if interface == "cblas":
        spy = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_int, ctypes.c_int, i, i, i, f, p, i, p, i, f, p, i)(
            lambda order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc: calls.append(
                (order, ta == 112, tb == 112, m, n, k, lda, ldb, ldc)))
    else:  # C^T = op(B)^T op(A)^T: the first operand is B
        ch, ip, fp = ctypes.POINTER(ctypes.c_char), ctypes.POINTER(i), ctypes.POINTER(f)
        spy = ctypes.CFUNCTYPE(None, ch, ch, ip, ip, ip, fp, p, ip, p, ip, fp, p, ip)(
            lambda tb, ta, n, m, k, alpha, b, ldb, a, lda, beta, c, ldc: calls.append(
                (101, ta[0] == b"T", tb[0] == b"T", m[0], n[0], k[0], lda[0], ldb[0], ldc[0])))
    address = ctypes.cast(spy, ctypes.c_void_p).value
    blas = Blas("spy", "", address, address, interface, bits)
    lib = compile_prelude(tmp_path_factory, f"spy_{interface}{bits}", gemm_prelude(blas))
    bind(lib, blas)
    a, b, c = np.ones((8, 8), np.float32), np.ones((8, 8), np.float32), np.zeros((8, 8), np.float32)
    lib.gemm_f32(0, 1, 3, 4, 5, 1.0, a.ctypes.data, 8, b.ctypes.data, 8, 0.0, c.ctypes.data, 8)
    lib.gemm_f32(1, 0, 1, 4, 5, 1.0, a.ctypes.data, 1, b.ctypes.data, 6, 0.0, c.ctypes.data, 0)
    assert calls == [(101, False, True, 3, 4, 5, 8, 8, 8), (101, True, False, 1, 4, 5, 1, 6, 4)]
    lib.gemm_f32(0, 0, 3, 4, 5, 1.0, a.ctypes.data, 0, b.ctypes.data, 8, 0.0, c.ctypes.data, 8)  # rows repeat
    assert len(calls) == 2 and np.all(c[:3, :4] == 5)
    lib.gemm_f32(0, 0, 1, 4, 5, 1.0, a.ctypes.data, 2**33, b.ctypes.data, 8, 0.0, c.ctypes.data, 8)
    assert len(calls) == (3 if bits == 64 else 2)


def test_bind_refuses_another_abi(tmp_path_factory):
    blas = Blas("fake", "", 1, 1, "fortran", 32)
    loops = compile_prelude(tmp_path_factory, "abi_loops", gemm_prelude(None))
    cblas = compile_prelude(tmp_path_factory, "abi_cblas", gemm_prelude(Blas("fake", "", 1, 1, "cblas", 64)))
    bind(loops, None)
    for lib in (loops, cblas):
        with pytest.raises(ValueError, match="compiled"):
            bind(lib, blas)


def test_prelude_includes_only_cstdint():
    for blas in (None, Blas("x", "", 1, 1, "cblas", 32), Blas("x", "", 1, 1, "fortran", 64)):
        text = gemm_prelude(blas)
        assert [line for line in text.splitlines() if line.startswith("#")] == ["#include <cstdint>"]


def test_numpy_bundled_openblas_is_found():
    blas = find_blas()
    if blas is None or "numpy's" not in blas.name:
        pytest.skip(f"numpy bundles no OpenBLAS here (found: {blas and blas.name}; {why_no_blas()})")
    assert blas.interface == "cblas" and blas.int_bits in (32, 64) and why_no_blas() is None
    assert blas.abi == f"cblas{blas.int_bits}" and blas.sgemm and blas.dgemm


def test_threads_round_trip():
    before = get_threads()
    if before is None:
        pytest.skip("the found BLAS has no known thread control")
    with blas_threads(1):
        assert get_threads() == 1
    assert get_threads() == before
    set_threads(before)
    assert get_threads() == before


def test_unusable_library_gives_none_and_a_reason(tmp_path):
    scheme = [("cblas_{}gemm", [], "openblas_get_config", 32)]
    bogus = tmp_path / "libbogus.so"
    bogus.write_bytes(b"not a shared library")
    assert blas_module._open(str(bogus), scheme) is None
    assert "cannot be loaded" in blas_module._reasons[-1]
    libc = ctypes.util.find_library("c")
    if libc is not None:
        assert blas_module._open(libc, scheme) is None
        assert "exports no CBLAS" in blas_module._reasons[-1]
