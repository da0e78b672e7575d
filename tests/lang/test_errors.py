"""User mistakes and the errors they get: one test per distinct mistake.

Every test checks that the mistake raises
  (a) the specific `ft.FractalError` subclass (never a bare NumPy ValueError/IndexError,
      and with no chained internal exception shown under it),
  (b) a message with the key words that explain the mistake, and
  (c) the location of the user's offending statement: `err.loc` is this file at the
      line marked `# <- here`, and `str(err)` quotes that line's source text.
Program-text errors (ParseError) point at a line and column of the text instead.
"""

import dataclasses
import inspect
import linecache
import sys
import typing

import numpy as np
import pytest

import fractal as ft

HERE = "# <- here"

XS = ft.fractal([np.ones((1, 4))] * 3)  # ft<f64[1,4]>, length 3
YS = ft.fractal([np.ones((1, 4))] * 2)  # ft<f64[1,4]>, length 2
NESTED = ft.fractal([[np.ones(2)], [np.ones(2), np.ones(2)]])  # ft<ft<f64[2]>>, ragged


def marked_line(tag: str = HERE) -> int:
    """The line number, in the calling test, of the one line that ends with `tag`."""
    caller = sys._getframe(1)
    while caller.f_code.co_name in ("assert_at_mark", "marked_line"):
        caller = caller.f_back
    lines, first = inspect.getsourcelines(caller.f_code)
    hits = [first + i for i, text in enumerate(lines) if text.rstrip().endswith(tag)]
    assert len(hits) == 1, f"the test must mark exactly one line with {tag!r}"
    return hits[0]


def assert_at_mark(err: BaseException, cls: type) -> None:
    """`err` is exactly a `cls` (a FractalError), located at the caller's `# <- here` line."""
    assert type(err) is cls and isinstance(err, ft.FractalError), type(err)
    # no internal exception chained under it (`raise ... from None` or raised directly)
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)
    line = marked_line()
    assert err.loc.file.endswith("test_errors.py"), err.loc
    assert err.loc.line == line, f"error points at line {err.loc.line}, the mistake is on line {line}"
    assert linecache.getline(__file__, line).strip() in str(err)


# -- shapes and types inside traced bodies ----------------------------------------------------

def test_matmul_shape_mismatch_in_scan_body():
    """`x @ w` with mismatched inner dimensions inside a scan body (the `@` line, not the scan line)."""
    w = np.ones((5, 3))

    @ft.function
    def rnn(xs):
        return ft.scan(
            lambda h, x: h + x @ w,  # <- here
            xs, ft.zeros((1, 3), ft.float64))

    with pytest.raises(ft.ShapeError, match=r"matmul: inner dimensions differ \(4 vs 5\).*f64\[1,4\] @ f64\[5,3\]") as e:
        rnn.trace(XS)
    assert_at_mark(e.value, ft.ShapeError)


def test_broadcast_mismatch_in_add():
    """`x + y` on traced tensors whose shapes do not broadcast."""
    @ft.function
    def f(x, y):
        return x + y  # <- here

    with pytest.raises(ft.ShapeError, match=r"add: shapes f64\[2,3\] and f64\[4\] do not broadcast") as e:
        f.trace(np.ones((2, 3)), np.ones(4))
    assert_at_mark(e.value, ft.ShapeError)


def test_scan_state_changes_shape():
    """A traced scan body returns a state of another shape than init."""
    @ft.function
    def f(xs):
        h0 = ft.zeros((1, 4), ft.float64)
        return ft.scan(lambda h, x: ft.concat([h, x], axis=1), xs, h0)  # <- here

    with pytest.raises(ft.FractalTypeError,
                       match=r"scan: the state must keep its type, but init is f64\[1,4\] and f returns f64\[1,8\]") as e:
        f.trace(XS)
    assert_at_mark(e.value, ft.FractalTypeError)


def test_scan_state_changes_dtype():
    """An eager scan body casts the state to another dtype."""
    with pytest.raises(ft.FractalTypeError, match=r"state must keep its type.*f64\[1,4\].*f32\[1,4\]") as e:
        ft.scan(lambda h, x: (h + x).astype(ft.float32), XS, np.zeros((1, 4)))  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_fold_state_changes_tuple_structure():
    """A fold body returns one tensor for a state that is a pair."""
    @ft.function
    def f(xs):
        init = (ft.zeros((1, 4), ft.float64), ft.zeros((1, 4), ft.float64))
        return ft.fold(lambda s, x: s[0] + x, xs, init)  # <- here

    with pytest.raises(ft.FractalTypeError,
                       match=r"fold: the state must keep its type, but init is \(f64\[1,4\], f64\[1,4\]\) "
                             r"and f returns f64\[1,4\]") as e:
        f.trace(XS)
    assert_at_mark(e.value, ft.FractalTypeError)


def test_value_escapes_combinator_body():
    """A value computed in one map body is stashed in a Python list and used in a later body."""
    @ft.function
    def f(xs):
        kept = []

        def body(x):
            kept.append(ft.exp(x))  # <- computed here
            return x

        ys = ft.map(body, xs)
        return ft.map(lambda y: y + kept[0], ys)  # <- here

    with pytest.raises(ft.TraceError, match="computed inside a combinator body is used outside it") as e:
        f.trace(XS)
    assert_at_mark(e.value, ft.TraceError)
    assert f"test_errors.py:{marked_line('# <- computed here')}" in str(e.value)  # where it was made


# -- list lengths ------------------------------------------------------------------------------

def test_zip_of_unequal_lengths_eager():
    """Eager ft.zip of lists with lengths 3 and 2."""
    with pytest.raises(ft.LengthError, match=r"zip: the lists have different lengths \[3, 2\]") as e:
        ft.zip(XS, YS)  # <- here
    assert_at_mark(e.value, ft.LengthError)


def test_zip_of_unequal_lengths_interpreted():
    """A traced ft.zip traces fine (lengths are runtime data); running it points at the zip line."""
    @ft.function
    def f(a, b):
        pairs = ft.zip(a, b)  # <- here
        return ft.map(lambda p: p[0] + p[1], pairs)

    f.trace(XS, YS)
    with pytest.raises(ft.LengthError, match=r"zip: the lists have different lengths \[3, 2\]") as e:
        f(XS, YS)
    assert_at_mark(e.value, ft.LengthError)


def test_map_over_lists_of_unequal_lengths():
    """ft.map over two lists of different lengths."""
    with pytest.raises(ft.LengthError, match=r"map: the lists have different lengths \[3, 2\]") as e:
        ft.map(lambda a, b: a + b, XS, YS)  # <- here
    assert_at_mark(e.value, ft.LengthError)


def test_list_index_out_of_range_eager():
    """`xs[5]` on a list of length 3."""
    with pytest.raises(ft.LengthError, match="index 5 is out of range for a list of length 3") as e:
        XS[5]  # <- here
    assert_at_mark(e.value, ft.LengthError)


def test_list_index_out_of_range_interpreted():
    """`xs[3]` in a traced function, run on a list of length 3."""
    @ft.function
    def f(xs):
        return xs[3]  # <- here

    with pytest.raises(ft.LengthError, match="index 3 is out of range for a list of length 3") as e:
        f(XS)
    assert_at_mark(e.value, ft.LengthError)


def test_interleave_of_lists_not_from_dilate():
    """ft.interleave of sub-lists whose lengths ft.dilate could not have produced."""
    with pytest.raises(ft.LengthError, match=r"interleave: sub-list 0 has length 1.*needs 2.*ft\.dilate") as e:
        ft.interleave(ft.fractal([[np.ones(2)], [np.ones(2)] * 3]))  # <- here
    assert_at_mark(e.value, ft.LengthError)


def test_gather_index_out_of_range():
    """ft.gather with a static index past the end of the list."""
    with pytest.raises(ft.LengthError, match="gather: index 7 is out of range for a list of length 3") as e:
        ft.gather(XS, [0, 7])  # <- here
    assert_at_mark(e.value, ft.LengthError)


def test_to_numpy_of_ragged_list_without_pad_value():
    """`.to_numpy()` on a ragged list without pad_value=."""
    with pytest.raises(ft.LengthError, match=r"ragged \(lengths \[1, 2\]\); pass to_numpy\(pad_value=\.\.\.\)") as e:
        NESTED.to_numpy()  # <- here
    assert_at_mark(e.value, ft.LengthError)


# -- building FractalTensors -------------------------------------------------------------------

def test_fractal_with_mixed_leaf_shapes():
    """ft.fractal of leaves with shapes (3,) and (4,)."""
    with pytest.raises(ft.FractalTypeError, match=r"all leaves must share shape and dtype.*float64\[3\] and float64\[4\]") as e:
        ft.fractal([np.ones(3), np.ones(4)])  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_fractal_with_mixed_dtypes():
    """ft.fractal of a float64 leaf and an int64 leaf."""
    with pytest.raises(ft.FractalTypeError, match=r"all leaves must share shape and dtype.*float64\[3\] and int64\[3\]") as e:
        ft.fractal([np.ones(3), np.ones(3, np.int64)])  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_fractal_with_leaves_at_different_depths():
    """ft.fractal of `[leaf, [leaf]]`."""
    with pytest.raises(ft.FractalTypeError, match=r"leaves appear at different nesting depths \[1, 2\]") as e:
        ft.fractal([np.ones(3), [np.ones(3)]])  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_empty_fractal_without_type():
    """ft.fractal([]) cannot infer a leaf type."""
    with pytest.raises(ft.FractalTypeError, match=r"cannot infer the type of a list with no leaves; pass type=") as e:
        ft.fractal([])  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_unsupported_dtype_in_fractal():
    """ft.fractal of complex128 leaves."""
    with pytest.raises(ft.FractalTypeError, match="dtype complex128 is not supported; use one of float16") as e:
        ft.fractal([np.ones(2, np.complex128)])  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_unsupported_dtype_in_tensor_type():
    """`ft.Tensor[(2,), np.complex128]` as a type."""
    with pytest.raises(ft.FractalTypeError, match="dtype complex128 is not supported") as e:
        ft.Tensor[(2,), np.complex128]  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


# -- Python constructs that cannot be traced ---------------------------------------------------

def test_if_on_traced_value():
    """A data-dependent `if` on a traced tensor."""
    @ft.function
    def f(x):
        if x > 0:  # <- here
            return x
        return -x

    with pytest.raises(ft.TraceError, match=r"Python control flow on traced data.*use ft\.where") as e:
        f.trace(np.ones(()))
    assert_at_mark(e.value, ft.TraceError)


def test_while_on_traced_value():
    """A `while` loop whose condition is a traced tensor."""
    @ft.function
    def f(x):
        while x < 10.0:  # <- here
            x = x * 2.0
        return x

    with pytest.raises(ft.TraceError, match=r"Python control flow on traced data.*ft\.scan/ft\.fold for loops") as e:
        f.trace(np.ones(()))
    assert_at_mark(e.value, ft.TraceError)


def test_int_of_traced_tensor():
    """`int(x)` on a traced tensor (e.g. to size another tensor)."""
    @ft.function
    def f(x):
        return ft.zeros((int(x),))  # <- here

    with pytest.raises(ft.TraceError, match=r"no concrete value at trace time \(int\(\)") as e:
        f.trace(np.ones((), np.int64))
    assert_at_mark(e.value, ft.TraceError)


def test_float_of_traced_tensor():
    """`float(x)` on a traced tensor."""
    @ft.function
    def f(x):
        scale = float(x)  # <- here
        return x * scale

    with pytest.raises(ft.TraceError, match=r"no concrete value at trace time.*float\(\)") as e:
        f.trace(np.ones(()))
    assert_at_mark(e.value, ft.TraceError)


def test_np_asarray_of_traced_tensor():
    """`np.asarray(x)` on a traced tensor."""
    @ft.function
    def f(x):
        return np.asarray(x) + 1.0  # <- here

    with pytest.raises(ft.TraceError, match=r"no concrete value at trace time.*np\.asarray\(\)") as e:
        f.trace(np.ones(2))
    assert_at_mark(e.value, ft.TraceError)


def test_len_of_traced_list():
    """`len(xs)` of a traced list, whose length is runtime data."""
    @ft.function
    def f(xs):
        n = len(xs)  # <- here
        return ft.full((1,), n)

    with pytest.raises(ft.TraceError, match=r"length of a traced FractalTensor is runtime data; use ft\.length") as e:
        f.trace(XS)
    assert_at_mark(e.value, ft.TraceError)


def test_python_for_over_traced_list():
    """A Python `for` loop over a traced list."""
    @ft.function
    def f(xs):
        acc = ft.zeros((1, 4), ft.float64)
        for x in xs:  # <- here
            acc = acc + x
        return acc

    with pytest.raises(ft.TraceError, match=r"runtime data.*ft\.map/ft\.scan/ft\.fold instead of a Python loop") as e:
        f.trace(XS)
    assert_at_mark(e.value, ft.TraceError)


def test_stack_of_traced_list_of_unknown_length():
    """ft.stack on a traced list whose length is not known at trace time."""
    @ft.function
    def f(xs):
        return ft.stack(xs)  # <- here

    with pytest.raises(ft.TraceError, match=r"stack: the length of this traced list is only known at run time.*length=n") as e:
        f.trace(XS)
    assert_at_mark(e.value, ft.TraceError)


# -- annotations and calls ---------------------------------------------------------------------

def test_annotation_with_wrong_tensor_shape():
    """An argument of shape (3, 2) for an `ft.Tensor[(2, 3), ft.float64]` annotation."""
    @ft.function
    def f(x: ft.Tensor[(2, 3), ft.float64]):
        return x

    with pytest.raises(ft.FractalTypeError, match=r"argument 'x' of f is annotated f64\[2,3\] but the call passes f64\[3,2\]") as e:
        f.trace(np.ones((3, 2)))  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_annotation_with_wrong_dtype():
    """A float32 argument for a float64 annotation."""
    @ft.function
    def f(x: ft.Tensor[(2, 3), ft.float64]):
        return x

    with pytest.raises(ft.FractalTypeError, match=r"annotated f64\[2,3\] but the call passes f32\[2,3\]") as e:
        f(np.ones((2, 3), np.float32))  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_annotation_written_as_string_is_checked():
    """A wrong shape against a string annotation (as `from __future__ import annotations` makes them)."""
    @ft.function
    def f(x: "ft.Tensor[(2, 3), ft.float64]"):
        return x

    with pytest.raises(ft.FractalTypeError, match=r"argument 'x' of f is annotated f64\[2,3\] but the call passes f64\[3,2\]") as e:
        f.trace(np.ones((3, 2)))  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_annotation_with_wrong_list_depth():
    """A depth-1 list for a depth-2 FractalTensor annotation."""
    @ft.function
    def f(xs: ft.FractalTensor[ft.FractalTensor[ft.Tensor[(1, 4), ft.float64]]]):
        return xs

    with pytest.raises(ft.FractalTypeError, match=r"annotated ft<ft<f64\[1,4\]>> but the call passes ft<f64\[1,4\]>") as e:
        f.trace(XS)  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


class Dense(typing.NamedTuple):
    w: ft.Tensor[(4, 4), ft.float64]
    b: ft.Tensor[(4,), ft.float64]


@ft.function
def dense(x, p: Dense):
    return x @ p.w + p.b


def test_namedtuple_annotation_given_a_plain_tuple():
    """A plain tuple where a NamedTuple parameter bundle is annotated."""
    with pytest.raises(ft.FractalTypeError, match="argument 'p' of dense is annotated Dense but the call passes tuple") as e:
        dense.trace(np.ones((1, 4)), (np.ones((4, 4)), np.ones(4)))  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_namedtuple_field_with_wrong_shape():
    """A NamedTuple whose field `b` has the wrong shape: the message names `p.b`."""
    with pytest.raises(ft.FractalTypeError, match=r"argument 'p\.b' of dense is annotated f64\[4\] but the call passes f64\[3\]") as e:
        dense.trace(np.ones((1, 4)), Dense(np.ones((4, 4)), np.ones(3)))  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_call_with_wrong_number_of_arguments():
    """Calling a two-argument function with one argument: the message shows the signature."""
    @ft.function
    def f(x, y):
        return x + y

    with pytest.raises(ft.FractalTypeError, match=r"f\(x, y\): missing a required argument: 'y'") as e:
        f(np.ones(2))  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


# -- arguments of access operators -------------------------------------------------------------

def test_window_of_size_zero():
    """ft.window with size 0."""
    with pytest.raises(ft.ArgumentError, match="window: size must be a positive int, got 0") as e:
        ft.window(XS, 0)  # <- here
    assert_at_mark(e.value, ft.ArgumentError)


def test_window_with_negative_padding():
    """ft.window with padding=-1."""
    with pytest.raises(ft.ArgumentError, match=r"window: padding must be a non-negative int or a pair "
                                               r"\(before, after\) of them, got -1") as e:
        ft.window(XS, 2, padding=-1)  # <- here
    assert_at_mark(e.value, ft.ArgumentError)


def test_window_with_a_padding_triple():
    """ft.window with padding=(1, 0, 1): one count per end, not three."""
    with pytest.raises(ft.ArgumentError, match=r"window: padding must be .*got \(1, 0, 1\)") as e:
        ft.window(XS, 2, padding=(1, 0, 1))  # <- here
    assert_at_mark(e.value, ft.ArgumentError)


def test_window_pad_value_on_list_of_lists():
    """ft.window with a pad_value over a list of lists (lists are padded with empty lists)."""
    with pytest.raises(ft.ArgumentError, match=r"window: pad_value=0.5 pads tensor elements, but the elements "
                                               r"are ft<f64\[2\]>: lists are padded with empty lists") as e:
        ft.window(NESTED, 2, padding=(1, 0), pad_value=0.5)  # <- here
    assert_at_mark(e.value, ft.ArgumentError)


def test_elu_alpha_that_is_not_a_number():
    """ft.elu with alpha="1" (a string)."""
    with pytest.raises(ft.ArgumentError, match="elu: alpha must be a number, got '1'") as e:
        ft.elu(np.ones(2), alpha="1")  # <- here
    assert_at_mark(e.value, ft.ArgumentError)


def test_shifted_window_of_even_size():
    """ft.shifted_window with an even size (no centre element)."""
    with pytest.raises(ft.ArgumentError, match="shifted_window: size must be odd.*got 2") as e:
        ft.shifted_window(XS, 2)  # <- here
    assert_at_mark(e.value, ft.ArgumentError)


def test_split_into_zero_parts():
    """ft.split(xs, 0)."""
    with pytest.raises(ft.ArgumentError, match="split: n must be a positive int, got 0") as e:
        ft.split(XS, 0)  # <- here
    assert_at_mark(e.value, ft.ArgumentError)


def test_dilate_by_zero():
    """ft.dilate(xs, 0)."""
    with pytest.raises(ft.ArgumentError, match="dilate: d must be a positive int, got 0") as e:
        ft.dilate(XS, 0)  # <- here
    assert_at_mark(e.value, ft.ArgumentError)


def test_map_over_a_tensor():
    """ft.map over a tensor instead of a list."""
    with pytest.raises(ft.FractalTypeError, match=r"map: iterates over FractalTensors, but got a tensor f64\[3,4\]; use ft\.slices") as e:
        ft.map(lambda x: x, np.ones((3, 4)))  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_map_over_a_python_list():
    """ft.map over a Python list instead of a FractalTensor."""
    with pytest.raises(ft.FractalTypeError, match=r"map: iterates over FractalTensors, but got a Python list; build one with ft\.fractal") as e:
        ft.map(lambda x: x, [np.ones(3), np.ones(3)])  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_join_of_different_types():
    """ft.join of lists with different element types."""
    with pytest.raises(ft.FractalTypeError, match=r"join: both lists must have the same type, got ft<f64\[1,4\]> and ft<f64\[4\]>") as e:
        ft.join(XS, ft.fractal([np.ones(4)]))  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


# -- arguments of cell ops ---------------------------------------------------------------------

def test_reduce_over_axis_out_of_range():
    """ft.sum over axis 2 of a 2-D tensor."""
    with pytest.raises(ft.ShapeError, match="sum: axis 2 is out of range for a tensor with 2 dimensions") as e:
        ft.sum(np.ones((2, 3)), axis=2)  # <- here
    assert_at_mark(e.value, ft.ShapeError)


def test_reshape_to_incompatible_size():
    """Reshaping 6 elements into (4, 2)."""
    with pytest.raises(ft.ShapeError, match=r"reshape: cannot reshape f64\[2,3\] \(6 elements\) into \(4, 2\)") as e:
        ft.reshape(np.ones((2, 3)), (4, 2))  # <- here
    assert_at_mark(e.value, ft.ShapeError)


def test_transpose_with_bad_permutation():
    """ft.transpose with axes (0, 0)."""
    with pytest.raises(ft.ShapeError, match=r"transpose: axes \(0, 0\) are not a permutation of the 2 axes") as e:
        ft.transpose(np.ones((2, 3)), (0, 0))  # <- here
    assert_at_mark(e.value, ft.ShapeError)


def test_layer_norm_with_mismatched_weight():
    """ft.layer_norm whose weight does not fit the normalised axis."""
    with pytest.raises(ft.ShapeError, match=r"layer_norm: weight f64\[3\] does not fit f64\[2,4\]") as e:
        ft.layer_norm(np.ones((2, 4)), np.ones(3), np.zeros(4))  # <- here
    assert_at_mark(e.value, ft.ShapeError)


def test_softmax_of_int_tensor():
    """ft.softmax of an int64 tensor."""
    with pytest.raises(ft.FractalTypeError, match=r"softmax: needs a floating-point tensor, got i64\[2,4\]; use \.astype") as e:
        ft.softmax(np.ones((2, 4), np.int64))  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_concat_of_mismatched_shapes():
    """ft.concat along axis 0 of tensors with different column counts."""
    with pytest.raises(ft.ShapeError, match=r"concat: f64\[2,3\] and f64\[3,4\] differ outside axis 0") as e:
        ft.concat([np.ones((2, 3)), np.ones((3, 4))], axis=0)  # <- here
    assert_at_mark(e.value, ft.ShapeError)


def test_where_with_non_bool_condition():
    """ft.where with a float condition."""
    with pytest.raises(ft.FractalTypeError, match=r"where: the condition must be a bool tensor, got f64\[3\]") as e:
        ft.where(np.ones(3), np.ones(3), np.zeros(3))  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


# -- program text and verification -------------------------------------------------------------

def _exp_program() -> ft.Program:
    @ft.function
    def g(x):
        return ft.exp(x) * 2.0  # <- traced here

    return g.trace(np.ones(2))


def test_unknown_op_in_program_text():
    """Program text that calls an op `frobnicate` the op table does not have."""
    text = str(_exp_program()).replace("= exp(", "= frobnicate(")
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "frobnicate" in t)
    column = text.splitlines()[line - 1].index("frobnicate") + 1
    with pytest.raises(ft.ParseError, match=f"unknown op 'frobnicate' at line {line}, column {column}") as e:
        ft.parse_program(text)
    assert type(e.value) is ft.ParseError and (e.value.loc.file, e.value.loc.line) == ("<program text>", line)


def test_syntax_error_in_program_text():
    """Program text with an unclosed `(`: the error names the line and column of the next token."""
    text = "func @f(%x: f32[2]) -> f32[2] {\n  %y: f32[2] = neg(%x\n  return %y\n}"
    with pytest.raises(ft.ParseError, match=r"line 3, column 3: unexpected 'return'; expected one of: '\)'") as e:
        ft.parse_program(text)
    assert type(e.value) is ft.ParseError and (e.value.loc.file, e.value.loc.line) == ("<program text>", 3)
    assert "  return %y\n  ^" in str(e.value)  # the offending text, with a caret under the column


def _replace_last_eqn(program: ft.Program, **changes) -> ft.Program:
    body = program.body
    last = dataclasses.replace(body.eqns[-1], **changes)
    results = last.outputs if "outputs" in changes else body.results
    return dataclasses.replace(program, body=dataclasses.replace(body, eqns=body.eqns[:-1] + (last,),
                                                                 results=results))


def test_verify_use_of_undefined_variable():
    """A hand-corrupted program whose last equation reads a variable nobody defines."""
    p = _exp_program()
    ghost = ft.Var("ghost", p.params[0].type)
    bad = _replace_last_eqn(p, inputs=(ghost,) + p.body.eqns[-1].inputs[1:])
    with pytest.raises(ft.VerifyError, match="mul: %ghost is used before it is defined or out of its scope") as e:
        bad.verify()
    assert type(e.value) is ft.VerifyError  # located at the traced line of the corrupted equation
    assert (e.value.loc.line, e.value.loc.function) == (marked_in(_exp_program, "# <- traced here"), "g")


def test_verify_output_type_mismatch():
    """A hand-corrupted program whose last equation claims an output type its op does not give."""
    p = _exp_program()
    wrong = ft.Var(p.body.eqns[-1].outputs[0].name, ft.Tensor[(3,), ft.float32])
    bad = _replace_last_eqn(p, outputs=(wrong,))
    with pytest.raises(ft.VerifyError, match=r"mul: outputs are typed \(f32\[3\]\) but the op gives \(f64\[2\]\)") as e:
        bad.verify()
    assert type(e.value) is ft.VerifyError
    assert e.value.loc.file.endswith("test_errors.py")
    assert e.value.loc.line == marked_in(_exp_program, "# <- traced here")
    assert "return ft.exp(x) * 2.0" in str(e.value)


def marked_in(fn, tag: str) -> int:
    """The line number of the line of `fn`'s source that ends with `tag`."""
    lines, first = inspect.getsourcelines(fn)
    (line,) = [first + i for i, text in enumerate(lines) if text.rstrip().endswith(tag)]
    return line
