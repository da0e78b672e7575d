"""Element-wise trees compiled by g++ compute what the interpreter computes (NumPy, typed by
`fractal.backends.pointwise.evaluate`), within each dtype's tolerance: random trees over
float64, float32, mixed float, int32 and int64 arrays, data with extremes (|x| up to 1e30,
inf, NaN, -0.0), NaN where NumPy gives NaN."""

from __future__ import annotations

import ctypes
import math
import random

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fractal.backends.codegen import HOST, cast, emit_expr, prelude, store
from fractal.backends.pointwise import evaluate
from fractal.lang.errors import FractalTypeError, UnsupportedError

from .cxx import build, pointer
from fractal.backends.codegen import BINARY_OPS, UNARY_OPS
from fractal.lower.tile_expr import Binary, Load, Unary

from .strategies import COMPARE, INT_BINARY, INT_CONSTS, INT_UNARY, random_tree, whole

# (x dtype, y dtype, destination dtype, float ops?); constants next to an int load are ints
# (the interpreter types a constant like its sibling: an inf would have no int value)
GROUPS = {
    "f64": ("float64", "float64", "float64", True),
    "f32": ("float32", "float32", "float32", True),
    "mixed": ("float32", "float64", "float64", True),
    "i32": ("int32", "int32", "int32", False),
    "i64": ("int64", "int32", "int64", False),
    "int_float": ("int32", "float64", "float64", True),
}
PER_GROUP = 60
N = 8  # elements per call
TOL = {"float64": 1e-9, "float32": 2e-4}
CASES = [(g, random_tree(random.Random(f"{g}{k}"), 3, GROUPS[g][3], N, INT_CONSTS if g == "int_float" else None))
         for g in GROUPS for k in range(PER_GROUP)]
# Every op alone on loads of x and y, run below on every pair of special values.
INT_OPS = INT_UNARY + INT_BINARY + COMPARE + ("logical_not", "logical_and", "logical_or")
OP_CASES = {(g, op): len(CASES) + k for k, (g, op) in enumerate(
    (g, op) for g in GROUPS for op in (*UNARY_OPS, *BINARY_OPS)
    if op not in ("pow", "neg", "abs") or g != "i64" or op in INT_OPS)}


def alone(op: str, n: int = N):
    x, y = Load(whole("x", n)), Load(whole("y", n))
    return Unary(op, x) if op in UNARY_OPS else Binary(op, x, y)


CASES += [(g, alone(op)) for g, op in OP_CASES]
SPECIAL = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e30, -1e30, 1.0, -1.0, 0.5, -2.5, 3.0, 88.7, -100.0, 1e-30]
INTS = [0, 1, -1, 2, -2, 3, -3, 7, -7, 9]


def kernel(k: int, group: str, tree) -> tuple[str, tuple[str, ...]]:
    xd, yd, dst, _ = GROUPS[group]
    value = emit_expr(tree, dst, {"x": xd, "y": yd}, lambda r: f"{r.buffer}[i]", HOST)
    out = store(value, dst, HOST)
    c = HOST.ctype
    return (f"static void ew{k}(const void* xv, const void* yv, void* ov, std::int64_t n) {{\n"
            f"  const {c[xd]}* x = static_cast<const {c[xd]}*>(xv);\n"
            f"  const {c[yd]}* y = static_cast<const {c[yd]}*>(yv);\n"
            f"  {c[dst]}* out = static_cast<{c[dst]}*>(ov); (void)x; (void)y;\n"
            f"  for (std::int64_t i = 0; i < n; ++i) out[i] = {out.text};\n}}\n"), out.helpers


# Conversions (`Convert` ops): (source, destination) dtypes, each a kernel after the trees.
CASTS = (("float64", "int32"), ("float32", "int64"), ("float64", "bool"), ("int32", "float32"), ("bool", "float64"),
         ("float64", "float32"), ("int64", "int32"), ("float32", "float64"))


def cast_kernel(k: int, src: str, dst: str) -> str:
    c = HOST.ctype
    return (f"static void ew{k}(const void* xv, const void*, void* ov, std::int64_t n) {{\n"
            f"  const {c[src]}* x = static_cast<const {c[src]}*>(xv); {c[dst]}* out = static_cast<{c[dst]}*>(ov);\n"
            f"  for (std::int64_t i = 0; i < n; ++i) out[i] = {cast('x[i]', src, dst, HOST).text};\n}}\n")


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    kernels = [kernel(k, g, t) for k, (g, t) in enumerate(CASES)]
    kernels += [(cast_kernel(len(CASES) + k, src, dst), ()) for k, (src, dst) in enumerate(CASTS)]
    cases = "".join(f"    case {k}: ew{k}(x, y, out, n); return;\n" for k in range(len(CASES) + len(CASTS)))
    source = (prelude(HOST, [h for _, hs in kernels for h in hs]) + "".join(s for s, _ in kernels)
              + 'extern "C" void run_ew(int k, const void* x, const void* y, void* out, std::int64_t n) {\n'
              + f"  switch (k) {{\n{cases}  }}\n}}\n")
    lib = build(tmp_path_factory, "elementwise", source)
    lib.run_ew.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    return lib


def reference(tree, xd, yd, dst, x, y) -> np.ndarray:
    out = np.zeros(len(x), dst)
    with np.errstate(all="ignore"):
        out[...] = evaluate(tree, {}, {"x": x, "y": y}, np.dtype(dst))
    return out


def compiled(lib, k, dst, x, y) -> np.ndarray:
    out = np.zeros(len(x), dst)
    lib.run_ew(k, pointer(x), pointer(y), pointer(out), len(x))
    return out


def assert_matches(got: np.ndarray, want: np.ndarray, dst: str, dtypes, note):
    if np.dtype(dst).kind in "iu":
        np.testing.assert_array_equal(got, want, err_msg=str(note))
        return
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"NaN where NumPy has none, or none: {note}")
    finite = np.isfinite(want) & np.isfinite(got)
    np.testing.assert_array_equal(got[~finite & ~np.isnan(want)], want[~finite & ~np.isnan(want)], err_msg=str(note))
    tol = max(TOL.get(d, 0) for d in dtypes)  # float32 math in a float64 destination is still float32 math
    np.testing.assert_allclose(got[finite], want[finite], rtol=tol, atol=tol, err_msg=str(note))


FLOATS = st.one_of(st.floats(-1e3, 1e3), st.floats(-1e30, 1e30),
                   st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, 1e30, -1e30, math.inf, -math.inf, math.nan]))


# Derandomized: a random tree may feed a computed operand to an ill-conditioned op (`mod` of a
# large x by log1p(log_sigmoid(1)): a 1-ulp difference in the divisor moves the result by more
# than any fixed tolerance), so fresh seeds could fail without a bug; the same 400 examples run
# everywhere, and the special-value test below checks every op alone.
@settings(max_examples=400, deadline=None, derandomize=True)
@given(k=st.integers(0, len(CASES) - 1), xs=st.lists(FLOATS, min_size=N, max_size=N),
       ys=st.lists(FLOATS, min_size=N, max_size=N), ints=st.lists(st.integers(-9, 9), min_size=2 * N, max_size=2 * N))
def test_compiled_tree_equals_the_interpreter(lib, k, xs, ys, ints):
    group, tree = CASES[k]
    xd, yd, dst, _ = GROUPS[group]
    x = np.array(ints[:N] if np.dtype(xd).kind == "i" else xs, xd)
    y = np.array(ints[N:] if np.dtype(yd).kind == "i" else ys, yd)
    try:
        want = reference(tree, xd, yd, dst, x, y)
    except ValueError:  # NumPy refuses an int to a negative int power: no answer to compare with
        assume(False)
    assert_matches(compiled(lib, k, dst, x, y), want, dst, (xd, yd, dst), (group, tree, x, y))


@pytest.mark.parametrize("group, op", sorted(OP_CASES))
def test_every_op_on_every_pair_of_special_values(lib, group, op):
    """NaN, infinities, signed zeros, 1e30 (the stable ops' extremes) and ordinary values: each
    op alone, over every pair, gives NumPy's answer (NaN exactly where NumPy's is NaN)."""
    xd, yd, dst, _ = GROUPS[group]
    values = {d: np.array(INTS if np.dtype(d).kind == "i" else SPECIAL, d) for d in (xd, yd)}
    x, y = (a.ravel() for a in np.meshgrid(values[xd], values[yd], indexing="ij"))
    x, y = np.ascontiguousarray(x), np.ascontiguousarray(y)
    try:
        want = reference(alone(op, len(x)), xd, yd, dst, x, y)
    except ValueError:  # an int to a negative int power: NumPy refuses; pow on the others
        keep = ~((np.asarray(y) < 0) & (np.asarray(x).dtype.kind == "i") & (np.asarray(y).dtype.kind == "i"))
        x, y = np.ascontiguousarray(x[keep]), np.ascontiguousarray(y[keep])
        want = reference(alone(op, len(x)), xd, yd, dst, x, y)
    assert_matches(compiled(lib, OP_CASES[group, op], dst, x, y), want, dst, (xd, yd, dst), (group, op, x, y))


@pytest.mark.parametrize("src, dst", CASTS)
def test_conversions_equal_numpy_astype_within_the_destination_range(lib, src, dst):
    values = np.array([0.0, -0.0, 0.4, -0.6, 1.5, -2.5, 7.0, 1e6, -123456.75, 2.0**31 - 1 if dst != "int32" else 3.0,
                       -(2.0**31) + 1])
    x = values.astype(src)
    got = np.zeros(len(x), dst)
    lib.run_ew(len(CASES) + CASTS.index((src, dst)), pointer(x), pointer(x), pointer(got), len(x))
    np.testing.assert_array_equal(got, x.astype(dst))
