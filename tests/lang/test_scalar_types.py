"""Python numbers are weakly typed (issue 16): next to a tensor they take its dtype.

`ft.where(mask, 0.0, float("-inf"))`, `x * 2.0` and `x + 1` keep a float32 model float32
in eager code, in the traced program, in the interpreter and in the compiled backends alike,
as in JAX and PyTorch; an explicit NumPy float64 (a scalar or an array) still promotes.
"""

from __future__ import annotations

import numpy as np
import pytest

import fractal as ft

C = np.array([True, False, True, False])
X = np.arange(4, dtype=np.float32)


def dtypes(fn, *args) -> dict:
    """The result dtype of `fn(*args)` run eagerly, traced, interpreted and compiled."""
    f = ft.function(fn)
    return {"eager": np.asarray(fn(*args)).dtype,
            "program": f.trace(*args).results[0].type.dtype,
            "interpreter": np.asarray(f.interpret(*args)).dtype,
            "cpu": np.asarray(f(*args)).dtype,
            "pointwise": np.asarray(f(*args, backend="pointwise")).dtype}


WEAK = {
    "where of two Python floats": lambda c, x: ft.where(c, 0.0, float("-inf")) + x,
    "where of a tensor and a float": lambda c, x: ft.where(c, x, 0.0),
    "times a float": lambda c, x: x * 2.0,
    "plus an int": lambda c, x: x + 1,
    "an int minus": lambda c, x: 1 - x,
    "maximum with a float": lambda c, x: ft.maximum(x, 0.5),
}


@pytest.mark.parametrize("name", sorted(WEAK))
def test_python_numbers_keep_float32(name):
    assert set(dtypes(WEAK[name], C, X).values()) == {np.dtype(np.float32)}


@pytest.mark.parametrize("fn", [lambda c, x: x * np.float64(2.0), lambda c, x: x + np.ones(4),
                                lambda c, x: ft.where(c, x, np.float64(0.0))])
def test_numpy_float64_promotes(fn):
    assert set(dtypes(fn, C, X).values()) == {np.dtype(np.float64)}


def test_where_of_two_python_numbers_alone():
    assert ft.where(C, 0.0, 1.0).dtype == np.float32  # fractal's default float, as ft.zeros
    assert ft.where(C, 0, 1).dtype == np.int64
    assert ft.where(C, 0.5, 1).dtype == np.float32
    assert ft.where(C, True, False).dtype == np.bool_


def test_int_tensor_times_a_float_is_float64_as_in_numpy():
    assert set(dtypes(lambda c, x: x.astype(ft.int32) * 2.5, C, X).values()) == {np.dtype(np.float64)}


def test_swin_style_masked_window_attention_stays_float32():
    """The Swin model's output turned f64 (and 3x slower) through its attention mask."""
    rng = np.random.default_rng(0)
    windows = ft.from_numpy(rng.standard_normal((3, 4, 8)).astype(np.float32))
    allowed = rng.random((4, 4)) > 0.3
    allowed[np.arange(4), np.arange(4)] = True

    @ft.function
    def attend(ws, allowed):
        def one(q):
            mask = ft.where(allowed, 0.0, float("-inf"))
            return ft.softmax(q @ q.T * 0.5 + mask, axis=-1) @ q
        return ft.map(one, ws)

    got = attend(windows, allowed)
    assert attend.trace(windows, allowed).results[0].type == ft.FractalTensor[ft.Tensor[(4, 8), ft.float32]]
    assert got.to_numpy().dtype == np.float32
    q = windows.to_numpy()
    s = q @ q.transpose(0, 2, 1) * 0.5 + np.where(allowed, 0.0, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    want = (p / p.sum(-1, keepdims=True)) @ q
    assert np.allclose(got.to_numpy(), want, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("combinator", ["fold", "reduce", "scan"])
def test_a_python_float_initial_state_takes_the_elements_dtype(combinator, dtype):
    """`fold(f, xs, 0.0)` over float32 elements keeps a float32 state (float64 over float64),
    on every path: the Python float is weakly typed, as next to a tensor."""
    xs = ft.fractal([np.ones((1, 4), dtype)] * 3)
    agg = getattr(ft, combinator)

    def total(xs):
        out = agg(lambda s, x: s + ft.sum(x), xs, 0.0)
        return out[-1] if combinator == "scan" else out  # (a scan's last state)
    for path, got in dtypes(lambda c, xs: total(xs), None, xs).items():
        assert got == dtype, (path, got)
