"""The two halves of a `check` failure message: the comparison (structural, dtype-aware) and
the counterexample as Python that rebuilds the arguments bit for bit."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

import fractal as ft
from fractal.testing import compare, padded_lengths, unpad
from fractal.testing.report import expression, imports, python_source

F32 = np.float32


def leaves(*values, dtype=F32):
    return [np.array(v, dtype=dtype) for v in values]


# ---- compare ---------------------------------------------------------------------------------


def test_nan_equals_nan_at_the_same_place_and_nothing_else():
    a = np.array([1.0, np.nan, np.inf], F32)
    assert compare(a, a.copy()) == []
    (d,) = compare(a, np.array([1.0, 2.0, np.inf], F32))
    assert (d.path, d.index, d.max_abs) == ("result", (1,), np.inf)
    (d,) = compare(a, np.array([1.0, np.nan, -np.inf], F32))
    assert d.index == (2,)


def test_the_models_dtype_sets_the_tolerance():
    x = np.array([0.1], np.float64)
    noisy = x.astype(np.float32).astype(np.float64)  # float32 rounding: 1.5e-9 off
    (d,) = compare(x, noisy)
    assert (d.rtol, d.atol) == (1e-9, 1e-9) and "max abs error 1.49e-09" in str(d)
    assert compare(x.astype(F32), noisy) == []  # a float32 model: within 1e-4
    assert compare(x, noisy, rtol=1e-6) == []  # or told so
    (d,) = compare(np.array([3], np.int64), np.array([3.0000001]))  # an int model: exact
    assert d.what == "values"


def test_shapes_and_lengths_must_match_exactly_with_the_path_named():
    xs = ft.fractal([leaves([1, 2]), leaves([3, 4], [5, 6])])
    (d,) = compare(xs, [leaves([1, 2]), leaves([3, 4])])
    assert str(d) == "result[1]: length 2 vs 1"
    (d,) = compare(xs, [leaves([1, 2]), leaves([3, 4], [5, 6, 7])])
    assert str(d) == "result[1][1]: shape (2,) vs (3,)"
    (d,) = compare((xs, np.zeros(2)), (xs, np.zeros(2), np.zeros(2)))
    assert str(d) == "result: length 2 vs 3"


def test_named_tuples_of_results_are_compared_field_by_field():
    class State(NamedTuple):
        h: np.ndarray
        c: np.ndarray

    got = State(h=np.zeros(2), c=np.ones(2))
    assert compare(got, (np.zeros(2), np.ones(2))) == []
    (d,) = compare(got, State(h=np.zeros(2), c=np.array([1.0, 2.0])))
    assert d.path == "result.c" and d.index == (1,) and (d.got, d.want) == (1.0, 2.0)


def test_a_padded_array_is_compared_inside_the_lists_only():
    xs = ft.fractal([leaves([1.0]), leaves([2.0], [3.0])])
    padded = np.array([[[1.0], [99.0]], [[2.0], [3.0]]])  # [0][1] is padding: anything goes
    assert compare(xs, padded) == []
    assert compare(xs, (padded, padded_lengths(xs))) == []
    (d,) = compare(xs, (padded, np.array([2, 2])))
    assert str(d) == "result[0]: length 1 vs 2"
    (d,) = compare(xs, padded[:, :1])
    assert d.what == "shape" and "pads to shape (2, 2, 1)" in d.detail


def test_unpad_inverts_padding_at_depth_three():
    xs = ft.fractal([[leaves([1.0], [2.0]), []], [leaves([3.0])]])
    lists = unpad(xs.to_numpy(pad_value=-1), padded_lengths(xs))
    assert compare(xs, lists) == [] and len(lists[0][1]) == 0


# ---- the counterexample as Python -------------------------------------------------------------


class Params(NamedTuple):
    w: np.ndarray
    n: int


def rebuilt(value):
    return eval(expression(value), {"np": np, "ft": ft, "Params": Params})


def test_floats_are_written_so_that_they_parse_back_to_the_same_bits():
    for dtype in (np.float16, np.float32, np.float64):
        a = np.array([[0.1, -0.0, np.nan], [np.inf, -np.inf, 1e-30]], dtype=dtype)
        b = rebuilt(a)
        assert b.dtype == a.dtype and a.tobytes() == b.tobytes()
    assert expression(np.zeros((2, 3), F32)) == "np.zeros((2, 3), dtype=np.float32)"
    assert expression(np.full((2,), 0.1, F32)) == "np.full((2,), 0.1, dtype=np.float32)"
    assert expression(np.array([1, 2], np.int64)) == "np.array([1, 2], dtype=np.int64)"


def test_a_ragged_list_is_ft_fractal_of_its_lists_with_a_type_only_when_no_leaf_says_it():
    xs = ft.fractal([[np.array([[0.0, 1.5]], F32)], []])
    assert python_source("xs", xs) == "xs = ft.fractal([[np.array([[0.0, 1.5]], dtype=np.float32)], []])"
    assert rebuilt(xs) == xs
    empty = ft.fractal([[], []], type=ft.FractalTensor[ft.FractalTensor[ft.Tensor[(1, 2), ft.float64]]])
    assert expression(empty) == ("ft.fractal([[], []], type=ft.FractalTensor[ft.FractalTensor[ft.Tensor[(1, 2), "
                                 "np.float64]]])")
    assert rebuilt(empty) == empty


def test_named_tuples_are_called_with_keywords_and_imported_from_their_module():
    p = Params(w=np.ones((1,), F32), n=3)
    assert expression(p) == "Params(w=np.full((1,), 1.0, dtype=np.float32), n=3)"
    assert rebuilt(p).n == 3
    assert imports([(p,)]) == [f"from {__name__} import Params"]
