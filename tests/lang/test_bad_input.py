"""Bad input at the public entry points: one test per message (issue 16).

Each mistake raises exactly the named `ft.FractalError` subclass, with the key words of its
message, located at the user's line (the line of this file marked `# <- here`, quoted in the
message), with no internal exception chained under it.  Valid input that used to be refused
(NumPy ints, `**kwargs`, a list of zipped lists) is pinned here too.
"""

from __future__ import annotations

import inspect
import linecache
import sys
import typing

import numpy as np
import pytest

import fractal as ft
from fractal.lang.verify import operand_count
from fractal.lower import parse_tile_program

HERE = "# <- here"
XS = ft.from_numpy(np.ones((3, 1, 4), np.float32))  # ft<f32[1,4]>, length 3


def marked_line() -> int:
    caller = sys._getframe(2)
    lines, first = inspect.getsourcelines(caller.f_code)
    hits = [first + i for i, text in enumerate(lines) if text.rstrip().endswith(HERE)]
    assert len(hits) == 1, f"the test must mark exactly one line with {HERE!r}"
    return hits[0]


def assert_at_mark(err: BaseException, cls: type) -> None:
    """`err` is exactly a `cls`, at the caller's `# <- here` line, with nothing chained."""
    assert type(err) is cls and isinstance(err, ft.FractalError), type(err)
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)
    line = marked_line()
    assert err.loc.file.endswith("test_bad_input.py") and err.loc.line == line, (err.loc, line)
    assert linecache.getline(__file__, line).strip() in str(err)


# -- values accepted silently before ----------------------------------------------------------

def test_gather_with_float_indices():
    with pytest.raises(ft.FractalTypeError, match=r"gather: indices must be a 1-D list of ints, got list \[0.9, 2.7\]") as e:
        ft.gather(XS, [0.9, 2.7])  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_gather_with_2d_indices():
    with pytest.raises(ft.FractalTypeError, match=r"1-D list of ints, got a 2-D array of shape \(2, 2\)") as e:
        ft.gather(XS, np.array([[0, 1], [1, 2]]))  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_gather_with_string_indices():
    with pytest.raises(ft.FractalTypeError, match=r"gather: indices must be a 1-D list of ints, got list \['a'\]") as e:
        ft.gather(XS, ["a"])  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_gather_with_numpy_and_empty_indices_still_works():
    assert ft.gather(XS, np.array([2, 0], np.int32)).lengths() == 2
    assert ft.gather(XS, []).lengths() == 0


def test_zeros_with_float_shape():
    with pytest.raises(ft.FractalTypeError, match=r"zeros: each dimension of shape \(2.5, 1.9\) must be an int, got float 2.5") as e:
        ft.zeros((2.5, 1.9))  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_zeros_with_string_shape():
    with pytest.raises(ft.FractalTypeError, match=r"zeros: shape \(an int or a tuple of ints\) must be an int, got str 'ab'") as e:
        ft.zeros("ab")  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_shapes_take_numpy_ints():
    assert ft.zeros((np.int64(2), np.int32(3))).shape == (2, 3)
    assert ft.reshape(np.ones(6), (np.int64(2), 3)).shape == (2, 3)


def test_fractal_with_none_leaf():
    with pytest.raises(ft.FractalTypeError, match=r"ft.fractal: leaf NoneType None is not a number") as e:
        ft.fractal([None, 1.0], type=ft.FractalTensor[ft.Tensor[(), ft.float64]])  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_fractal_with_string_leaf():
    with pytest.raises(ft.FractalTypeError, match=r"leaf str 'a' is not a number") as e:
        ft.fractal([np.ones(2), "a"])  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_from_numpy_depth_bool():
    with pytest.raises(ft.FractalTypeError, match=r"from_numpy: depth must be between 1 and the array's ndim \(2\), got True") as e:
        ft.from_numpy(np.ones((2, 2)), depth=True)  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_from_numpy_depth_numpy_int():
    xs = ft.from_numpy(np.ones((2, 3, 4)), depth=np.int64(2))
    assert xs.type == ft.FractalTensor[ft.FractalTensor[ft.Tensor[(4,), ft.float64]]]


def test_from_numpy_of_ragged_lists():
    with pytest.raises(ft.FractalTypeError, match=r"from_numpy: the data is not a dense array.*ft.fractal") as e:
        ft.from_numpy([[1.0, 2.0], [3.0]])  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_fractal_of_zipped_lists_is_a_list_of_them():
    a, b = ft.from_numpy(np.arange(6.0).reshape(3, 2)), ft.from_numpy(np.arange(3))
    z = ft.fractal([ft.zip(a, b), ft.zip(a[:1], b[:1])])
    assert z.type == ft.FractalTensor[ft.FractalTensor[ft.TupleType((a.elem_type, b.elem_type))]]
    assert z.lengths() == [3, 1]
    x, i = z[0][2]
    assert np.array_equal(x, [4.0, 5.0]) and i == 2


def test_fractal_of_zipped_and_plain_lists():
    a = ft.from_numpy(np.ones((2, 2)))
    with pytest.raises(ft.FractalTypeError, match=r"must hold only zipped lists") as e:
        ft.fractal([ft.zip(a, a), [np.ones(2)]])  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_function_with_var_keywords():
    traces = []

    @ft.function
    def scaled(x, **kwargs):
        traces.append(1)
        return x * kwargs["alpha"] + kwargs["beta"]

    x = np.ones(3, np.float32)
    assert np.allclose(scaled(x, alpha=np.float32(2), beta=np.ones(3, np.float32)), 3.0)
    assert np.allclose(scaled(x, beta=np.zeros(3, np.float32), alpha=np.float32(3)), 3.0)
    assert len(traces) == 1  # the same keys and types: one trace
    assert [v.name for v in scaled.trace(x, alpha=np.float32(2), beta=x).params] == ["x", "kwargs.alpha", "kwargs.beta"]


# -- eager scan / fold / reduce over an empty list check the body ------------------------------

@pytest.mark.parametrize("combinator", [ft.scan, ft.fold, ft.reduce])
def test_eager_empty_aggregate_checks_the_body(combinator):
    w = np.ones((5, 3), np.float32)
    with pytest.raises(ft.ShapeError, match=r"matmul: inner dimensions differ \(4 vs 5\).*f32\[1,4\] @ f32\[5,3\]") as e:
        combinator(lambda h, x: h + x @ w, XS[0:0], np.zeros((1, 3), np.float32))  # <- here
    assert_at_mark(e.value, ft.ShapeError)


def test_eager_empty_scan_checks_the_state_type():
    with pytest.raises(ft.FractalTypeError, match=r"scan: the state must keep its type, but init is f32\[1,4\] and f returns f64\[1,4\]") as e:
        ft.scan(lambda h, x: (h + x).astype(ft.float64), XS[0:0], np.zeros((1, 4), np.float32))  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_eager_empty_scan_of_a_right_body():
    out = ft.scan(lambda h, x: h + x, XS[0:0], np.zeros((1, 4), np.float32))
    assert len(out) == 0 and out.type == XS.type
    assert np.array_equal(ft.fold(lambda h, x: h + x, XS[0:0], np.ones((1, 4), np.float32)), np.ones((1, 4)))


# -- internal errors that are now clear ---------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    ("%c: f32[2] = sigmoid(%a, %b)", "sigmoid takes 1 operand, got 2"),
    ("%c: f32[2,2] = matmul(%a)", "matmul takes 2 operands, got 1"),
    ("%c: f32[2,2] = transpose() {axes=none}", "transpose takes 1 operand, got 0"),
    ("%c: f32[2] = where(%a, %b)", "where takes 3 operands, got 2"),
])
def test_verify_names_the_operand_count(text, message):
    program = ft.parse_program("func @f(%a: f32[2,2], %b: f32[2]) -> f32[2] {\n  " + text + "\n  return %b\n}")
    with pytest.raises(ft.VerifyError, match=message):
        program.verify()


def test_operand_counts_of_the_op_table():
    from fractal.lang.registry import OPS
    expect = {"add": 2, "tanh": 1, "where": 3, "layer_norm": 3, "full": 0, "const": 0, "gather": 1,
              "gather_dynamic": 2, "window": 1, "product": 2, "concat": None, "zip": None, "const_list": 0}
    assert {op: operand_count(op) for op in expect} == expect
    assert all(operand_count(op) is None or operand_count(op) >= 0 for op in OPS)


@pytest.mark.parametrize("bad", [None, b"func @f() -> f32[] { return %a }", 3])
def test_parse_program_of_a_non_string(bad):
    with pytest.raises(ft.FractalTypeError, match=rf"parse_program takes the text as a str, got {type(bad).__name__}") as e:
        ft.parse_program(bad)  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


@pytest.mark.parametrize("bad", [None, b"tile @t { }", 3.5])
def test_parse_tile_program_of_a_non_string(bad):
    with pytest.raises(ft.FractalTypeError, match=rf"parse_tile_program takes the text as a str, got {type(bad).__name__}") as e:
        parse_tile_program(bad)  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_deeply_nested_tile_text():
    text = "tile @t {\n  y[0] = " + "max(" * 300 + "x[0]" + ")" * 300 + "\n}"
    with pytest.raises(ft.ParseError, match=r"line 2, column \d+: brackets nest more than 200 deep"):
        parse_tile_program(text)


def test_deeply_nested_program_text():
    t = "ft<" * 500 + "f32[1]" + ">" * 500
    with pytest.raises(ft.ParseError, match=r"line 1, column \d+: brackets nest more than 200 deep"):
        ft.parse_program(f"func @f(%a: {t}) -> {t} {{\n  return %a\n}}")


def test_nesting_within_the_limit_parses():
    t = "ft<" * 150 + "f32[1]" + ">" * 150
    assert ft.parse_program(f"func @f(%a: {t}) -> {t} {{\n  return %a\n}}").params[0].type.depth == 150


def test_map_of_a_string():
    with pytest.raises(ft.FractalTypeError, match=r"map: the body must be a function, got str 'f'") as e:
        ft.map("f", XS)  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_map_body_of_the_wrong_arity():
    with pytest.raises(ft.FractalTypeError, match=r"map: the body <lambda>\(a, b\) cannot be called with 1 argument \(one element\)") as e:
        ft.map(lambda a, b: a, XS)  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_scan_body_of_the_wrong_arity():
    @ft.function
    def f(xs):
        return ft.scan(lambda h: h, xs, ft.zeros((1, 4)))  # <- here

    with pytest.raises(ft.FractalTypeError, match=r"scan: the body <lambda>\(h\) cannot be called with 2 arguments \(the state and one element\)") as e:
        f.trace(XS)
    assert_at_mark(e.value, ft.FractalTypeError)


def test_int32_tensor_plus_a_too_large_int():
    @ft.function
    def f(x):
        return x + 3000000000  # <- here

    with pytest.raises(ft.FractalTypeError, match=r"the Python int 3000000000 does not fit the int32 tensor") as e:
        f.trace(np.ones(2, np.int32))
    assert_at_mark(e.value, ft.FractalTypeError)


def test_eager_int32_maximum_with_a_too_large_int():
    with pytest.raises(ft.FractalTypeError, match=r"does not fit the int32 tensor") as e:
        ft.maximum(np.ones(2, np.int32), 3000000000)  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_list_slice_step_zero():
    with pytest.raises(ft.ArgumentError, match=r"list slice: step must not be zero") as e:
        XS[::0]  # <- here
    assert_at_mark(e.value, ft.ArgumentError)


def test_traced_list_slice_with_a_float_bound():
    @ft.function
    def f(xs):
        return xs[1.5:]  # <- here

    with pytest.raises(ft.FractalTypeError, match=r"list slice bounds must be ints or None, got float 1.5") as e:
        f.trace(XS)
    assert_at_mark(e.value, ft.FractalTypeError)


def test_sum_axis_string():
    with pytest.raises(ft.FractalTypeError, match=r"sum: axis \(an int, a tuple of ints or None\) must be an int, got str 'a'") as e:
        ft.sum(np.ones(3), axis="a")  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_mean_keepdims_string():
    with pytest.raises(ft.FractalTypeError, match=r"mean: keepdims must be True or False, got str 'no'") as e:
        ft.mean(np.ones(3), keepdims="no")  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_window_pad_value_string():
    with pytest.raises(ft.FractalTypeError, match=r"window: pad_value must be a number, got str 'x'") as e:
        ft.window(XS, 2, padding=1, pad_value="x")  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_window_takes_numpy_ints():
    assert ft.window(XS, np.int64(2), stride=np.int32(1)).lengths() == [2, 2]


def test_to_numpy_pad_value_string():
    ragged = ft.fractal([[np.ones(2)], [np.ones(2), np.ones(2)]])
    with pytest.raises(ft.FractalTypeError, match=r"to_numpy: pad_value must be a number, got str 'x'") as e:
        ragged.to_numpy(pad_value="x")  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_explain_of_none():
    with pytest.raises(ft.FractalTypeError, match=r"ft.explain takes an @ft.function, got NoneType") as e:
        ft.explain(None)  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_function_of_a_number():
    with pytest.raises(ft.FractalTypeError, match=r"ft.function takes a Python function, got int 3") as e:
        ft.function(3)  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_unbounded_recursion_while_tracing():
    @ft.function
    def f(x):
        return f(x + 1.0)  # <- here

    with pytest.raises(ft.TraceError, match=r"f recursed without end while it was traced") as e:
        f(np.ones(2))
    assert_at_mark(e.value, ft.TraceError)


def test_eager_map_body_shape_mistake():
    w = np.ones((5, 3), np.float32)
    with pytest.raises(ft.ShapeError, match=r"matmul: inner dimensions differ \(4 vs 5\) in f32\[1,4\] @ f32\[5,3\]") as e:
        ft.map(lambda x: x @ w, XS)  # <- here
    assert_at_mark(e.value, ft.ShapeError)


def test_eager_scan_body_shape_mistake():
    def cell(h, x):
        return h + x.reshape(2, 2)  # <- here

    with pytest.raises(ft.ShapeError, match=r"reshape: cannot reshape f32\[1,4\] \(4 elements\) into \(2, 2\)|"
                                            r"add: shapes f32\[1,4\] and f32\[2,2\] do not broadcast") as e:
        ft.scan(cell, XS, np.zeros((1, 4), np.float32))
    assert_at_mark(e.value, ft.ShapeError)


def test_eager_body_failure_that_tracing_cannot_explain():
    def body(x):
        return x[int(x[0, 0]) + 5]  # <- here

    with pytest.raises(ft.FractalError, match=r"map: the body failed on the elements \(element f32\[1,4\]\): IndexError") as e:
        ft.map(body, XS)
    assert_at_mark(e.value, ft.FractalError)


# -- Compiled.run names the argument ------------------------------------------------------------

@ft.function
def _project(xs, w):
    return ft.map(lambda x: x @ w, xs)


W = np.ones((4, 4), np.float32)


@pytest.fixture(scope="module")
def compiled():
    return _project.compile(XS, W)


def test_compiled_run_with_none(compiled):
    with pytest.raises(ft.FractalTypeError, match=r"argument 'w' of _project must be a tensor f32\[4,4\] as compiled, got NoneType None") as e:
        compiled.run(XS, None)  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_compiled_run_with_an_array_for_a_list(compiled):
    with pytest.raises(ft.FractalTypeError, match=r"argument 'xs' of _project must be a list ft<f32\[1,4\]> as compiled, got tensor f32\[3,1,4\]") as e:
        compiled.run(np.ones((3, 1, 4), np.float32), W)  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


@pytest.mark.parametrize("w, got", [(np.ones((4, 5), np.float32), r"f32\[4,5\]"), (np.ones((4, 4)), r"f64\[4,4\]")])
def test_compiled_run_with_another_shape_or_dtype(compiled, w, got):
    with pytest.raises(ft.FractalTypeError, match=rf"argument 'w' of _project must be a tensor f32\[4,4\] as compiled, got tensor {got}") as e:
        compiled.run(XS, w)  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)
    assert "in_w" not in str(e.value)


def test_compiled_run_with_other_lengths(compiled):
    with pytest.raises(ft.ArgumentError, match=r"_project was compiled for other list lengths \(argument 'xs' differs\)") as e:
        compiled.run(XS[:2], W)  # <- here
    assert_at_mark(e.value, ft.ArgumentError)
    assert np.allclose(compiled.run(XS, W).to_numpy(), 4.0)


NOTEBOOK_CELLS = """
import typing
import numpy as np
import fractal as ft

class P(typing.NamedTuple):
    w: np.ndarray

@ft.function
def f(p: P):
    return p.w * 2.0

class P(typing.NamedTuple):  # the cell defining P, run again
    w: np.ndarray
"""


def test_redefined_namedtuple():
    cells: dict = {}
    exec(compile(NOTEBOOK_CELLS, "<notebook>", "exec", dont_inherit=True), cells)  # a notebook's globals
    P, f = cells["P"], cells["f"]
    with pytest.raises(ft.FractalTypeError, match=r"annotated P but the call passes a P of another definition: "
                                                  r"the class P was redefined") as e:
        f(P(np.ones(2)))  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)
