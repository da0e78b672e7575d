"""The combinators `map`, `scan`, `fold`, `reduce` against plain Python loops.

Each behaviour is checked three ways on the same (often ragged) inputs:

* eagerly (`ft.map(f, xs)` on FractalTensor values, the body a Python function),
* traced with `@ft.function` and run by the reference interpreter (the body an IR region),
* against a plain Python loop over the elements,

and every traced program passes `program.verify()`.  Hypothesis checks the
algebra that later compiler stages rely on: map fusion, fold == last(scan),
reduce == any re-association for an associative f, and reverse-scan duality.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fractal as ft
from fractal.lang.types import FractalTensorType, TensorType, TupleType

F64 = np.dtype("float64")
I64 = np.dtype("int64")
HSET = settings(max_examples=40, deadline=None)


# -- helpers --------------------------------------------------------------------------------

def rng_of(seed=0):
    return np.random.default_rng(seed)


def seq(lengths_or_n, shape=(1, 3), seed=0, dtype=np.float64):
    """A depth-1 list of n random tensors, or a ragged depth-2 batch for a list of lengths."""
    rng = rng_of(seed)
    if isinstance(lengths_or_n, int):
        return ft.fractal([rng.standard_normal(shape).astype(dtype) for _ in range(lengths_or_n)],
                          type=ft.FractalTensor[ft.Tensor[(shape, dtype)]] if lengths_or_n == 0 else None)
    return ft.fractal([[rng.standard_normal(shape).astype(dtype) for _ in range(n)] for n in lengths_or_n],
                      type=ft.FractalTensor[ft.FractalTensor[ft.Tensor[(shape, dtype)]]])


def trace_and_run(fn, *args):
    """Trace `fn`, verify its program, run the program with the reference interpreter."""
    f = ft.function(fn)
    program = f.trace(*args)
    program.verify()
    return program, f.interpret(*args)


def assert_close(actual, expected, tol=1e-12):
    """Nested equality of results: FractalTensors (same type and lengths), tuples, arrays."""
    if isinstance(actual, ft.FractalTensor):
        if isinstance(expected, ft.FractalTensor):
            assert actual.type == expected.type, f"{actual.type} != {expected.type}"
        assert len(actual) == len(expected), f"length {len(actual)} != {len(expected)}"
        for a, e in zip(actual, expected):
            assert_close(a, e, tol)
    elif isinstance(expected, tuple) and not isinstance(expected, np.ndarray):
        assert isinstance(actual, tuple) and len(actual) == len(expected)
        assert type(actual) is type(expected) or not hasattr(expected, "_fields")
        for a, e in zip(actual, expected):
            assert_close(a, e, tol)
    else:
        a, e = np.asarray(actual), np.asarray(expected)
        assert a.dtype == e.dtype and a.shape == e.shape, f"{a.dtype}{a.shape} != {e.dtype}{e.shape}"
        if e.dtype.kind == "f":
            np.testing.assert_allclose(a, e, rtol=tol, atol=tol)
        else:
            np.testing.assert_array_equal(a, e)


def only(region, op):
    """The single equation of `op` among a region's (top-level) equations."""
    (eqn,) = [e for e in region.eqns if e.op == op]
    return eqn


def eager_and_traced(fn, *args):
    """(eager result, traced-interpreted result, program) of `fn(*args)`; asserts they agree."""
    eager = fn(*args)
    program, traced = trace_and_run(fn, *args)
    assert_close(traced, eager)
    return eager, traced, program


# plain Python reference loops

def py_scan(f, xs, s, reverse=False):
    out = [None] * len(xs)
    for i in (reversed(range(len(xs))) if reverse else range(len(xs))):
        s = f(s, xs[i])
        out[i] = s
    return out


def py_fold(f, xs, s, reverse=False):
    for x in (reversed(list(xs)) if reverse else xs):
        s = f(s, x)
    return s


def cell(h, x, w, u):
    """An RNN cell, used as a scan body and in the Python reference alike."""
    return np.tanh(x @ w + h @ u)


W = rng_of(1).standard_normal((3, 3)) * 0.5
U = rng_of(2).standard_normal((3, 3)) * 0.5
H0 = np.zeros((1, 3))


def stacked(batch, w, u, h0):
    """map (batch) x fold (layers) x scan (time): `w`/`u` are lists of per-layer weights."""
    def one_sequence(xs):
        def layer(hs, wu):
            wl, ul = wu
            return ft.scan(lambda h, x: ft.tanh(x @ wl + h @ ul), hs, h0)
        return ft.fold(layer, ft.zip(w, u), xs)
    return ft.map(one_sequence, batch)


def py_stacked(batch, ws, us, h0):
    out = []
    for xs in batch:
        hs = list(xs)
        for w, u in zip(ws, us):
            hs = py_scan(lambda h, x: cell(h, x, w, u), hs, h0)
        out.append(hs)
    return out


# -- map ------------------------------------------------------------------------------------

def test_map_single_list():
    """map(f, xs)[i] == f(xs[i]) for every i."""
    xs = seq(5)
    eager, _, program = eager_and_traced(lambda xs: ft.map(lambda x: ft.tanh(x) * 2.0 + 1.0, xs), xs)
    assert_close(eager, [np.tanh(x) * 2.0 + 1.0 for x in xs])
    assert [e.op for e in program.body.eqns] == ["map"]
    assert program.results[0].type == FractalTensorType(TensorType((1, 3), F64))


def test_map_several_lists_are_zipped():
    """map(f, xs, ys, zs)[i] == f(xs[i], ys[i], zs[i]); ft.zip gives one tuple argument instead."""
    xs, ys, zs = seq(4, seed=1), seq(4, seed=2), seq(4, seed=3)
    expected = [x * y + z for x, y, z in zip(xs, ys, zs)]
    eager, _, program = eager_and_traced(lambda a, b, c: ft.map(lambda x, y, z: x * y + z, a, b, c), xs, ys, zs)
    assert_close(eager, expected)
    (m,) = program.body.eqns
    assert len(m.inputs) == 3 and len(m.regions[0].params) == 3
    eager, _, _ = eager_and_traced(lambda a, b: ft.map(lambda p: p[0] - p[1], ft.zip(a, b)), xs, ys)
    assert_close(eager, [x - y for x, y in zip(xs, ys)])


def test_map_of_unequal_lengths_is_a_length_error():
    xs, ys = seq(3), seq(4)
    with pytest.raises(ft.LengthError):
        ft.map(lambda x, y: x + y, xs, ys)
    f = ft.function(lambda a, b: ft.map(lambda x, y: x + y, a, b))
    f.trace(xs, ys).verify()  # lengths are runtime data: tracing succeeds ...
    with pytest.raises(ft.LengthError):
        f.interpret(xs, ys)  # ... and the interpreter reports the mismatch


def test_map_tuple_returns_give_a_tuple_of_lists():
    """A body returning (a, b) gives (FractalTensor of a's, FractalTensor of b's)."""
    xs = seq(4)
    fn = lambda xs: ft.map(lambda x: (x + 1.0, ft.sum(x), (x > 0).astype(ft.int64)), xs)  # noqa: E731
    eager, traced, program = eager_and_traced(fn, xs)
    for out in (eager, traced):
        assert isinstance(out, tuple) and len(out) == 3 and all(isinstance(o, ft.FractalTensor) for o in out)
    assert_close(eager, (ft.fractal([x + 1.0 for x in xs]), ft.fractal([np.sum(x) for x in xs]),
                         ft.fractal([(x > 0).astype(np.int64) for x in xs])))
    assert [v.type for v in program.results] == [FractalTensorType(TensorType((1, 3), F64)),
                                                 FractalTensorType(TensorType((), F64)),
                                                 FractalTensorType(TensorType((1, 3), I64))]
    assert program.out_tree == (None, None, None)


def test_nested_maps_over_a_ragged_batch():
    """map(map(f)) over ft<ft<...>> with lengths [3, 0, 1, 4] preserves the lengths."""
    batch = seq([3, 0, 1, 4])
    fn = lambda b: ft.map(lambda xs: ft.map(lambda x: ft.exp(x) - x, xs), b)  # noqa: E731
    eager, traced, program = eager_and_traced(fn, batch)
    assert traced.lengths() == [3, 0, 1, 4]
    assert_close(eager, [[np.exp(x) - x for x in xs] for xs in batch])
    (outer,) = program.body.eqns
    assert outer.op == "map" and [e.op for e in outer.regions[0].eqns] == ["map"]


def test_map_closes_over_outer_values():
    """A body may read traced values of enclosing regions, values computed before the map, and
    captured NumPy arrays (implicit parameters of the function, after its own)."""
    xs = seq(3)
    bias = rng_of(5).standard_normal((1, 3))
    const = np.arange(3.0)

    def fn(xs, w, bias):
        w2 = w * 2.0  # computed in the outer region
        return ft.map(lambda x: ft.map(lambda y: y @ w2 + bias + const + x, xs), xs)

    eager, _, program = eager_and_traced(fn, xs, W, bias)
    inner = [[y @ (W * 2.0) + bias + const + x for y in xs] for x in xs]
    assert_close(eager, inner)
    mul, outer = only(program.body, "mul"), only(program.body, "map")
    # the inner region reads %w2 and %bias from enclosing regions
    inner_eqn = outer.regions[0].eqns[-1]
    used = {v for e in inner_eqn.regions[0].eqns for v in e.inputs}
    assert mul.outputs[0] in used and program.params[2] in used
    assert mul.outputs[0] not in inner_eqn.regions[0].params


def test_map_over_an_empty_list_has_the_right_type():
    """Mapping over an empty list gives empty lists of the types f would return (eager: f is
    traced abstractly; traced: the region's result types)."""
    empty = seq(0)

    def fn(xs):
        return ft.map(lambda x: (x @ W, ft.sum(x, axis=1), ft.scan(lambda s, y: s + y, ft.slices(x[0]), x[0, 0] * 0.0)),
                      xs)

    eager, traced, program = eager_and_traced(fn, empty)
    types = [FractalTensorType(TensorType((1, 3), F64)), FractalTensorType(TensorType((1,), F64)),
             FractalTensorType(FractalTensorType(TensorType((), F64)))]
    for out in (eager, traced):
        assert [o.type for o in out] == types and all(len(o) == 0 for o in out)
    assert [v.type for v in program.results] == types
    # the same traced program on a non-empty list
    xs = seq(2)
    _, full = trace_and_run(fn, xs)
    assert_close(full[0], [x @ W for x in xs])
    assert_close(full[2], [np.cumsum(x[0]) for x in xs])


def test_map_empty_inner_lists_in_a_ragged_batch():
    batch = seq([0, 2, 0])
    eager, traced, _ = eager_and_traced(lambda b: ft.map(lambda xs: ft.map(lambda x: x * 3.0, xs), b), batch)
    assert traced.lengths() == [0, 2, 0]
    assert_close(eager, [[x * 3.0 for x in xs] for xs in batch])


def test_a_new_length_does_not_retrace():
    """List lengths are runtime data: one program serves every length."""
    f = ft.function(lambda xs: ft.map(lambda x: x + 1.0, xs))
    assert f.trace(seq(2)) is f.trace(seq(7))
    assert len(f(seq(7))) == 7


# -- scan -----------------------------------------------------------------------------------

def test_scan_is_inclusive_and_excludes_init():
    """scan(f, [x0..xn-1], s0) == [s1, ..., sn] with s(i+1) = f(s(i), x(i)): n outputs."""
    xs = seq(5)
    fn = lambda xs, w, u, h0: ft.scan(lambda h, x: ft.tanh(x @ w + h @ u), xs, h0)  # noqa: E731
    eager, traced, program = eager_and_traced(fn, xs, W, U, H0)
    expected = py_scan(lambda h, x: cell(h, x, W, U), list(xs), H0)
    assert len(traced) == len(xs) == 5
    assert_close(eager, expected)
    assert not np.allclose(traced[0], H0)  # init is not an output
    assert only(program.body, "scan").attrs == {"n_state": 1, "reverse": False}


def test_scan_running_sum_is_cumsum():
    xs = ft.from_numpy(np.arange(1, 7, dtype=np.int64).reshape(6, 1))
    eager, _, _ = eager_and_traced(lambda xs: ft.scan(lambda s, x: s + x, xs, np.zeros(1, np.int64)), xs)
    np.testing.assert_array_equal(eager.to_numpy().ravel(), [1, 3, 6, 10, 15, 21])


def test_reverse_scan_returns_states_in_original_order():
    """reverse=True: out[i] is the state after consuming x[n-1], x[n-2], ..., x[i]."""
    xs = ft.from_numpy(np.arange(4, dtype=np.int64).reshape(4, 1))
    step = lambda s, x: s * 10 + x  # noqa: E731  (order-sensitive)
    eager, _, program = eager_and_traced(lambda xs: ft.scan(step, xs, np.zeros(1, np.int64), reverse=True), xs)
    # consuming 3, 2, 1, 0 from the right: 3, 32, 321, 3210; out[i] belongs to x[i]
    np.testing.assert_array_equal(eager.to_numpy().ravel(), [3210, 321, 32, 3])
    assert only(program.body, "scan").attrs == {"n_state": 1, "reverse": True}
    ys = seq(6)
    eager, _, _ = eager_and_traced(
        lambda xs, w, u, h0: ft.scan(lambda h, x: ft.tanh(x @ w + h @ u), xs, h0, reverse=True), ys, W, U, H0)
    assert_close(eager, py_scan(lambda h, x: cell(h, x, W, U), list(ys), H0, reverse=True))


class State(NamedTuple):
    total: np.ndarray
    count: np.ndarray


def test_scan_with_tuple_and_namedtuple_states_gives_tuples_of_lists():
    """A (NamedTuple) state (a, b) gives (FractalTensor of a's, FractalTensor of b's), same class."""
    xs = seq(4)

    def step(s, x):
        return State(s.total + x, s.count + 1)

    init = State(np.zeros((1, 3)), np.zeros((), np.int64))
    eager, traced, program = eager_and_traced(lambda xs, init: ft.scan(step, xs, init), xs, init)
    for out in (eager, traced):
        assert type(out) is State and all(isinstance(o, ft.FractalTensor) for o in out)
    expected = py_scan(step, list(xs), init)
    assert_close(eager.total, [e.total for e in expected])
    assert_close(eager.count, [e.count for e in expected])
    assert [v.type for v in program.results] == [FractalTensorType(TensorType((1, 3), F64)),
                                                 FractalTensorType(TensorType((), I64))]

    pair = lambda xs: ft.scan(lambda s, x: (s[1], s[0] + x), xs, (np.zeros((1, 3)), np.ones((1, 3))))  # noqa: E731
    eager, traced, _ = eager_and_traced(pair, xs)
    assert type(traced) is tuple and len(traced) == 2
    assert_close(eager, tuple(ft.fractal(list(c)) for c in zip(*py_scan(lambda s, x: (s[1], s[0] + x), list(xs),
                                                                        (np.zeros((1, 3)), np.ones((1, 3)))))))


def test_scan_with_a_list_valued_state():
    """The state may itself be a FractalTensor: the scan result is one list level deeper."""
    rows = seq([3, 3, 3, 3], shape=(2,))  # 4 elements, each a list of 3 vectors
    add_lists = lambda s, x: ft.map(lambda a, b: a + b, s, x)  # noqa: E731
    eager, traced, program = eager_and_traced(lambda rows: ft.scan(add_lists, rows, rows[0]), rows)
    assert traced.type == FractalTensorType(FractalTensorType(TensorType((2,), F64)))
    acc, expected = list(rows[0]), []
    for r in rows:
        acc = [a + b for a, b in zip(acc, r)]
        expected.append(acc)
    assert_close(eager, expected)
    # fold with a list state (the state of a layer stack is a whole sequence)
    eager, _, _ = eager_and_traced(lambda rows: ft.fold(add_lists, rows, rows[0]), rows)
    assert_close(eager, expected[-1])


def test_scan_over_zipped_lists():
    xs, ys = seq(5, seed=1), seq(5, seed=2)
    fn = lambda xs, ys: ft.scan(lambda s, p: s * p[0] + p[1], ft.zip(xs, ys), np.ones((1, 3)))  # noqa: E731
    eager, _, _ = eager_and_traced(fn, xs, ys)
    assert_close(eager, py_scan(lambda s, p: s * p[0] + p[1], list(zip(xs, ys)), np.ones((1, 3))))


def test_scan_state_must_keep_its_type():
    xs = seq(3)
    with pytest.raises(ft.FractalTypeError):
        ft.scan(lambda s, x: ft.sum(s + x), xs, np.zeros((1, 3)))
    with pytest.raises(ft.FractalTypeError):
        ft.function(lambda xs: ft.scan(lambda s, x: ft.sum(s + x), xs, np.zeros((1, 3)))).trace(xs)


def test_scan_over_an_empty_list_is_empty():
    empty = seq(0)
    eager, traced, _ = eager_and_traced(lambda xs: ft.scan(lambda s, x: s + x, xs, np.ones((1, 3))), empty)
    assert len(traced) == 0 and traced.type == FractalTensorType(TensorType((1, 3), F64))


# -- fold and reduce ------------------------------------------------------------------------

@pytest.mark.parametrize("reverse", [False, True])
def test_fold_is_the_last_state(reverse):
    xs = seq(6)
    fn = lambda xs, w, u, h0: ft.fold(lambda h, x: ft.tanh(x @ w + h @ u), xs, h0, reverse=reverse)  # noqa: E731
    eager, traced, program = eager_and_traced(fn, xs, W, U, H0)
    assert isinstance(traced, np.ndarray)
    assert_close(eager, py_fold(lambda h, x: cell(h, x, W, U), list(xs), H0, reverse=reverse))
    assert only(program.body, "fold").attrs == {"n_state": 1, "reverse": reverse}


@pytest.mark.parametrize("op", ["fold", "reduce"])
def test_fold_and_reduce_of_an_empty_list_give_init(op):
    init = np.full((1, 3), 7.0)
    fn = lambda xs, init: getattr(ft, op)(lambda s, x: s * x, xs, init)  # noqa: E731
    eager, traced, _ = eager_and_traced(fn, seq(0), init)
    assert_close(traced, init)
    state = State(np.ones((1, 3)), np.zeros((), np.int64))
    eager, traced, _ = eager_and_traced(
        lambda xs, s: getattr(ft, op)(lambda s, x: State(s.total * x, s.count + 1), xs, s), seq(0), state)
    assert type(traced) is State
    assert_close(traced, state)


def test_reduce_is_a_left_fold_in_the_interpreter():
    """reduce(f, xs, init) has fold's value (the reference interpreter folds left)."""
    xs = seq(5)
    for f in (lambda s, x: s + x, lambda s, x: ft.maximum(s, x), lambda s, x: s @ W + x):
        eager, traced, program = eager_and_traced(lambda xs: ft.reduce(f, xs, np.zeros((1, 3))), xs)
        assert_close(eager, py_fold(lambda s, x: np.asarray(f(s, x)), list(xs), np.zeros((1, 3))))
        assert only(program.body, "reduce").attrs == {"n_state": 1}


# -- ragged: a batch of sequences of different lengths --------------------------------------

def test_map_of_scan_over_a_ragged_batch():
    """Each sequence is scanned independently over its own length (no padding semantics)."""
    batch = seq([4, 1, 0, 6, 2])

    def fn(batch, w, u, h0):
        return ft.map(lambda xs: ft.scan(lambda h, x: ft.tanh(x @ w + h @ u), xs, h0), batch)

    eager, traced, _ = eager_and_traced(fn, batch, W, U, H0)
    assert traced.lengths() == [4, 1, 0, 6, 2]
    assert_close(eager, [py_scan(lambda h, x: cell(h, x, W, U), list(xs), H0) for xs in batch])

    last = lambda b, w, u, h0: ft.map(lambda xs: ft.fold(lambda h, x: ft.tanh(x @ w + h @ u), xs, h0), b)  # noqa: E731
    eager, traced, _ = eager_and_traced(last, batch, W, U, H0)
    assert_close(eager, [py_fold(lambda h, x: cell(h, x, W, U), list(xs), H0) for xs in batch])


def test_stacked_model_trace_structure_and_values():
    """A stacked RNN traces to map { fold { scan { cell } } } and matches nested Python loops."""
    batch = seq([3, 0, 5])
    ws = ft.fractal([W, W.T, W * 0.5])
    us = ft.fractal([U, U.T, -U])
    eager, traced, program = eager_and_traced(stacked, batch, ws, us, H0)
    assert_close(eager, py_stacked(batch, list(ws), list(us), H0))
    assert traced.lengths() == [3, 0, 5]

    m = only(program.body, "map")
    fold = only(m.regions[0], "fold")
    scan = only(fold.regions[0], "scan")
    ops = [e.op for e in scan.regions[0].eqns]
    assert ops.count("matmul") == 2 and ops[-1] == "tanh"
    assert [e.op for e in program.eqns()].count("scan") == 1


# -- hypothesis: algebraic properties ---------------------------------------------------------

@st.composite
def float_list(draw, min_len=0, max_len=6):
    n = draw(st.integers(min_len, max_len))
    shape = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    seed = draw(st.integers(0, 2 ** 16))
    rng = rng_of(seed)
    return ft.fractal([rng.uniform(-1, 1, shape) for _ in range(n)], type=ft.FractalTensor[ft.Tensor[(shape, F64)]])


def f_elem(x):
    return ft.tanh(x) * 1.5 + 0.25


def g_elem(x):
    return ft.sin(x) - x * x


@HSET
@given(xs=float_list())
def test_map_fusion(xs):
    """map(g, map(f, xs)) == map(g . f, xs), eagerly and traced."""
    unfused = lambda xs: ft.map(g_elem, ft.map(f_elem, xs))  # noqa: E731
    fused = lambda xs: ft.map(lambda x: g_elem(f_elem(x)), xs)  # noqa: E731
    a, ta, _ = eager_and_traced(unfused, xs)
    b, tb, _ = eager_and_traced(fused, xs)
    assert_close(a, b)
    assert_close(ta, tb)
    assert len(a) == len(xs)


def step(s, x):
    return ft.tanh(s * 0.9 + x)


@HSET
@given(xs=float_list(min_len=1), reverse=st.booleans())
def test_fold_is_the_last_scan_state(xs, reverse):
    """fold(f, xs, s) == scan(f, xs, s)[-1]; with reverse=True, fold == scan(reverse)[0]."""
    s0 = np.zeros(xs.type.elem.shape)
    fold = lambda xs, s0: ft.fold(step, xs, s0, reverse=reverse)  # noqa: E731
    scan = lambda xs, s0: ft.scan(step, xs, s0, reverse=reverse)  # noqa: E731
    folded, _, _ = eager_and_traced(fold, xs, s0)
    scanned, _, _ = eager_and_traced(scan, xs, s0)
    assert_close(folded, scanned[0] if reverse else scanned[-1])
    assert_close(folded, py_fold(lambda s, x: np.tanh(s * 0.9 + x), list(xs), s0, reverse=reverse))


@HSET
@given(xs=float_list())
def test_reverse_scan_is_reverse_of_scan_of_reverse(xs):
    """scan(f, xs, s, reverse=True) == reverse(scan(f, reverse(xs), s))."""
    s0 = np.ones(xs.type.elem.shape)
    right = lambda xs, s0: ft.scan(step, xs, s0, reverse=True)  # noqa: E731
    mirrored = lambda xs, s0: ft.reverse(ft.scan(step, ft.reverse(xs), s0))  # noqa: E731
    a, ta, _ = eager_and_traced(right, xs, s0)
    b, tb, _ = eager_and_traced(mirrored, xs, s0)
    assert_close(a, b)
    assert_close(ta, tb)


def bracketed(f, elems, draw):
    """Evaluate f over `elems` (non-empty) along a random binary bracketing tree."""
    if len(elems) == 1:
        return elems[0]
    k = draw(st.integers(1, len(elems) - 1))
    return f(bracketed(f, elems[:k], draw), bracketed(f, elems[k:], draw))


ASSOCIATIVE = {
    "add": (lambda a, b: a + b, lambda shape: np.zeros(shape, np.int64)),
    "max": (lambda a, b: ft.maximum(a, b), lambda shape: np.full(shape, np.iinfo(np.int64).min)),
}


@HSET
@given(n=st.integers(0, 8), shape=st.lists(st.integers(1, 3), max_size=2).map(tuple),
       op=st.sampled_from(sorted(ASSOCIATIVE)), seed=st.integers(0, 2 ** 16), data=st.data())
def test_reduce_equals_any_reassociation(n, shape, op, seed, data):
    """For associative f with identity e (integer +, max: exact), reduce(f, xs, e) equals the
    value of f over ANY bracketing of the elements, and equals fold."""
    f, identity = ASSOCIATIVE[op]
    elems = [a for a in rng_of(seed).integers(-50, 50, (n,) + shape)]
    xs = ft.fractal(elems, type=ft.FractalTensor[ft.Tensor[(shape, I64)]])
    e = identity(shape)
    reduced, traced, program = eager_and_traced(lambda xs, e: ft.reduce(f, xs, e), xs, e)
    expected = bracketed(f, elems, data.draw) if elems else e
    assert_close(reduced, np.asarray(expected))
    folded, _, _ = eager_and_traced(lambda xs, e: ft.fold(f, xs, e), xs, e)
    assert_close(reduced, folded)
    only(program.body, "reduce")


@st.composite
def ragged_batch(draw):
    lengths = draw(st.lists(st.integers(0, 5), min_size=0, max_size=4))
    hidden = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2 ** 16))
    rng = rng_of(seed)
    batch = ft.fractal([[rng.uniform(-1, 1, (1, hidden)) for _ in range(n)] for n in lengths],
                       type=ft.FractalTensor[ft.FractalTensor[ft.Tensor[((1, hidden), F64)]]])
    w, u = rng.uniform(-0.7, 0.7, (2, hidden, hidden))
    return batch, w, u, np.zeros((1, hidden))


@HSET
@given(args=ragged_batch(), reverse=st.booleans())
def test_eager_equals_traced_on_random_ragged_batches(args, reverse):
    """map(scan) and map(fold) over random ragged batches: eager == interpreted == Python loops."""
    batch, w, u, h0 = args

    def model(batch, w, u, h0):
        def per_seq(xs):
            hs = ft.scan(lambda h, x: ft.tanh(x @ w + h @ u), xs, h0, reverse=reverse)
            last = ft.fold(lambda h, x: ft.tanh(x @ w + h @ u), xs, h0, reverse=reverse)
            return hs, last
        return ft.map(per_seq, batch)

    (hs, last), _, _ = eager_and_traced(model, batch, w, u, h0)
    assert hs.lengths() == batch.lengths()
    f = lambda h, x: cell(h, x, w, u)  # noqa: E731
    assert_close(hs, [py_scan(f, list(xs), h0, reverse=reverse) for xs in batch])
    assert_close(last, [py_fold(f, list(xs), h0, reverse=reverse) for xs in batch])


@HSET
@given(args=ragged_batch(), depth=st.integers(0, 3))
def test_stacked_model_on_random_ragged_batches(args, depth):
    batch, w, u, h0 = args
    ws = ft.fractal([w * (k + 1) / depth for k in range(depth)], type=ft.FractalTensor[ft.Tensor[(w.shape, F64)]])
    us = ft.fractal([u] * depth, type=ft.FractalTensor[ft.Tensor[(u.shape, F64)]])
    eager, _, _ = eager_and_traced(stacked, batch, ws, us, h0)
    expected = py_stacked(batch, list(ws), list(us), h0)
    assert len(eager) == len(expected)
    assert_close(eager, expected)
