"""Cell ops against NumPy: eagerly, traced + interpreted, and traced inside an `ft.map` body.

The property checked throughout: for every cell op `op` and inputs `args`,

    ft.<op>(*args)                      (eager, on NumPy arrays)
 == ft.function(op).interpret(*args)   (traced to the IR, run by the reference interpreter)
 == ft.map(op, xs) elementwise         (traced inside a combinator body, closing over outer values)
 == an independent NumPy reference

with the same shape *and* dtype, where the traced dtype is read from the IR
(`Var.type`) and must equal the dtype NumPy gives eagerly (NumPy 2 promotion,
Python scalars weak).  Every traced program is also `verify()`-ed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fractal as ft
from fractal.lang.types import FractalTensorType, TensorType

RNG = np.random.default_rng(1234)
HSET = settings(max_examples=40, deadline=None)


# -- helpers --------------------------------------------------------------------------------

def rand(*shape, dtype=np.float64, low=-2.0, high=2.0, rng=RNG):
    return rng.uniform(low, high, size=shape).astype(dtype)


def assert_same(actual, expected, rtol=1e-12, atol=1e-12):
    """Same shape, same dtype, and equal values (tight tolerance for floats, exact otherwise)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype, f"dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    if expected.dtype.kind == "f":
        if expected.dtype != np.float64:
            rtol, atol = max(rtol, 1e-6), max(atol, 1e-6)
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True)
    else:
        np.testing.assert_array_equal(actual, expected)


def trace_and_run(fn, *args):
    """Trace `fn` with `@ft.function`, verify the program, run it with the interpreter."""
    f = ft.function(fn)
    program = f.trace(*args)
    program.verify()
    return program, f.interpret(*args)


def variants(a):
    """A few arrays of the same shape and dtype as `a` (for a list to map over)."""
    a = np.asarray(a)
    return [a, np.flip(a), np.roll(a, 1)] if a.ndim else [a, a, a]


def check(fn, *args, ref=None, rtol=1e-12, atol=1e-12):
    """eager fn == NumPy ref; traced+interpreted fn == ref with IR type == ref's type; same inside ft.map.

    `ref` defaults to `fn` itself (for operators, whose eager form *is* NumPy)."""
    ref = fn if ref is None else ref
    expected = np.asarray(ref(*args))
    tt = TensorType(expected.shape, expected.dtype)

    # eager, on NumPy arrays
    assert_same(fn(*args), expected, rtol, atol)

    # traced at the top level: the IR's result type is NumPy's, the interpreter computes NumPy's values
    program, out = trace_and_run(fn, *args)
    assert program.results[0].type == tt
    assert_same(out, expected, rtol, atol)

    # traced inside a map body over the first argument, closing over the (traced) others
    xs = ft.fractal(variants(args[0]))
    rest = args[1:]

    def mapped(xs, *rest):
        return ft.map(lambda x: fn(x, *rest), xs)

    program, out = trace_and_run(mapped, xs, *rest)
    (map_eqn,) = [e for e in program.body.eqns if e.op == "map"]
    assert map_eqn.outputs[0].type == FractalTensorType(tt)
    assert out.type == FractalTensorType(tt)
    assert len(out) == len(xs)
    for v, o in zip(variants(args[0]), out):
        assert_same(o, ref(v, *rest), rtol, atol)

    # eager map agrees as well
    eager = ft.map(lambda x: fn(x, *rest), xs)
    for v, o in zip(variants(args[0]), eager):
        assert_same(o, ref(v, *rest), rtol, atol)


# -- arithmetic operators -------------------------------------------------------------------

X = rand(3, 4)
Y = rand(3, 4)
ROW = rand(1, 4)
POS = rand(3, 4, low=0.5, high=2.0)
W = rand(4, 5)
V = rand(4)

BINARY_OPERATORS = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: a ** b,
    "matmul": lambda a, b: a @ b,
}


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div"])
@pytest.mark.parametrize("other", [Y, ROW, rand(4), np.float64(1.5)], ids=["same", "row", "vec", "npscalar"])
def test_binary_operators_broadcast_like_numpy(name, other):
    """`x op y` for traced x and an array/NumPy scalar y, with broadcasting, equals NumPy."""
    op = BINARY_OPERATORS[name]
    check(op, X, other)
    check(lambda a, b: op(b, a), X, other)  # the traced tensor on the right


def test_pow_operator():
    """`x ** y`, `x ** 2`, `2 ** x` (reflected) equal NumPy."""
    check(lambda a, b: a ** b, POS, Y)
    check(lambda a: a ** 2, X)
    check(lambda a: a ** 0.5, POS)
    check(lambda a: 2.0 ** a, X)
    check(lambda a: 3 ** a, X)


@pytest.mark.parametrize("scalar", [2, 2.5, -1.0])
def test_python_scalars_on_either_side(scalar):
    """Reflected forms with Python scalars: `s - x`, `s / x`, `s * x`, `s + x`, and `x op s`."""
    check(lambda a: scalar - a, X)
    check(lambda a: scalar / a, POS)
    check(lambda a: scalar * a, X)
    check(lambda a: scalar + a, X)
    check(lambda a: a - scalar, X)
    check(lambda a: a / scalar, X)


def test_matmul_operator_and_reflected_with_captured_numpy_array():
    """`x @ W`, `W @ x` with W a NumPy array captured from Python (a constant), and `ft.matmul`."""
    check(lambda a: a @ W, X)
    check(lambda a: W.T @ a.T, X)       # ndarray on the left: dispatched through __array_ufunc__
    check(lambda a: V @ a.T, X)         # 1-D @ 2-D
    check(lambda a: a @ V, X)           # 2-D @ 1-D
    check(lambda a: a[0] @ V, X)        # 1-D @ 1-D -> scalar
    check(lambda a, w: a @ w, X, W)     # both traced
    check(lambda a, w: ft.matmul(a, w), X, W)
    batched = rand(2, 3, 4)
    check(lambda a, w: a @ w, batched, W)  # batch dims broadcast


def test_captured_numpy_array_becomes_an_implicit_parameter():
    """A NumPy array closed over by traced code is a parameter after the function's own, read
    at every call (README, "Captured arrays"): here `W.T`, a NumPy view made while tracing."""
    program, out = trace_and_run(lambda a: W.T @ a.T, X)
    assert [v.type for v in program.params] == [TensorType((3, 4), np.dtype("float64")), TensorType((5, 4), W.dtype)]
    assert not any(e.op == "const" for e in program.body.eqns)
    assert_same(out, W.T @ X.T)


def test_unary_negation():
    check(lambda a: -a, X)
    check(lambda a: -a, X.astype(np.int32))
    check(lambda a: +a, X)


@pytest.mark.parametrize("name,op", [("lt", lambda a, b: a < b), ("le", lambda a, b: a <= b),
                                     ("gt", lambda a, b: a > b), ("ge", lambda a, b: a >= b),
                                     ("eq", lambda a, b: a == b), ("ne", lambda a, b: a != b)])
def test_comparisons_give_bool_tensors(name, op):
    """Comparisons of traced tensors (with tensors, broadcast rows, scalars on either side) are bool."""
    y = np.where(RNG.random((3, 4)) < 0.5, X, Y)  # some equal entries so eq/ne are not trivial
    check(op, X, y)
    check(op, X, ROW)
    check(lambda a: op(a, 0.0), X)
    check(lambda a: op(0.0, a), X)
    program, _ = trace_and_run(op, X, y)
    assert program.results[0].type.dtype == np.dtype(bool)
    assert program.body.eqns[-1].op == name


def test_comparison_results_feed_where_and_logical_ops():
    check(lambda a, b: ft.where((a > 0) & (b < 0), a, b), X, Y)
    check(lambda a, b: ft.where((a > 0) | ~(b < 0), a, -b), X, Y)


# -- elementwise functions ------------------------------------------------------------------

def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


UNARY_FUNCTIONS = [
    ("exp", ft.exp, np.exp, X),
    ("log", ft.log, np.log, POS),
    ("tanh", ft.tanh, np.tanh, X),
    ("sigmoid", ft.sigmoid, _sigmoid, X),
    ("relu", ft.relu, lambda x: np.where(x > 0, x, 0.0), X),
    ("gelu", ft.gelu, _gelu_tanh, X),
    ("sqrt", ft.sqrt, np.sqrt, POS),
    ("abs", ft.abs, np.abs, X),
    ("sin", ft.sin, np.sin, X),
    ("cos", ft.cos, np.cos, X),
    ("log1p", ft.log1p, lambda x: np.log(1.0 + x), POS),
    ("softplus", ft.softplus, lambda x: np.logaddexp(0.0, x), X),
    ("log_sigmoid", ft.log_sigmoid, lambda x: -np.logaddexp(0.0, -x), X),
    ("elu", ft.elu, lambda x: np.where(x > 0, x, np.exp(np.minimum(x, 0.0)) - 1.0), X),
]


@pytest.mark.parametrize("name,fn,ref,arg", UNARY_FUNCTIONS, ids=[u[0] for u in UNARY_FUNCTIONS])
def test_unary_functions_match_numpy(name, fn, ref, arg):
    """ft.<fn> against an independent NumPy formula; the traced program holds one `name` eqn."""
    check(fn, arg, ref=ref)
    program, _ = trace_and_run(fn, arg)
    assert [e.op for e in program.body.eqns] == [name]


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("fn", [ft.exp, ft.tanh, ft.sigmoid, ft.relu, ft.gelu, ft.abs, ft.sin, ft.softplus,
                                ft.log_sigmoid, ft.elu, lambda x: ft.log1p(ft.abs(x))])
def test_unary_functions_keep_low_precision_float_dtypes(fn, dtype):
    x = X.astype(dtype)
    program, out = trace_and_run(fn, x)
    assert program.results[0].type == TensorType(x.shape, np.dtype(dtype))
    assert np.asarray(out).dtype == dtype
    assert np.asarray(fn(x)).dtype == dtype


def test_sigmoid_and_gelu_do_not_overflow():
    """sigmoid(+-1000) is 1/0 and gelu(-1000) is 0, without nan or inf."""
    big = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0])
    with np.errstate(over="ignore"):  # the reference overflows exp(1000) to inf, 1/inf == 0
        check(ft.sigmoid, big, ref=_sigmoid)
        _, out = trace_and_run(ft.sigmoid, big)
        assert out[0] == 0.0 and out[2] == 0.5 and out[-1] == 1.0
        _, out = trace_and_run(ft.gelu, big)
    assert np.all(np.isfinite(out)) and out[0] == 0.0 and out[-1] == 1000.0


# float64 references that are exact in the tails: log(1 + e^x) by logaddexp, e^x - 1 by expm1
STABLE = {
    "softplus": (ft.softplus, lambda x: np.logaddexp(0.0, x)),
    "log_sigmoid": (ft.log_sigmoid, lambda x: -np.logaddexp(0.0, -x)),
    "elu": (ft.elu, lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))),
    "log1p": (ft.log1p, np.log1p),
}
HUGE = np.array([-1e30, -1000.0, -89.0, -40.0, -1e-9, 0.0, 1e-9, 40.0, 89.0, 1000.0, 1e30])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(STABLE))
def test_stable_forms_have_no_overflow_or_cancellation(name, dtype):
    """Large |x| (where exp overflows float32 at 89 and float64 at 710) gives finite values
    equal to the float64 reference to the dtype's precision, eagerly and interpreted."""
    fn, ref = STABLE[name]
    x = (np.abs(HUGE) * 1e-3 if name == "log1p" else HUGE).astype(dtype)
    want = ref(x.astype(np.float64))
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # no overflow, no nan, anywhere
        eager = fn(x)
        _, interpreted = trace_and_run(fn, x)
    for got in (eager, interpreted):
        assert np.asarray(got).dtype == dtype and np.all(np.isfinite(got))
        np.testing.assert_allclose(got, want, rtol=4 * np.finfo(dtype).eps, atol=np.finfo(dtype).tiny)


def test_stable_forms_in_their_tails():
    """The values a naive formula gets wrong: softplus(-40) = e^-40 (log(1 + e^-40) rounds to 0),
    log_sigmoid(1000) = -e^-1000 rounds to -0.0, elu(-1e-9) = -1e-9 + 5e-19 (e^x - 1 cancels)."""
    assert ft.softplus(np.float64(-40.0)) == pytest.approx(math.exp(-40.0), rel=1e-15)
    assert ft.softplus(np.float64(1000.0)) == 1000.0 and ft.log_sigmoid(np.float64(-1000.0)) == -1000.0
    assert ft.log_sigmoid(np.float64(40.0)) == pytest.approx(-math.exp(-40.0), rel=1e-15)
    assert ft.elu(np.float64(-1e-9)) == pytest.approx(-1e-9 + 5e-19, rel=1e-15)
    assert ft.log1p(np.float64(1e-12)) == pytest.approx(1e-12 - 5e-25, rel=1e-15)
    assert ft.elu(np.float64(-1000.0)) == -1.0 and ft.elu(np.float64(3.0)) == 3.0


def test_new_unary_ops_on_ints_compute_in_float64_like_sigmoid():
    x = np.array([-3, 0, 2], dtype=np.int64)
    for fn in (ft.softplus, ft.log_sigmoid, ft.elu, ft.log1p, ft.sigmoid):
        program, out = trace_and_run(fn, np.abs(x) if fn is ft.log1p else x)
        assert program.results[0].type == TensorType((3,), np.dtype(np.float64)) and out.dtype == np.float64


@pytest.mark.parametrize("alpha", [1.0, 0.5, 2])
def test_elu_alpha_scales_the_negative_side(alpha):
    check(lambda x: ft.elu(x, alpha=alpha), X, ref=lambda x: np.where(x > 0, x, alpha * np.expm1(x)))
    x32 = X.astype(np.float32)  # a Python alpha does not promote a float32 model
    assert np.asarray(ft.function(lambda x: ft.elu(x, alpha=alpha))(x32)).dtype == np.float32


def test_gelu_is_the_tanh_approximation():
    """At x = 1 the tanh approximation (0.841192) differs from the erf GELU (0.841345)."""
    assert abs(float(ft.gelu(np.float64(1.0))) - 0.8411919906082768) < 1e-12


def test_maximum_minimum_where():
    check(ft.maximum, X, Y, ref=np.maximum)
    check(ft.minimum, X, ROW, ref=np.minimum)
    check(lambda a: ft.maximum(a, 0.0), X, ref=lambda a: np.maximum(a, 0.0))
    check(lambda a: ft.minimum(1, a), X, ref=lambda a: np.minimum(1, a))
    check(lambda a, b: ft.where(a > b, a, b), X, Y, ref=lambda a, b: np.where(a > b, a, b))
    check(lambda a: ft.where(a > 0, a, 0.0), X, ref=lambda a: np.where(a > 0, a, np.float64(0)))
    check(lambda a, r: ft.where(a > 0, r, a), X, ROW, ref=lambda a, r: np.where(a > 0, r, a))
    # a float32 tensor and a Python float: the scalar is weak, the result stays float32
    x32 = X.astype(np.float32)
    check(lambda a: ft.where(a > 0, a, 0.0), x32, ref=lambda a: np.where(a > 0, a, np.float32(0)))


def test_where_needs_a_bool_condition():
    with pytest.raises(ft.FractalTypeError):
        trace_and_run(lambda a: ft.where(a, a, a), X)


# -- reductions -----------------------------------------------------------------------------

X3 = rand(2, 3, 4)
AXES = [None, 0, 1, 2, -1, -3, (0, 2), (2, 0), (-1, 0), (0, 1, 2), ()]


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("name", ["sum", "mean", "max", "min"])
def test_reductions_match_numpy(name, axis, keepdims):
    """ft.sum/mean/max/min over None, an int, a negative int or a tuple of axes, with keepdims."""
    fn, ref = getattr(ft, name), getattr(np, name)
    check(lambda a: fn(a, axis=axis, keepdims=keepdims), X3,
          ref=lambda a: ref(a, axis=axis, keepdims=keepdims))


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_, np.float32])
@pytest.mark.parametrize("name", ["sum", "mean", "max", "min"])
def test_reduction_dtypes_follow_numpy(name, dtype):
    """sum of int32/bool is int64, mean of ints is float64, max keeps the dtype (as in NumPy)."""
    x = (X3 * 3).astype(dtype)
    fn, ref = getattr(ft, name), getattr(np, name)
    check(lambda a: fn(a, axis=1), x, ref=lambda a: ref(a, axis=1))
    check(lambda a: fn(a), x, ref=lambda a: np.asarray(ref(a)))


def test_reduction_methods_on_traced_tensors():
    check(lambda a: a.sum(axis=0) + a.mean() + a.max(axis=-1, keepdims=True).sum() - a.min(),
          X, ref=lambda a: a.sum(axis=0) + a.mean() + a.max(axis=-1, keepdims=True).sum() - a.min())


def test_reduction_errors():
    with pytest.raises(ft.ShapeError):
        trace_and_run(lambda a: ft.sum(a, axis=3), X3)
    with pytest.raises(ft.ShapeError):
        trace_and_run(lambda a: ft.sum(a, axis=(0, -3)), X3)
    with pytest.raises(ft.ShapeError):
        ft.sum(X3, axis=-4)


# -- softmax, logsumexp, layer_norm ---------------------------------------------------------

def _softmax_ref(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("axis", [-1, 0, 1, 2, -2])
def test_softmax(axis):
    """softmax along `axis` equals exp(x) / sum(exp(x)) and sums to 1 along that axis."""
    check(lambda a: ft.softmax(a, axis=axis), X3, ref=lambda a: np.exp(a) / np.exp(a).sum(axis, keepdims=True))
    _, out = trace_and_run(lambda a: ft.softmax(a, axis=axis), X3)
    np.testing.assert_allclose(out.sum(axis=axis), 1.0, rtol=1e-12)


def test_softmax_is_stable_and_default_axis_is_last():
    big = X3 * 1000
    check(lambda a: ft.softmax(a), big, ref=lambda a: _softmax_ref(a, -1))
    _, out = trace_and_run(lambda a: ft.softmax(a), big)
    assert np.all(np.isfinite(out))
    with pytest.raises(ft.FractalTypeError):
        trace_and_run(lambda a: ft.softmax(a), X3.astype(np.int64))


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", [None, 0, -1, (0, 2), (1,)], ids=str)
def test_logsumexp(axis, keepdims):
    """logsumexp == log(sum(exp(x))) on moderate values."""
    check(lambda a: ft.logsumexp(a, axis=axis, keepdims=keepdims), X3,
          ref=lambda a: np.log(np.sum(np.exp(a), axis=axis, keepdims=keepdims)))


def test_logsumexp_is_stable_for_large_and_small_values():
    """Where log(sum(exp(x))) overflows (1000) or underflows (-1000), logsumexp stays exact:
    logsumexp(x + c) == logsumexp(x) + c."""
    for shift in (1000.0, -1000.0, 1e6):
        check(lambda a: ft.logsumexp(a + shift, axis=-1), X3,
              ref=lambda a: np.log(np.sum(np.exp(a), axis=-1)) + shift, rtol=1e-12, atol=1e-9)
    two = np.array([1000.0, 1000.0])
    _, out = trace_and_run(lambda a: ft.logsumexp(a), two)
    assert out.shape == () and abs(float(out) - (1000.0 + math.log(2.0))) < 1e-12
    x32 = (X * 100).astype(np.float32)
    check(lambda a: ft.logsumexp(a, axis=1), x32,
          ref=lambda a: (np.log(np.sum(np.exp(a.astype(np.float64) - 300), axis=1)) + 300).astype(np.float32))


def test_logsumexp_of_all_minus_infinity_is_minus_infinity():
    x = np.full((2, 3), -np.inf)
    with np.errstate(divide="ignore"):
        _, out = trace_and_run(lambda a: ft.logsumexp(a, axis=1), x)
    assert out.shape == (2,) and np.all(out == -np.inf)


@pytest.mark.parametrize("eps", [1e-5, 0.1])
def test_layer_norm(eps):
    """layer_norm normalises over the last axis (biased variance), then scales and shifts."""
    w, b = rand(4), rand(4)

    def ref(x, w, b):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * w + b

    check(lambda x, w, b: ft.layer_norm(x, w, b, eps=eps), X3, w, b, ref=ref)
    check(lambda x, w, b: ft.layer_norm(x, w, b, eps=eps), X3, w[None], b[None, None], ref=ref)
    # with w = 1, b = 0 each row has mean 0 and variance var/(var+eps)
    _, out = trace_and_run(lambda x: ft.layer_norm(x, np.ones(4), np.zeros(4), eps=eps), X3)
    np.testing.assert_allclose(out.mean(-1), 0.0, atol=1e-12)


def test_layer_norm_keeps_input_dtype_and_rejects_misfit_weights():
    x = X.astype(np.float32)
    program, out = trace_and_run(lambda a: ft.layer_norm(a, np.ones(4, np.float32), np.zeros(4, np.float32)), x)
    assert program.results[0].type.dtype == np.float32 and out.dtype == np.float32
    with pytest.raises(ft.ShapeError):
        trace_and_run(lambda a: ft.layer_norm(a, np.ones(3), np.zeros(4)), X)


# -- shape and layout -----------------------------------------------------------------------

@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat(axis):
    parts = [rand(2, 3), rand(2, 3), rand(2, 3)]
    check(lambda a, b, c: ft.concat([a, b, c], axis), *parts,
          ref=lambda a, b, c: np.concatenate([a, b, c], axis))
    check(lambda a, b: ft.concatenate((a, b), axis=axis), parts[0], parts[1].astype(np.float32),
          ref=lambda a, b: np.concatenate([a, b], axis=axis))


def test_concat_of_unequal_sizes_and_errors():
    check(lambda a, b: ft.concat([a, b], axis=1), rand(2, 3), rand(2, 5),
          ref=lambda a, b: np.concatenate([a, b], axis=1))
    with pytest.raises(ft.ShapeError):
        trace_and_run(lambda a, b: ft.concat([a, b], axis=0), rand(2, 3), rand(2, 5))


@pytest.mark.parametrize("shape", [(12,), (-1,), (3, -1), (-1, 2, 3), (2, 2, 3), (1, 12, 1)], ids=str)
def test_reshape(shape):
    check(lambda a: ft.reshape(a, shape), X, ref=lambda a: np.reshape(a, shape))
    check(lambda a: a.reshape(shape), X, ref=lambda a: np.reshape(a, shape))


def test_reshape_errors():
    with pytest.raises(ft.ShapeError):
        trace_and_run(lambda a: ft.reshape(a, (5, -1)), X)


@pytest.mark.parametrize("axes", [None, (0, 1, 2), (2, 0, 1), (1, 0, 2), (-1, 0, 1)], ids=str)
def test_transpose(axes):
    check(lambda a: ft.transpose(a, axes), X3, ref=lambda a: np.transpose(a, axes))


def test_dot_T():
    check(lambda a: a.T, X3, ref=lambda a: a.T)
    check(lambda a: a.T @ a, X, ref=lambda a: a.T @ a)
    check(lambda a: a.T, V, ref=lambda a: a.T)


@pytest.mark.parametrize("dtype", [ft.float32, ft.float64, ft.int32, ft.int64, ft.bool_])
def test_zeros_ones_full(dtype):
    """Constructors are recorded as `full` ops (not baked-in constants) with the requested dtype."""
    for fn, ref in [(lambda a: ft.zeros((2, 3), dtype=dtype) + a, lambda a: np.zeros((2, 3), dtype) + a),
                    (lambda a: ft.ones(a.shape, dtype) * a, lambda a: np.ones(a.shape, dtype) * a),
                    (lambda a: ft.full((2, 3), 7, dtype=dtype) - a, lambda a: np.full((2, 3), 7, dtype) - a)]:
        x = np.ones((2, 3), np.dtype(dtype) if dtype != ft.bool_ else np.int64)
        check(fn, x, ref=ref)
    program, out = trace_and_run(lambda a: (ft.full((2,), 2.5, dtype=dtype), a), X)
    assert program.results[0].type == TensorType((2,), np.dtype(dtype))
    assert program.body.eqns[0].op == "full"
    assert_same(out[0], np.full((2,), 2.5, dtype))


def test_constructors_default_to_float32_and_accept_an_int_shape():
    program, out = trace_and_run(lambda a: (ft.zeros(3), ft.ones((1, 2)), ft.full(2, 1.5)), X)
    assert [v.type for v in program.results] == [TensorType((3,), ft.float32), TensorType((1, 2), ft.float32),
                                                   TensorType((2,), ft.float32)]
    assert_same(out[2], np.full(2, 1.5, np.float32))
    assert_same(ft.zeros((2, 2)), np.zeros((2, 2), np.float32))
    assert_same(ft.full((2,), 3, dtype=ft.int32), np.full((2,), 3, np.int32))


@pytest.mark.parametrize("dtype", [ft.float32, ft.int32, ft.int64, ft.bool_, np.float16, "float64"])
def test_astype(dtype):
    check(lambda a: a.astype(dtype), X * 3, ref=lambda a: a.astype(dtype))
    check(lambda a: ft.astype(a, dtype), X * 3, ref=lambda a: a.astype(dtype))


@pytest.mark.parametrize("key", [
    (slice(None), slice(1, 3)), 1, -1, (Ellipsis, -1), None, (None, Ellipsis, 0), (slice(None, None, -1),),
    (0, slice(None), slice(0, 4, 2)), (slice(1, None), None, 2), (Ellipsis,), (1, -2, 3),
], ids=str)
def test_static_basic_indexing(key):
    """x[:, a:b], x[i], x[..., -1], x[None] and combinations equal NumPy's basic indexing."""
    check(lambda a: a[key], X3, ref=lambda a: a[key])


def test_indexing_out_of_range_is_a_shape_error():
    with pytest.raises(ft.ShapeError):
        trace_and_run(lambda a: a[5], X)
    with pytest.raises(ft.FractalTypeError):
        trace_and_run(lambda a: a[[0, 1]], X)


def test_shape_ndim_dtype_are_static_python_values():
    """Inside traced code .shape is a tuple of ints, .ndim an int, .dtype a NumPy dtype: usable
    in Python control flow and as static arguments."""
    seen = {}

    def fn(a):
        seen.update(shape=a.shape, ndim=a.ndim, dtype=a.dtype, n=len(a))
        assert type(a.shape) is tuple and all(type(d) is int for d in a.shape)
        if a.ndim == 3 and a.dtype == np.float64:  # plain Python branching on static facts
            a = a[:, : a.shape[1] - 1]
        return ft.zeros(a.shape, a.dtype) + a.reshape(a.shape[0], -1)[:, None].reshape(a.shape)

    program, out = trace_and_run(fn, X3)
    assert seen == dict(shape=(2, 3, 4), ndim=3, dtype=np.dtype("float64"), n=2)
    assert_same(out, X3[:, :2])
    assert program.results[0].type == TensorType((2, 2, 4), np.dtype("float64"))


# -- dtype promotion rules ------------------------------------------------------------------

DTYPES = [np.float16, np.float32, np.float64, np.int32, np.int64, np.bool_]
# (traced form, NumPy function): the reference is the ufunc, not NumPy's `ndarray ** 2` fast path
# (which calls np.square and gives int8 for bool ** 2 where np.power gives int64)
PROMOTION_OPS = {
    "add": (lambda a, b: a + b, np.add), "sub": (lambda a, b: a - b, np.subtract),
    "mul": (lambda a, b: a * b, np.multiply), "div": (lambda a, b: a / b, np.true_divide),
    "pow": (lambda a, b: a ** b, np.power), "max": (ft.maximum, np.maximum),
    "lt": (lambda a, b: a < b, np.less), "matmul": (lambda a, b: a @ b, np.matmul),
}


def _numpy_or_error(fn, *args):
    try:
        with np.errstate(all="ignore"):
            return np.asarray(fn(*args)), None
    except TypeError as e:
        return None, e


@pytest.mark.parametrize("op", list(PROMOTION_OPS))
@pytest.mark.parametrize("da", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("db", DTYPES, ids=lambda d: np.dtype(d).name)
def test_tensor_tensor_dtype_promotion(op, da, db):
    """The IR type of `a op b` is the dtype NumPy gives for arrays of those dtypes; where NumPy
    refuses the combination (e.g. bool - bool) tracing refuses it with a FractalTypeError."""
    fn, ref = PROMOTION_OPS[op]
    a, b = np.ones((2, 2), da), np.full((2, 2), 2, db)
    expected, err = _numpy_or_error(ref, a, b)
    if err is not None:
        with pytest.raises(ft.FractalTypeError):
            ft.function(fn).trace(a, b)
        return
    with np.errstate(all="ignore"):
        program, out = trace_and_run(fn, a, b)
    assert program.results[0].type == TensorType(expected.shape, expected.dtype)
    assert_same(out, expected)


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "pow", "max", "lt"])
@pytest.mark.parametrize("scalar", [2, 2.5, True], ids=["int", "float", "bool"])
@pytest.mark.parametrize("da", DTYPES, ids=lambda d: np.dtype(d).name)
def test_python_scalars_are_weak(op, scalar, da):
    """A Python scalar next to a traced tensor promotes as in NumPy 2 (weakly): float32 * 2.0 stays
    float32, int32 + 2 stays int32, int / int is float64, int32 * 2.5 is float64."""
    fn, ref = PROMOTION_OPS[op]
    a = np.ones((3,), da)
    for f, r in ((lambda t: fn(t, scalar), lambda t: ref(t, scalar)),
                 (lambda t: fn(scalar, t), lambda t: ref(scalar, t))):
        expected, err = _numpy_or_error(r, a)
        if err is not None:
            with pytest.raises(ft.FractalTypeError):
                ft.function(f).trace(a)
            continue
        with np.errstate(all="ignore"):
            program, out = trace_and_run(f, a)
        assert program.results[0].type == TensorType(expected.shape, expected.dtype), (op, scalar, da)
        assert_same(out, expected)


def test_named_weak_scalar_examples():
    f32, i64 = np.ones(3, np.float32), np.arange(3, dtype=np.int64) + 1
    assert ft.function(lambda a: a * 2.0).trace(f32).results[0].type.dtype == np.float32
    assert ft.function(lambda a: a / 2).trace(i64).results[0].type.dtype == np.float64
    assert ft.function(lambda a: a + 2).trace(i64.astype(np.int32)).results[0].type.dtype == np.int32
    # a NumPy scalar is *not* weak: float32 * float64(2) is float64, as in NumPy
    assert ft.function(lambda a: a * np.float64(2.0)).trace(f32).results[0].type.dtype == np.float64


# -- hypothesis: random shapes --------------------------------------------------------------

HYP_BINARY = {
    "add": (lambda a, b: a + b, np.add),
    "sub": (lambda a, b: a - b, np.subtract),
    "mul": (lambda a, b: a * b, np.multiply),
    "div": (lambda a, b: a / b, np.divide),
    "pow": (lambda a, b: ft.abs(a) ** b, lambda a, b: np.abs(a) ** b),
    "maximum": (ft.maximum, np.maximum),
    "minimum": (ft.minimum, np.minimum),
    "lt": (lambda a, b: a < b, np.less),
    "eq": (lambda a, b: a == b, np.equal),
    "where": (lambda a, b: ft.where(a > b, a - b, b), lambda a, b: np.where(a > b, a - b, b)),
}


@HSET
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3),
       op=st.sampled_from(sorted(HYP_BINARY)), seed=st.integers(0, 2 ** 16))
def test_binary_ops_on_random_broadcastable_shapes(shapes, op, seed):
    """traced == eager == NumPy for binary ops on random broadcastable shape pairs."""
    rng = np.random.default_rng(seed)
    a, b = (rng.uniform(0.5, 2.0, s) * rng.choice([-1.0, 1.0], s) for s in shapes.input_shapes)
    fn, ref = HYP_BINARY[op]
    expected = np.asarray(ref(a, b))
    assert expected.shape == shapes.result_shape
    assert_same(fn(a, b), expected)
    program, out = trace_and_run(fn, a, b)
    assert program.results[0].type == TensorType(expected.shape, expected.dtype)
    assert_same(out, expected)


@st.composite
def shape_and_axis(draw):
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=3))
    nd = len(shape)
    kind = draw(st.sampled_from(["none", "int", "tuple"]) if nd else st.just("none"))
    if kind == "none":
        axis = None
    elif kind == "int":
        axis = draw(st.integers(-nd, nd - 1))
    else:
        axes = draw(st.lists(st.integers(0, nd - 1), unique=True, max_size=nd))
        axis = tuple(ax - nd if draw(st.booleans()) else ax for ax in axes)
    return shape, axis


@HSET
@given(sa=shape_and_axis(), keepdims=st.booleans(),
       op=st.sampled_from(["sum", "mean", "max", "min", "logsumexp"]), seed=st.integers(0, 2 ** 16))
def test_reductions_on_random_shapes_and_axes(sa, keepdims, op, seed):
    """traced == eager == NumPy for reductions over random axes (None, int, negative, tuples)."""
    shape, axis = sa
    x = np.random.default_rng(seed).uniform(-3, 3, shape)
    fn = getattr(ft, op)
    ref = (lambda a, axis, keepdims: np.log(np.sum(np.exp(a), axis=axis, keepdims=keepdims))) \
        if op == "logsumexp" else getattr(np, op)
    expected = np.asarray(ref(x, axis=axis, keepdims=keepdims))
    assert_same(fn(x, axis=axis, keepdims=keepdims), expected)
    program, out = trace_and_run(lambda a: fn(a, axis=axis, keepdims=keepdims), x)
    assert program.results[0].type == TensorType(expected.shape, expected.dtype)
    assert_same(out, expected)


@HSET
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4), seed=st.integers(0, 2 ** 16),
       data=st.data())
def test_softmax_and_layer_norm_on_random_shapes(shape, seed, data):
    x = np.random.default_rng(seed).uniform(-3, 3, shape)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    expected = _softmax_ref(x, axis)
    assert_same(ft.softmax(x, axis=axis), expected)
    _, out = trace_and_run(lambda a: ft.softmax(a, axis=axis), x)
    assert_same(out, expected)
    w, b = np.linspace(0.5, 1.5, shape[-1]), np.linspace(-1, 1, shape[-1])
    mu = x.mean(-1, keepdims=True)
    ln = (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + 1e-5) * w + b
    _, out = trace_and_run(lambda a: ft.layer_norm(a, w, b), x)
    assert_same(out, ln, rtol=1e-10, atol=1e-10)
