"""The strategies of `fractal.testing`: what they draw, what they favour, how they shrink.

* Every draw has exactly the declared type (depth, leaf shape, dtype), lengths within the bounds
  and at most `max_leaves` leaves, and is a well-formed FractalTensor (equal to the same data
  rebuilt with `ft.fractal`).
* Over many draws the edge cases appear: empty lists at every level of a depth-3 type, lists of
  length 1, lists of `max_len`, all-equal lengths.
* A planted failing property shrinks to its smallest example (fewest, shortest lists, 0 leaves).
* `arguments_for` reads annotations (NamedTuples too), `sizes=` and `same_lengths=`.
* Each bad argument is one `ft.FractalError` subclass naming it, at the caller's line.
"""

from __future__ import annotations

import inspect
import linecache
import sys
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import HealthCheck, find, given, settings, strategies as st

import fractal as ft
from fractal.testing import arguments_for, fractal_tensors, list_lengths, tensors

FAST = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
COUNT = settings(FAST, max_examples=300)
SHRINK = settings(deadline=None, derandomize=True, max_examples=500,
                  suppress_health_check=list(HealthCheck))
LEAF = ft.Tensor[(1, 4), ft.float64]
SEQS = ft.FractalTensor[ft.FractalTensor[LEAF]]


def nest(t, depth):
    for _ in range(depth):
        t = ft.FractalTensor[t]
    return t


def all_lists(x, level=0):
    """(level, list) for every list in `x`, outermost first."""
    yield level, x
    if x.depth > 1:
        for e in x:
            yield from all_lists(e, level + 1)


def leaves(x):
    return [leaf for _, xs in all_lists(x) if xs.depth == 1 for leaf in xs]


# -- the declared type, exactly --------------------------------------------------------------

@pytest.mark.parametrize("dtype", [ft.float16, ft.float32, ft.float64, ft.int32, ft.int64, ft.bool_])
@pytest.mark.parametrize("shape,depth", [((), 1), ((1, 4), 2), ((0, 3), 1), ((2,), 3)])
def test_draws_have_exactly_the_declared_type(dtype, shape, depth):
    t = nest(ft.Tensor[shape, dtype], depth)

    @given(fractal_tensors(t, max_len=4, max_leaves=20))
    @settings(FAST, max_examples=25)
    def prop(x):
        assert isinstance(x, ft.FractalTensor) and x.type == t and x.depth == depth
        for _, xs in all_lists(x):
            assert 0 <= len(xs) <= 4
        found = leaves(x)
        assert len(found) <= 20
        assert all(type(a) is np.ndarray and a.shape == shape and a.dtype == dtype for a in found)
        assert ft.fractal(x.to_list(), type=t) == x
        if not np.issubdtype(dtype, np.floating):
            return
        assert all(np.isfinite(a).all() for a in found)

    prop()


def test_a_leaf_shape_with_depth_and_dtype_is_the_same_type():
    @given(fractal_tensors((1, 4), depth=2, dtype=ft.float64), fractal_tensors(SEQS, depth=2, dtype=np.float64),
           fractal_tensors(ft.Tensor[(3,), ft.int32]))
    @settings(FAST, max_examples=20)
    def prop(a, b, c):
        assert a.type == b.type == SEQS
        assert c.type == ft.FractalTensor[ft.Tensor[(3,), ft.int32]]

    prop()


def test_lists_of_tuples_share_their_structure():
    t = ft.FractalTensor[ft.FractalTensor[ft.TupleType((ft.Tensor[(), ft.int64], ft.Tensor[2]))]]

    @given(fractal_tensors(t, max_len=3))
    @settings(FAST, max_examples=20)
    def prop(x):
        assert x.type == t
        for inner in x:
            for i, v in inner:
                assert i.shape == () and i.dtype == np.int64 and v.shape == (2,) and v.dtype == np.float32

    prop()


def test_min_len_and_max_len_bound_every_level():
    @given(fractal_tensors((2,), depth=3, min_len=1, max_len=3))
    @settings(FAST)
    def prop(x):
        assert all(1 <= len(xs) <= 3 for _, xs in all_lists(x))

    prop()


# -- edge cases are favoured -------------------------------------------------------------------

def test_edge_cases_appear_over_many_draws():
    """Empty lists, length-1 lists and `max_len` lists appear at every level of a depth-3 type,
    and the lengths of a level are all equal in a good share of the draws.  The outermost list is
    empty in few draws only: hypothesis does not draw an example it has already tried."""
    draws = []

    @given(fractal_tensors((1,), depth=3, max_len=5))
    @COUNT
    def prop(x):
        per_level, kinds = {}, set()
        for level, xs in all_lists(x):
            per_level.setdefault(level, []).append(len(xs))
            kinds |= {(kind, level) for kind, n in (("empty", 0), ("one", 1), ("max_len", 5)) if len(xs) == n}
        if len(per_level) == 3 and all(len(set(ns)) == 1 for ns in per_level.values()) and len(x) > 1:
            kinds.add("all equal")
        if any(len(set(ns)) > 1 for ns in per_level.values()):
            kinds.add("ragged")
        draws.append(kinds)

    prop()
    share = {k: sum(k in d for d in draws) / len(draws) for d in draws for k in d}
    often = [("one", level) for level in range(3)] + [("max_len", level) for level in range(3)] + \
        [("empty", 1), ("empty", 2), "ragged"]
    assert all(share.get(k, 0) >= 0.2 for k in often), share
    assert share.get(("empty", 0), 0) > 0 and share.get("all equal", 0) >= 0.05, share


def test_special_floats_only_on_request():
    drawn = {"plain": [], "special": []}

    @given(tensors((8,), ft.float32), tensors((8,), ft.float32, allow_nan=True, allow_infinity=True,
                                               allow_subnormal=True, allow_signed_zero=True))
    @COUNT
    def prop(plain, special):
        drawn["plain"].append(plain)
        drawn["special"].append(special)

    prop()
    tiny = np.finfo(np.float32).tiny
    plain, special = np.concatenate(drawn["plain"]), np.concatenate(drawn["special"])
    assert np.isfinite(plain).all() and not np.signbit(plain[plain == 0]).any()
    assert not ((plain != 0) & (np.abs(plain) < tiny)).any()
    assert np.isnan(special).any() and np.isinf(special).any()
    assert np.signbit(special[special == 0]).any() and ((special != 0) & (np.abs(special) < tiny)).any()


def test_bounds_and_elements():
    @given(fractal_tensors((3,), dtype=ft.float32, min_value=-0.1, max_value=0.1),
           fractal_tensors((2,), dtype=ft.int64, elements=st.sampled_from([3, 7])))
    @settings(FAST)
    def prop(x, y):
        assert all((np.abs(a) <= 0.1).all() for a in x)
        assert all(set(a.tolist()) <= {3, 7} for a in y)

    prop()


def test_lengths_fix_the_structure():
    @given(fractal_tensors(SEQS, lengths=2), fractal_tensors(SEQS, lengths=[2, 0, 1]),
           fractal_tensors(SEQS, lengths=st.sampled_from([1, 3])))
    @settings(FAST, max_examples=20)
    def prop(a, b, c):
        assert a.lengths() == [2, 2] and b.lengths() == [2, 0, 1]
        assert {len(xs) for _, xs in all_lists(c)} <= {1, 3}

    prop()


# -- shrinking ---------------------------------------------------------------------------------

def test_a_long_list_shrinks_to_one_list_of_three_zero_leaves():
    x = find(fractal_tensors((2,), dtype=ft.float64), lambda x: len(x) >= 3, settings=SHRINK)
    assert x.lengths() == 3 and all((a == 0).all() for a in x)


def test_an_empty_inner_list_shrinks_to_one_empty_list():
    x = find(fractal_tensors(SEQS), lambda x: any(len(e) == 0 for e in x), settings=SHRINK)
    assert x.lengths() == [0]


def test_a_long_inner_list_shrinks_to_three_leaves():
    x = find(fractal_tensors((1,), depth=3),
             lambda x: any(len(xs) >= 3 for level, xs in all_lists(x) if level == 2), settings=SHRINK)
    assert x.lengths() == [[3]] and all((a == 0).all() for a in leaves(x))


def test_a_large_value_shrinks_to_one_leaf():
    x = find(fractal_tensors((2,), depth=2), lambda x: any((a > 1).any() for a in leaves(x)), settings=SHRINK)
    assert x.lengths() == [1] and set(leaves(x)[0].tolist()) <= {0.0, 2.0}  # one leaf, one simple value


# -- arguments_for -----------------------------------------------------------------------------

class Cell(NamedTuple):
    w: ft.Tensor[(4, 4), ft.float64]
    b: ft.Tensor[(1, 4), ft.float64]


class Params(NamedTuple):
    cell: Cell
    scale: ft.Tensor[(), ft.float64]


@ft.function
def model(xs: ft.FractalTensor[LEAF], ys: SEQS, p: Params, steps: int = 2):
    return ft.map(lambda x, y: (x @ p.cell.w + p.cell.b) * p.scale + ft.astype(ft.length(y), ft.float64), xs, ys)


def test_arguments_for_reads_namedtuple_annotations():
    @given(arguments_for(model, max_len=3, same_lengths=[("xs", "ys")], min_value=-1, max_value=1))
    @settings(FAST, max_examples=20)
    def prop(args):
        xs, ys, p, steps = args
        assert xs.type == ft.FractalTensor[LEAF] and ys.type == SEQS and steps == 2
        assert isinstance(p, Params) and isinstance(p.cell, Cell)
        assert p.cell.w.shape == (4, 4) and p.cell.b.dtype == np.float64 and p.scale.shape == ()
        assert len(xs) == len(ys) <= 3 and all(np.abs(a).max(initial=0) <= 1 for a in leaves(xs))
        assert len(model(*args, backend="interpreter")) == len(xs)

    prop()


def test_sizes_override_a_parameter_or_a_field():
    def plain(xs, p: Params, n):
        return xs

    fixed = np.zeros((1, 4))
    strategy = arguments_for(plain, sizes={"xs": ft.FractalTensor[ft.Tensor[2]], "p.cell.b": fixed,
                                           "n": st.just(5)})

    @given(strategy, fractal_tensors(SEQS, lengths=3), arguments_for(model, sizes={"ys": {"lengths": 1}}))
    @settings(FAST, max_examples=20)
    def prop(args, _, model_args):
        xs, p, n = args
        assert xs.type == ft.FractalTensor[ft.Tensor[2]] and p.cell.b is fixed and n == 5
        assert all(len(y) == 1 for y in model_args[1])

    prop()


def test_tuple_annotations_and_their_parts_in_sizes():
    def pair(a: tuple[ft.Tensor[2], ft.Tensor[(), ft.int32]], b: ft.TupleType((ft.FractalTensor[ft.Tensor[3]],))):
        return a

    @given(arguments_for(pair, sizes={"b[0]": {"lengths": 2}}))
    @settings(FAST, max_examples=10)
    def prop(args):
        (x, i), (ys,) = args
        assert x.shape == (2,) and i.dtype == np.int32
        assert ys.type == ft.FractalTensor[ft.Tensor[3]] and len(ys) == 2

    prop()


# -- bad arguments: one test per message ---------------------------------------------------------

HERE = "# <- here"


def assert_at_mark(err: BaseException, cls: type) -> None:
    """`err` is exactly a `cls`, at the caller's `# <- here` line, with nothing chained."""
    assert type(err) is cls and isinstance(err, ft.FractalError), type(err)
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)
    caller = sys._getframe(1)
    lines, first = inspect.getsourcelines(caller.f_code)
    line = next(first + i for i, text in enumerate(lines) if text.rstrip().endswith(HERE))
    assert err.loc.file.endswith("test_strategies.py") and err.loc.line == line, (err.loc, line)
    assert linecache.getline(__file__, line).strip() in str(err)


def test_negative_max_len():
    with pytest.raises(ft.ArgumentError, match=r"fractal_tensors: max_len must be >= 0, got -1") as e:
        fractal_tensors((2,), max_len=-1)  # <- here
    assert_at_mark(e.value, ft.ArgumentError)


def test_min_len_above_max_len():
    with pytest.raises(ft.ArgumentError, match=r"min_len=4 is greater than max_len=2") as e:
        fractal_tensors((2,), min_len=4, max_len=2)  # <- here
    assert_at_mark(e.value, ft.ArgumentError)


def test_max_leaves_too_few_for_min_len():
    with pytest.raises(ft.ArgumentError, match=r"max_leaves=10 is too few: with min_len=3 every depth-3 list") as e:
        fractal_tensors((2,), depth=3, min_len=3, max_leaves=10)  # <- here
    assert_at_mark(e.value, ft.ArgumentError)


def test_depth_disagrees_with_the_type():
    with pytest.raises(ft.FractalTypeError, match=r"depth=1 disagrees with the type ft<ft<f64\[1,4\]>> \(depth 2\)") as e:
        fractal_tensors(SEQS, depth=1)  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_dtype_disagrees_with_the_type():
    with pytest.raises(ft.FractalTypeError, match=r"dtype=float32 disagrees with the type f64\[1,4\]") as e:
        fractal_tensors(SEQS, dtype=ft.float32)  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_depth_zero():
    with pytest.raises(ft.ArgumentError, match=r"depth must be >= 1 .* fractal.testing.tensors") as e:
        fractal_tensors((2,), depth=0)  # <- here
    assert_at_mark(e.value, ft.ArgumentError)


def test_unknown_dtype():
    with pytest.raises(ft.FractalTypeError, match=r"fractal_tensors: dtype=.*complex.* is not a fractal dtype") as e:
        fractal_tensors((2,), dtype=np.complex64)  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_bad_leaf_shape():
    with pytest.raises(ft.FractalTypeError, match=r"tensors: the shape must be a tuple of non-negative ints") as e:
        tensors((2, -1))  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_elements_not_a_strategy():
    with pytest.raises(ft.FractalTypeError, match=r"elements= must be a hypothesis strategy .* got float 1.0") as e:
        fractal_tensors((2,), elements=1.0)  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_flag_not_a_bool():
    with pytest.raises(ft.FractalTypeError, match=r"tensors: allow_nan must be True or False, got str 'yes'") as e:
        tensors((2,), allow_nan="yes")  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_min_value_above_max_value():
    with pytest.raises(ft.ArgumentError, match=r"tensors: min_value=1 is greater than max_value=0") as e:
        tensors((2,), min_value=1, max_value=0)  # <- here
    assert_at_mark(e.value, ft.ArgumentError)


def test_options_hypothesis_cannot_meet():
    with pytest.raises(ft.ArgumentError, match=r"these options cannot be met for float32") as e:
        tensors((2,), min_value=-1, max_value=1, allow_infinity=True)  # <- here
    assert_at_mark(e.value, ft.ArgumentError)


def test_lengths_structure_of_the_wrong_depth():
    with pytest.raises(ft.FractalTypeError, match=r"lengths must be an int, got list \[1\]") as e:
        fractal_tensors(SEQS, lengths=[[1], 2])  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_a_lengths_strategy_that_draws_a_negative_length():
    strategy = fractal_tensors((2,), lengths=st.just(-1))  # <- here
    with pytest.raises(ft.ArgumentError, match=r"the lengths= strategy drew -1, not a length") as e:
        find(strategy, lambda x: True, settings=SHRINK)
    assert_at_mark(e.value, ft.ArgumentError)


def test_list_of_tuples_of_lists():
    t = ft.FractalTensor[ft.TupleType((ft.Tensor[2], ft.FractalTensor[ft.Tensor[2]]))]
    with pytest.raises(ft.FractalTypeError, match=r"holds tuples of lists; draw its components") as e:
        fractal_tensors(t)  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_list_lengths_negative_min_len():
    with pytest.raises(ft.ArgumentError, match=r"list_lengths: min_len must be >= 0, got -2") as e:
        list_lengths(2, min_len=-2)  # <- here
    assert_at_mark(e.value, ft.ArgumentError)


def test_arguments_for_a_bare_annotation():
    def f(xs: ft.FractalTensor, w: ft.Tensor[2]):
        return xs

    with pytest.raises(ft.FractalTypeError, match=r"arguments_for\(f\): parameter 'xs' has the annotation "
                       r"FractalTensor.*sizes=\{'xs': .*arguments=") as e:
        arguments_for(f)  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


class Loose(NamedTuple):
    w: np.ndarray


def test_arguments_for_a_missing_field_annotation():
    def f(p: Loose):
        return p

    with pytest.raises(ft.FractalTypeError, match=r"the part 'p.w' has the annotation ndarray") as e:
        arguments_for(f)  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_arguments_for_unknown_sizes_key():
    with pytest.raises(ft.ArgumentError, match=r"sizes= names 'zs', which is not a parameter of model") as e:
        arguments_for(model, sizes={"zs": 1})  # <- here
    assert_at_mark(e.value, ft.ArgumentError)


def test_arguments_for_same_lengths_of_a_tensor():
    with pytest.raises(ft.ArgumentError, match=r"same_lengths= names 'p', which is not a FractalTensor") as e:
        arguments_for(model, same_lengths=[("xs", "p")])  # <- here
    assert_at_mark(e.value, ft.ArgumentError)


def test_arguments_for_options_for_a_tuple():
    with pytest.raises(ft.ArgumentError, match=r"sizes\['p'\] holds options, but 'p' is a Params, not a list or a "
                       r"tensor; set the options of its parts, e.g. 'p.cell'") as e:
        arguments_for(model, sizes={"p": {"max_len": 2}})  # <- here
    assert_at_mark(e.value, ft.ArgumentError)


def test_arguments_for_unknown_option():
    with pytest.raises(ft.ArgumentError, match=r"unknown option max_lenght") as e:
        arguments_for(model, max_lenght=3)  # <- here
    assert_at_mark(e.value, ft.ArgumentError)


def test_arguments_for_a_keyword_only_parameter():
    def f(xs: ft.FractalTensor[LEAF], *, scale: ft.Tensor[()]):
        return xs

    with pytest.raises(ft.FractalTypeError, match=r"parameter 'scale' is keyword-only, and an argument tuple") as e:
        arguments_for(f)  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_arguments_for_sizes_not_a_dict():
    with pytest.raises(ft.FractalTypeError, match=r"sizes= must be a dict from parameter names .* got list") as e:
        arguments_for(model, sizes=[("xs", 3)])  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_arguments_for_same_lengths_not_groups():
    with pytest.raises(ft.FractalTypeError, match=r"same_lengths= holds tuples of two or more parameter names, "
                       r"got 'xs'") as e:
        arguments_for(model, same_lengths=("xs", "ys"))  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_arguments_for_not_a_function():
    with pytest.raises(ft.FractalTypeError, match=r"arguments_for takes a function, got int 3") as e:
        arguments_for(3)  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_arguments_for_options_for_a_tensor():
    with pytest.raises(ft.ArgumentError, match=r"sizes\['p.scale'\] sets max_len, which a tensor does not take") as e:
        arguments_for(model, sizes={"p.scale": {"max_len": 2}})  # <- here
    assert_at_mark(e.value, ft.ArgumentError)


def test_no_int_between_the_bounds():
    with pytest.raises(ft.ArgumentError, match=r"tensors: no int32 lies between min_value=0.2 and max_value=0.7") as e:
        tensors((2,), ft.int32, min_value=0.2, max_value=0.7)  # <- here
    assert_at_mark(e.value, ft.ArgumentError)


def test_a_bound_not_a_number():
    with pytest.raises(ft.FractalTypeError, match=r"fractal_tensors: max_value must be a number, got str '1'") as e:
        fractal_tensors((2,), max_value="1")  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_lengths_of_the_wrong_kind():
    with pytest.raises(ft.FractalTypeError, match=r"lengths for a depth-2 list must be an int, a strategy of ints, "
                       r"or nested lists") as e:
        fractal_tensors(SEQS, lengths="3")  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_a_tuple_type_is_not_a_list_type():
    with pytest.raises(ft.FractalTypeError, match=r"is a tuple type, not a list type; draw st.tuples") as e:
        fractal_tensors(ft.TupleType((LEAF, LEAF)))  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_dtype_for_a_list_of_tuples():
    t = ft.FractalTensor[ft.TupleType((LEAF, LEAF))]
    with pytest.raises(ft.FractalTypeError, match=r"dtype= cannot be given for a list of tuples") as e:
        fractal_tensors(t, dtype=ft.float64)  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)


def test_depth_not_an_int():
    with pytest.raises(ft.FractalTypeError, match=r"fractal_tensors: depth must be an int, got float 2.0") as e:
        fractal_tensors((2,), depth=2.0)  # <- here
    assert_at_mark(e.value, ft.FractalTypeError)
