"""NumPy arrays a traced function captures are implicit arguments (README, "Captured arrays").

Specification checked here:

* A captured array (a global or closure variable used in the body) is a parameter of the
  traced program after the function's own (`%captured`), one per array however often used.
* Its value is read at every call, on every path: eager, `f(...)` (the cpu backend),
  `f.interpret`, `f.compile(...)(...)`, and the pointwise and interpreter backends; so an
  in-place change (`C[...] = 2`) is seen by the next call whatever the cache holds, and a
  retrace (new argument dtype) sees the same value as a cached trace.
* Rebinding the name (`C = other`) is not seen while the trace is cached: the trace holds the
  object it captured.  An array resized in place is traced again.
* 0-d arrays, NumPy scalars and Python numbers are constants, baked in where used.
"""

from __future__ import annotations

import numpy as np
import pytest

import fractal as ft


def ones(n=3, dtype=np.float32):
    return ft.fractal([np.ones((1, 4), dtype)] * n)


def first(out) -> float:
    return float(out.to_numpy()[0, 0, 0])


PATHS = {
    "call (cpu)": lambda f, a: f(a),
    "interpret": lambda f, a: f.interpret(a),
    "compile": lambda f, a: f.compile(a)(a),
    "pointwise": lambda f, a: f(a, backend="pointwise"),
    "interpreter backend": lambda f, a: f(a, backend="interpreter"),
}


@pytest.mark.parametrize("path", PATHS)
def test_an_in_place_change_of_a_captured_array_is_seen_by_the_next_call(path):
    C = np.ones((1, 4), np.float32)
    f = ft.function(lambda xs: ft.map(lambda x: x * C, xs))
    run = PATHS[path]
    assert first(run(f, ones())) == 1.0
    C[...] = 2
    assert first(run(f, ones())) == 2.0
    assert first(run(f, ones(5))) == 2.0  # another size: compiled again, the same value
    C[...] = 3
    assert first(run(f, ones(dtype=np.float64))) == 3.0  # a retrace (float64) sees what a cached trace does
    assert first(run(f, ones())) == 3.0


def test_eager_combinators_read_the_array_as_it_is():
    C = np.ones((1, 4), np.float32)
    assert first(ft.map(lambda x: x * C, ones())) == 1.0
    C[...] = 2
    assert first(ft.map(lambda x: x * C, ones())) == 2.0


def test_a_captured_array_is_one_parameter_after_the_functions_own_however_often_used():
    W = np.eye(4, dtype=np.float32)

    @ft.function
    def f(xss, h0):
        return ft.map(lambda xs: ft.scan(lambda h, x: h @ W + x @ W, xs, h0), xss)

    xss = ft.fractal([[np.ones((1, 4), np.float32)] * 2] * 3)
    h0 = np.zeros((1, 4), np.float32)
    program = f.trace(xss, h0)
    assert [p.name for p in program.body.params] == ["xss", "h0", "captured"]
    assert str(program).count("%captured") >= 3  # the parameter, and its uses inside the scan
    np.testing.assert_array_equal(f.interpret(xss, h0).to_numpy()[:, :, 0, 0], [[1, 2]] * 3)  # h = h W + x W
    W *= 2
    np.testing.assert_array_equal(f(xss, h0).to_numpy()[:, :, 0, 0], [[2, 6]] * 3)
    np.testing.assert_array_equal(f.interpret(xss, h0).to_numpy()[:, :, 0, 0], [[2, 6]] * 3)


def test_rebinding_the_name_is_not_seen_while_the_trace_is_cached():
    scale = {"C": np.ones((1, 4), np.float32)}
    f = ft.function(lambda xs: ft.map(lambda x: x * scale["C"], xs))
    assert first(f(ones())) == 1.0
    scale["C"] = np.full((1, 4), 5.0, np.float32)  # a new object: the cached trace holds the old one
    assert first(f(ones())) == 1.0
    assert first(f.interpret(ones())) == 1.0


def test_an_array_resized_in_place_is_traced_again():
    C = np.ones(4, np.float32)
    f = ft.function(lambda x: ft.sum(x * C))
    assert float(f.interpret(np.ones(4, np.float32))) == 4.0
    C.resize(2, refcheck=False)
    C[...] = 3
    with pytest.raises(ft.FractalError):  # traced again for f32[2]: x (f32[4]) * C (f32[2])
        f.interpret(np.ones(4, np.float32))
    assert float(f.interpret(np.ones(2, np.float32))) == 6.0


def test_scalars_and_zero_d_arrays_are_constants():
    c0 = np.array(2.0, np.float32)
    f = ft.function(lambda x: x * c0 * np.float32(3) + 1.0)
    program = f.trace(np.ones(2, np.float32))
    assert [p.name for p in program.body.params] == ["x"]
    assert f.interpret(np.ones(2, np.float32)).tolist() == [7.0, 7.0]


def test_the_analysis_sees_a_captured_array_as_an_input():
    W = np.ones((4, 4), np.float32)
    f = ft.function(lambda xs: ft.map(lambda x: x @ W, xs))
    analysis = ft.analyze(f, ones())
    assert analysis is not None and "captured" in str(ft.explain(f, ones()))
