"""Zero-size tensors and empty lists: the compiled backends agree with the interpreter (issue 16).

`mean` and `layer_norm` divided by a zero count in the lowering (a `ZeroDivisionError`), and
`softmax` and `logsumexp` reduced `max` over an empty axis in the cpu backend (NumPy's
`ValueError`: no identity).  Now the mean of nothing is NaN, the max of nothing -inf (so
`logsumexp` of nothing is -inf, as `log(sum([]))`), everywhere.  The properties run each
function on the `cpu` and `pointwise` backends (compiled, not an interpreter fallback) and
compare with the reference interpreter, NaN equal to NaN.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fractal as ft

BACKENDS = ("cpu", "pointwise")


def assert_same(got, want) -> None:
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want)
        for g, w in zip(got, want):
            assert_same(g, w)
    elif isinstance(want, ft.FractalTensor):
        assert isinstance(got, ft.FractalTensor) and got.type == want.type, (got, want)
        assert got.lengths() == want.lengths()
        for g, w in zip(got, want):
            assert_same(g, w)
    else:
        got, want = np.asarray(got), np.asarray(want)
        assert got.dtype == want.dtype and got.shape == want.shape, (got, want)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, equal_nan=True)


def check_backends(f, *args) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's "mean of empty slice"
        want = f.interpret(*args)
        for backend in BACKENDS:
            assert_same(f.compile(*args, backend=backend).run(*args), want)


def _layer_norm(x, axis):
    return ft.layer_norm(x, ft.ones(x.shape[-1:]), ft.zeros(x.shape[-1:]))


TENSOR_OPS = {
    "sum": lambda x, axis: ft.sum(x, axis=axis),
    "mean": lambda x, axis: ft.mean(x, axis=axis),
    "softmax": lambda x, axis: ft.softmax(x, axis=axis),
    "logsumexp": lambda x, axis: ft.logsumexp(x, axis=axis),
    "logsumexp_keepdims": lambda x, axis: ft.logsumexp(x, axis=axis, keepdims=True),
    "layer_norm": _layer_norm,
}

zero_size_shapes = st.lists(st.integers(0, 3), min_size=1, max_size=3).filter(lambda s: 0 in s)


@settings(max_examples=30, deadline=None)
@given(op=st.sampled_from(sorted(TENSOR_OPS)), shape=zero_size_shapes, in_map=st.booleans(), data=st.data())
def test_tensor_ops_on_zero_size_tensors(op, shape, in_map, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    rule = TENSOR_OPS[op]
    x = np.ones(shape, np.float32)
    if in_map:  # the same op on each element of a list (a batch dim in the tile IR)
        f = ft.function(lambda xs: ft.map(lambda e: rule(e, axis), xs))
        check_backends(f, ft.from_numpy(np.stack([x, 2 * x])))
    else:
        check_backends(ft.function(lambda e: rule(e, axis)), x)


@pytest.mark.parametrize("op, want", [("mean", np.nan), ("logsumexp", -np.inf), ("sum", 0.0)])
def test_reductions_of_nothing(op, want):
    f = ft.function(lambda x: TENSOR_OPS[op](x, -1))
    x = np.ones((2, 0), np.float32)
    for backend in BACKENDS:
        got = f.compile(x, backend=backend).run(x)
        assert got.shape == (2,) and np.array_equal(got, np.full(2, want, np.float32), equal_nan=True)


E = ft.Tensor[(2,), ft.float32]
ZERO = lambda: ft.zeros((2,))  # noqa: E731

# functions of a list of lists of f32[2]: combinators over the outer list, the inner lists, both
NESTED = {
    "map of map": lambda xss: ft.map(lambda xs: ft.map(lambda x: x * 2.0 + 1.0, xs), xss),
    "map of scan": lambda xss: ft.map(lambda xs: ft.scan(lambda h, x: h * 0.5 + x, xs, ZERO()), xss),
    "map of fold": lambda xss: ft.map(lambda xs: ft.fold(lambda h, x: h + x, xs, ZERO() + 1.0), xss),
    "map of reverse scan": lambda xss: ft.map(lambda xs: ft.scan(lambda h, x: h - x, xs, ZERO(), reverse=True), xss),
    "map of reduce": lambda xss: ft.map(lambda xs: ft.reduce(lambda a, b: a + b, xs, ZERO()), xss),
    "fold of reduce": lambda xss: ft.fold(lambda acc, xs: acc + ft.reduce(lambda a, b: a + b, xs, ZERO()),
                                          xss, ZERO()),
    "scan of map": lambda xss: ft.scan(lambda h, xs: h + ft.fold(lambda a, b: a + b, ft.map(ft.tanh, xs), ZERO()),
                                       xss, ZERO()),
    "fold of flatten": lambda xss: ft.fold(lambda h, x: h + x, ft.flatten(xss), ZERO()),
}

lengths = st.lists(st.integers(0, 2), min_size=0, max_size=3).filter(lambda ls: not ls or 0 in ls)


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(sorted(NESTED)), lengths=lengths)
def test_combinators_over_empty_lists_at_every_level(name, lengths):
    """Lists of lists where the outer list, or some inner list, is empty."""
    xss = ft.fractal([[np.full(2, i + 10 * j, np.float32) for i in range(n)] for j, n in enumerate(lengths)],
                     type=ft.FractalTensor[ft.FractalTensor[E]])
    check_backends(ft.function(NESTED[name]), xss)


@pytest.mark.parametrize("combinator", ["map", "scan", "fold", "reduce"])
def test_combinators_over_an_empty_flat_list(combinator):
    xs = ft.fractal([], type=ft.FractalTensor[E])
    body = {"map": lambda xs: ft.map(ft.tanh, xs),
            "scan": lambda xs: ft.scan(lambda h, x: h + x, xs, ZERO()),
            "fold": lambda xs: ft.fold(lambda h, x: h + x, xs, ZERO() + 3.0),
            "reduce": lambda xs: ft.reduce(lambda a, b: a + b, xs, ZERO())}[combinator]
    check_backends(ft.function(body), xs)
