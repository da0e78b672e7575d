"""`@ft.function`: tracing, annotations, parameter bundles, constants, caching."""

from typing import NamedTuple

import numpy as np
import pytest

import fractal as ft
from fractal.lang.ir import Program


class Cell(NamedTuple):
    w: np.ndarray
    b: np.ndarray


def _seqs(lengths, dim=3, seed=0):
    rng = np.random.default_rng(seed)
    return ft.fractal([[rng.standard_normal((1, dim)) for _ in range(n)] for n in lengths])


def test_trace_returns_a_verified_program_with_named_parameters():
    @ft.function
    def f(xs, cell: Cell):
        return ft.map(lambda x: ft.tanh(x @ cell.w + cell.b), xs)

    cell = Cell(np.eye(3), np.zeros((1, 3)))
    p = f.trace(_seqs([4])[0], cell)
    assert isinstance(p, Program)
    assert [v.name for v in p.params] == ["xs", "cell.w", "cell.b"]
    assert [e.op for e in p.body.eqns] == ["map"]
    p.verify()


def test_call_and_interpret_agree_with_eager_execution():
    def f(xs, w):
        return ft.scan(lambda h, x: np.tanh(h @ w + x) if not isinstance(h, ft.lang.tracing.Tracer)
                       else ft.tanh(h @ w + x), xs, ft.zeros((1, 3), ft.float64))

    xs, w = _seqs([5])[0], np.eye(3) * 0.5
    eager = f(xs, w)
    traced = ft.function(f)
    assert np.allclose(traced(xs, w).to_numpy(), eager.to_numpy())
    assert np.allclose(traced.interpret(xs, w).to_numpy(), eager.to_numpy())


def test_nested_tuple_results_keep_their_structure():
    @ft.function
    def f(xs):
        ys = ft.map(lambda x: (x * 2.0, (x + 1.0, -x)), xs)
        return ys[0], (ys[1][0], ys[1][1])

    a, (b, c) = f(_seqs([2])[0])
    x = _seqs([2])[0].to_numpy()
    assert np.allclose(a.to_numpy(), 2 * x) and np.allclose(b.to_numpy(), x + 1) and np.allclose(c.to_numpy(), -x)
    assert f.trace(_seqs([2])[0]).out_tree == (None, (None, None))


def test_captured_numpy_arrays_become_implicit_parameters():
    """(README, "Captured arrays"; tests/lang/test_captured_arrays.py has every path.)"""
    w = np.arange(9.0).reshape(3, 3)

    @ft.function
    def f(xs):
        return ft.map(lambda x: x @ w, xs)

    p = f.trace(_seqs([3])[0])
    assert not [e for e in p.eqns() if e.op == "const"]
    assert [v.name for v in p.body.params] == ["xs", "captured"] and p.body.params[1].type.shape == (3, 3)
    assert np.allclose(f(_seqs([3])[0]).to_numpy(), _seqs([3])[0].to_numpy() @ w)


def test_constructors_inside_a_trace_are_recorded_not_baked_in():
    @ft.function
    def f(xs):
        return ft.fold(lambda s, x: s + x, xs, ft.zeros((1, 3), ft.float64))

    p = f.trace(_seqs([3])[0])
    assert [e.op for e in p.body.eqns] == ["full", "fold"]


def test_traces_are_cached_per_types_not_per_lengths():
    calls = []

    @ft.function
    def f(xs):
        calls.append(1)
        return ft.map(lambda x: x + 1.0, xs)

    f(_seqs([3])[0])
    f(_seqs([7])[0])           # a new length: same program
    assert len(calls) == 1
    f(_seqs([2], dim=4)[0])    # a new leaf shape: a new program
    assert len(calls) == 2


def test_static_python_control_flow_runs_at_trace_time():
    @ft.function
    def f(xs, n_layers=2):
        for _ in range(n_layers):              # unrolled
            xs = ft.map(lambda x: x * 2.0 if x.shape[-1] == 3 else x, xs)
        return xs

    assert [e.op for e in f.trace(_seqs([2])[0]).body.eqns] == ["map", "map"]
    assert np.allclose(f(_seqs([2])[0]).to_numpy(), 4 * _seqs([2])[0].to_numpy())


def test_annotations_are_checked_and_may_be_omitted():
    @ft.function
    def f(xs: ft.FractalTensor[ft.Tensor[(1, 3), ft.float64]], w: ft.Tensor[(3, 3), ft.float64]):
        return ft.map(lambda x: x @ w, xs)

    f(_seqs([2])[0], np.eye(3))
    with pytest.raises(ft.FractalTypeError, match="annotated"):
        f(_seqs([2])[0], np.eye(4))


def test_programs_print_and_parse_back():
    @ft.function
    def f(batch, w):
        return ft.map(lambda xs: ft.scan(lambda h, x: ft.tanh(h @ w + x), xs, ft.zeros((1, 3), ft.float64)),
                      batch)

    p = f.trace(_seqs([2, 3]), np.eye(3))
    text = str(p)
    assert text.startswith("func @f(%batch: ft<ft<f64[1,3]>>, %w: f64[3,3]) -> ft<ft<f64[1,3]>>")
    assert ft.parse_program(text) == p


def test_the_same_udf_can_be_used_twice():
    """Each call traces fresh equations (the original's inlining reused nodes unsafely)."""
    def cell(x):
        return ft.tanh(x) * 2.0

    @ft.function
    def f(xs):
        return ft.map(cell, ft.map(cell, xs))

    p = f.trace(_seqs([2])[0]).verify()
    names = [v.name for e in p.eqns() for v in e.outputs]
    assert len(names) == len(set(names))
    x = _seqs([2])[0].to_numpy()
    assert np.allclose(f(_seqs([2])[0]).to_numpy(), np.tanh(np.tanh(x) * 2) * 2)


def test_traced_values_are_wrapped_by_the_tracer_of_their_type():
    """Tracing picks the tracer class by static type (`Tracer.BY_TYPE`): lists index and
    slice with a known length, tensors have NumPy-like operators."""
    from fractal.lang.tensor_tracer import TensorTracer
    from fractal.lang.tracing import ListTracer, Tracer

    assert Tracer.BY_TYPE == {ft.TensorType: TensorTracer, ft.FractalTensorType: ListTracer}
    seen = {}

    @ft.function
    def f(xs, w):
        seen["xs"], seen["w"], seen["last_half"] = xs, w, ft.split(xs, 2)[1:]
        return ft.map(lambda x: x @ w, xs)

    f.trace(_seqs([3])[0], np.eye(3))
    assert type(seen["xs"]) is ListTracer and type(seen["w"]) is TensorTracer
    assert type(seen["last_half"]) is ListTracer and seen["last_half"].static_len == 1  # split(xs, 2) has 2
