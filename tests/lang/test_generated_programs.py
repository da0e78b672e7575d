"""Random fractal programs (tests/lang/strategies.py): tracing, the IR and its text form agree
with eager execution.

For every generated program (nests of map/scan/fold/reduce over ragged lists, access
operators, cell ops, closures, tuple states) and matching random input:

1. eager execution (the plain Python function on FractalTensors) and the traced program run
   by the reference interpreter give the same values, types and list lengths;
2. the traced program passes `verify()`;
3. its text form round-trips: `parse_program(str(p)) == p` and prints back identically;
4. the parsed program interprets to the same results as the original.

Hand-picked descriptions below pin down representative programs (and any shrunk failure)
as deterministic regression tests.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import fractal as ft
from tests.lang.strategies import (Access, ArgSpec, Binary, Comb, Const, Full, IdxFloat, LayerNorm, LengthF,
                                   LIndex, MatMul, ProgramDesc, Proj, Reduce, Ref, Scalar, Softmax, Stack,
                                   TIndex, Transpose, Unary, Where, assert_values_close, build,
                                   make_args, program_descs)

def _settings(n):
    return settings(max_examples=n, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def run_both(desc: ProgramDesc):
    """(eager result, interpreted result, traced program, its flat arguments) of one
    description (the flat arguments: the leaves of `args`, then any captured arrays)."""
    fn, args = build(desc), make_args(desc)
    eager = fn(*args)
    traced = ft.function(fn)
    program, _, flat = traced.traced(tuple(args), {})
    return eager, traced.interpret(*args), program, flat


def check_program(desc: ProgramDesc) -> None:
    """All four properties for one description."""
    eager, interpreted, program, flat = run_both(desc)
    assert_values_close(eager, interpreted)
    program.verify()
    text = str(program)
    parsed = ft.parse_program(text)
    assert parsed == program
    assert str(parsed) == text
    assert_values_close(tuple(parsed.interpret(*flat)), tuple(program.interpret(*flat)), rtol=0, atol=0)


# -- properties over random programs ----------------------------------------------------------

@_settings(100)
@given(program_descs())
def test_eager_equals_traced_and_interpreted(desc):
    """Eager execution and the interpreted trace agree (types, lengths, values to 1e-12)."""
    eager, interpreted, _, _ = run_both(desc)
    assert_values_close(eager, interpreted)


@_settings(60)
@given(program_descs())
def test_traced_programs_verify(desc):
    """Every traced program satisfies the IR's typing and scoping rules."""
    fn, args = build(desc), make_args(desc)
    ft.function(fn).trace(*args).verify()


@_settings(60)
@given(program_descs())
def test_text_round_trip_and_parsed_program_runs_the_same(desc):
    """`parse_program(str(p)) == p`, the parsed program prints identically, and it computes
    exactly what the original program computes on the same flat arguments."""
    fn, args = build(desc), make_args(desc)
    program, _, flat = ft.function(fn).traced(tuple(args), {})  # (captured arrays last)
    text = str(program)
    parsed = ft.parse_program(text)
    assert parsed == program
    assert str(parsed) == text
    assert_values_close(tuple(parsed.interpret(*flat)), tuple(program.interpret(*flat)), rtol=0, atol=0)


# -- deterministic regression programs ----------------------------------------------------------

def _rnn_cell(h, x, w):
    return Unary("tanh", Binary("add", MatMul(Ref(h), Ref(w)), Ref(x)))


# shifted_window(interleave(dilate(join(xs, gather(xs, [3, -1, 0]))[1:], 2)), 3, dilation=2)
_NEIGHBOURS = Access("shifted_window", (Access("interleave_dilate", (Access("slice", (
    Access("join", (Ref("xs0"), Access("gather", (Ref("xs0"),), (("indices", (3, -1, 0)),)))),),
    (("start", 1), ("stop", None), ("step", 1))),), (("d", 2),)),), (("size", 3), ("dilation", 2)))
# split(repeat(slices(C, axis=0), 2), 3): parts of lengths 1, 1, 0
_SPLIT_ROWS = Access("split", (Access("repeat", (Access("slices", (Const((3, 2), 11),), (("axis", 0),)),),
                                      (("n", 2),)),), (("n", 3),))

REGRESSIONS = {
    # map over a ragged batch (one sequence empty) of an RNN scan with an argument weight
    "batched_rnn_scan": ProgramDesc(
        args=(ArgSpec("xs0", (1, 3), (2, 0, 3), 2, 1), ArgSpec("w0", (3, 3), None, 0, 2)),
        results=(Comb("map", (Ref("xs0"),), ("seq",), (
            Comb("scan", (Ref("seq"),), ("x",), (_rnn_cell("h", "x", "w0"),),
                 init=(Full((1, 3), 0.0),), states=("h",)),)),)),
    # depth-3 nest; the innermost body reads the outer element `a` and the middle state `t`
    "closure_over_outer_element": ProgramDesc(
        args=(ArgSpec("xs0", (2,), 3, 1, 3), ArgSpec("xs1", (2,), ((1, 2), (), (3,)), 3, 4)),
        results=(Comb("map", (Ref("xs0"),), ("a",), (
            Comb("fold", (Ref("xs1"),), ("rows",), (
                Binary("add", Ref("t"), Comb("fold", (Access("flatten", (Ref("rows"),)),), ("x",), (
                    Binary("add", Ref("u"), Binary("mul", Ref("x"), Binary("add", Ref("a"), Ref("t")))),),
                    init=(Full((2,), 0.0),), states=("u",), reverse=True)),),
                init=(Scalar("mul", Ref("a"), 0.5),), states=("t",)),)),)),
    # windows with padding and dilation over ragged rows (short rows give no window),
    # a reversed fold with a tuple state, and softmax/keepdims reductions in the body
    "padded_windows_tuple_state": ProgramDesc(
        args=(ArgSpec("xs0", (2,), (3, 1, 0, 4), 2, 5),),
        results=(Comb("map", (Ref("xs0"),), ("row",), (
            Proj(Comb("fold", (Access("window", (Ref("row"),), (
                ("size", 2), ("stride", 2), ("dilation", 2), ("padding", 1), ("pad_value", 0.5))),),
                ("win",), (
                Binary("add", Ref("s1"), Softmax(Stack(Ref("win"), 2), axis=0)),
                Binary("maximum", Ref("s2"), Reduce("sum", Stack(Ref("win"), 2), None, False), "fn")),
                init=(Full((2, 2), 0.0), Full((), -1.0)), states=("s1", "s2"), tuple_out=True, reverse=True),
                0),
            LengthF(Ref("row"))), tuple_out=True),)),
    # product of two lists, flattened and enumerated, summed by an associative reduce
    "product_enumerate_reduce": ProgramDesc(
        args=(ArgSpec("xs0", (3,), 3, 1, 6), ArgSpec("xs1", (3,), 2, 1, 7)),
        results=(Comb("reduce", (Comb("map", (Access("enumerate", (Access("flatten", (
            Access("product", (Ref("xs0"), Ref("xs1"))),)),)),), (("i", ("x", "y")),), (
            Binary("add", Binary("mul", IdxFloat(Ref("i")), Ref("x")), Ref("y")),)),),
            ("e",), (Binary("add", Ref("acc"), Ref("e")),), init=(Full((3,), 0.0),), states=("acc",)),)),
    # empty lists everywhere: eager map over an empty list must still give typed results
    "empty_lists": ProgramDesc(
        args=(ArgSpec("xs0", (2, 2), (), 2, 8), ArgSpec("xs1", (2, 2), 0, 1, 9)),
        results=(Comb("map", (Ref("xs0"),), ("row",), (
            Access("reverse", (Ref("row"),)),
            Comb("fold", (Ref("row"),), ("x",), (Binary("add", Ref("s"), MatMul(Ref("x"), Const((2, 2), 1))),),
                 init=(Full((2, 2), 1.0),), states=("s",))), tuple_out=True),
            Comb("scan", (Access("window", (Ref("xs1"),), (
                ("size", 3), ("stride", 1), ("dilation", 1), ("padding", 0), ("pad_value", 0))),),
                ("w",), (Binary("add", Ref("s"), Reduce("mean", Stack(Ref("w"), 3), 0, False)),),
                init=(Full((2, 2), 0.0),), states=("s",)))),
    # structure-only access operators composed before iterating
    "access_operator_chain": ProgramDesc(
        args=(ArgSpec("xs0", (2,), 4, 1, 10),),
        results=(Comb("map", (_NEIGHBOURS,), ("nb",), (
            Binary("sub", LIndex(Ref("nb"), 1), Reduce("mean", Stack(Ref("nb"), 3), 0, False)),)),
            Comb("map", (_SPLIT_ROWS,), ("part",), (LengthF(Ref("part")),)))),
    # two zipped lists in one map; where/comparison, layer_norm, transpose, static tensor indexing
    "two_lists_cell_ops": ProgramDesc(
        args=(ArgSpec("xs0", (2, 3), 3, 1, 12), ArgSpec("xs1", (3, 2), 3, 1, 13), ArgSpec("b", (3,), None, 0, 14)),
        results=(Comb("map", (Ref("xs0"), Access("reverse", (Ref("xs1"),))), ("x", "y"), (
            Where("gt", Ref("x"), Transpose(Ref("y"), "attr"),
                  LayerNorm(Ref("x"), Full((3,), 1.0), Ref("b")), -0.5),
            TIndex(MatMul(Ref("y"), Ref("x"), "fn"), 1, None)), tuple_out=True),)),
    # shrunk by hypothesis: an `ft.function` body called from inside a trace (here the traced
    # fold) used to be *interpreted* on tracers instead of inlined into the enclosing trace
    "function_body_called_while_tracing": ProgramDesc(
        args=(ArgSpec("xs0", (), 0, 1, 0),),
        results=(Comb("fold", (Ref("xs0"),), ("e1",), (Binary("add", Ref("s2"), Ref("s2")),),
                      init=(Const((), 0),), states=("s2",), as_function=True),)),
    # ... and from an eager map's abstract pass over an empty list (nested function bodies)
    "function_bodies_over_empty_lists": ProgramDesc(
        args=(ArgSpec("xs0", (1, 2), (0, 2), 2, 15), ArgSpec("w0", (2, 2), None, 0, 16)),
        results=(Comb("map", (Ref("xs0"),), ("seq",), (
            Comb("scan", (Ref("seq"),), ("x",), (_rnn_cell("h", "x", "w0"),),
                 init=(Full((1, 2), 0.0),), states=("h",), as_function=True),), as_function=True),)),
}


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_regression_program(name):
    """Hand-picked programs satisfy all four properties."""
    check_program(REGRESSIONS[name])


def test_regression_values_against_numpy():
    """The batched RNN regression computes what a NumPy loop computes (ragged, one empty)."""
    desc = REGRESSIONS["batched_rnn_scan"]
    xs, w = make_args(desc)
    out = build(desc)(xs, w)
    assert out.lengths() == [2, 0, 3]
    for seq, hs in zip(xs, out):
        h = np.zeros((1, 3))
        for x, got in zip(seq, hs):
            h = np.tanh(h @ w + x)
            np.testing.assert_allclose(got, h, rtol=1e-12, atol=1e-12)


def test_function_called_inside_an_eager_map_over_an_empty_batch():
    """The README pattern `ft.map(lambda xs: rnn(xs, w), batch)` also works for an empty batch
    (eager map traces its body to type the empty result) and inside another traced function."""
    @ft.function
    def rnn(xs, w):
        return ft.scan(lambda h, x: ft.tanh(x @ w + h), xs, ft.zeros((1, 2), ft.float64))

    w = np.eye(2) * 0.5
    empty = ft.fractal([], type=ft.FractalTensor[ft.FractalTensor[ft.Tensor[(1, 2), ft.float64]]])
    out = ft.map(lambda xs: rnn(xs, w), empty)
    assert out.type == empty.type and len(out) == 0

    @ft.function
    def batched(batch):
        return ft.map(lambda xs: rnn(xs, w), batch)

    batch = ft.fractal([[np.full((1, 2), 0.5)] * 2, []])
    program = batched.trace(batch).verify()
    assert "scan" in str(program)
    assert_values_close(batched(batch), ft.map(lambda xs: rnn(xs, w), batch))
