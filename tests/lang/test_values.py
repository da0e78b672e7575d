"""FractalTensor values and the type constructors.

Specification checked here:

* `ft.fractal(nested)` builds a list whose depth is the list nesting, whose lengths may
  differ (ragged), treating tuples like lists; `type=` is needed for a list without
  leaves and casts leaves to its dtype.
* `ft.from_numpy(a, depth=k)` turns the leading k axes into list levels;
  `to_numpy()` inverts it; ragged lists need `to_numpy(pad_value=...)`.
* Reading: `len`, `x[i]` (negative too), `x[a:b:s]` with Python slice semantics (any step
  sign, composable), iteration, `x.type`, `x.depth`, `x.lengths()`, `to_list()`, repr.
* Storage: values are immutable (leaves are read-only ndarrays, inputs are copied), and
  indexing, slicing and reversing are views that share the leaf buffer.  The storage API
  the compiler layers use: `compact()` gives a list's elements as `(leaves, offsets)`,
  `FractalTensor.from_storage` builds a list over storage, `from_elements` packs element
  values, `take(positions)` selects elements as a view, `with_leaves` keeps a list's
  structure over other leaves.
* Types: `ft.Tensor[...]`, `ft.FractalTensor[...]`, dtypes equal to NumPy's.
"""

from __future__ import annotations

import html

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fractal as ft
from fractal.lang.types import FractalTensorType, TensorType

RNG = np.random.default_rng(1234)
PROPS = settings(max_examples=60, deadline=None)


def vec(*shape, dtype=np.float64):
    return RNG.standard_normal(shape).astype(dtype)


# -- exact structural comparison ----------------------------------------------------------------

def assert_nested_equal(actual, expected, path="x"):
    """`actual` (FractalTensor / nested Python lists / tuples / arrays) equals the nested
    Python structure `expected` exactly: same nesting, lengths, leaf shapes, dtypes and values."""
    if isinstance(expected, list):
        assert isinstance(actual, (list, ft.FractalTensor)), f"{path}: expected a list, got {type(actual)}"
        assert len(actual) == len(expected), f"{path}: length {len(actual)} != {len(expected)}"
        for i, e in enumerate(expected):
            assert_nested_equal(actual[i], e, f"{path}[{i}]")
    elif isinstance(expected, tuple):
        assert isinstance(actual, tuple) and len(actual) == len(expected), f"{path}: expected a tuple"
        for i, e in enumerate(expected):
            assert_nested_equal(actual[i], e, f"{path}.{i}")
    else:
        a, e = np.asarray(actual), np.asarray(expected)
        assert a.shape == e.shape, f"{path}: shape {a.shape} != {e.shape}"
        assert a.dtype == e.dtype, f"{path}: dtype {a.dtype} != {e.dtype}"
        assert np.array_equal(a, e), f"{path}: {a} != {e}"


def ft_type(depth, shape, dtype=np.float64):
    t = ft.Tensor[tuple(shape), dtype]
    for _ in range(depth):
        t = ft.FractalTensor[t]
    return t



# -- random ragged structures --------------------------------------------------------------------

LEAF_SHAPES = [(), (2,), (1, 3), (2, 2)]


@st.composite
def nested_lists(draw, max_depth=3, max_len=4, dtypes=(np.float64, np.int64)):
    """(nested Python lists of arrays, depth, leaf shape, dtype): a random ragged structure."""
    depth = draw(st.integers(1, max_depth))
    shape = draw(st.sampled_from(LEAF_SHAPES))
    dtype = draw(st.sampled_from(dtypes))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)

    def build(level):
        n = draw(st.integers(0, max_len))
        if level == depth:
            return [(rng.standard_normal(shape) * 10).astype(dtype) for _ in range(n)]
        return [build(level + 1) for _ in range(n)]

    return build(1), depth, shape, np.dtype(dtype)


def make(nested, depth, shape, dtype):
    """ft.fractal, passing type= only when there is no leaf to infer it from."""
    if count_leaves_at(nested, depth) == 0:
        return ft.fractal(nested, type=ft_type(depth, shape, dtype))
    return ft.fractal(nested)


def count_leaves_at(nested, depth):
    if depth == 0:
        return 1
    return sum(count_leaves_at(c, depth - 1) for c in nested)


def padded_reference(nested, depth, shape, dtype, pad):
    """Plain-Python padding: the dense array of shape (max len per level..., *leaf) filled with pad."""
    dims = [0] * depth

    def measure(node, level):
        if level == depth:
            return
        dims[level] = max(dims[level], len(node))
        for c in node:
            measure(c, level + 1)

    measure(nested, 0)
    out = np.full(tuple(dims) + tuple(shape), pad, dtype=dtype)

    def fill(node, level, idx):
        if level == depth:
            out[idx] = node
            return
        for i, c in enumerate(node):
            fill(c, level + 1, idx + (i,))

    fill(nested, 0, ())
    return out


def is_regular(nested, depth):
    """Every list at the same level has the same length."""
    level_lengths = [set() for _ in range(depth)]

    def walk(node, level):
        if level == depth:
            return
        level_lengths[level].add(len(node))
        for c in node:
            walk(c, level + 1)

    walk(nested, 0)
    return all(len(s) <= 1 for s in level_lengths)


def nested_lengths(nested, depth):
    """What `lengths()` documents: an int at depth 1, nested lists of inner lengths below."""
    if depth == 1:
        return len(nested)
    return [nested_lengths(c, depth - 1) for c in nested]


# -- ft.fractal ---------------------------------------------------------------------------------

def test_fractal_depth_comes_from_list_nesting():
    """Depth is the nesting of lists; the leaf is whatever sits inside the innermost list."""
    a, b, c, d = (vec(1, 4) for _ in range(4))
    assert ft.fractal([a, b]).depth == 1
    x = ft.fractal([[a, b, c], [d]])
    assert x.depth == 2 and len(x) == 2 and x.lengths() == [3, 1]
    assert x.type == ft.FractalTensor[ft.FractalTensor[ft.Tensor[(1, 4), ft.float64]]]
    y = ft.fractal([[[a], []], [[b, c, d]]])
    assert y.depth == 3 and y.lengths() == [[1, 0], [3]]
    assert y.type.leaf == ft.Tensor[(1, 4), ft.float64]


def test_fractal_treats_tuples_as_list_levels():
    """A tuple in the nested input is one more list level, exactly like a Python list."""
    a, b, c = vec(3), vec(3), vec(3)
    x = ft.fractal(([a, b], (c,)))
    assert x.depth == 2 and x.lengths() == [2, 1]
    assert_nested_equal(x, [[a, b], [c]])


def test_fractal_scalar_and_python_number_leaves():
    """Python numbers and 0-d arrays are scalar leaves (shape ())."""
    x = ft.fractal([[1.0, 2.0], [3.0]])
    assert x.type == ft.FractalTensor[ft.FractalTensor[ft.Tensor[(), ft.float64]]]
    assert x.to_numpy(pad_value=0.0).tolist() == [[1.0, 2.0], [3.0, 0.0]]
    y = ft.fractal([np.int64(4), np.int64(5)])
    assert y.type == ft.FractalTensor[ft.Tensor[(), ft.int64]]
    # a scalar leaf comes back as a 0-d read-only NumPy value of the right dtype
    leaf = y[1]
    assert isinstance(leaf, (np.ndarray, np.generic)) and leaf.shape == () and leaf.dtype == np.int64
    assert leaf == 5


def test_fractal_empty_lists_need_type_and_type_casts():
    """An empty list has no leaf to infer from: type= gives it (and casts given leaves)."""
    t1 = ft.FractalTensor[ft.Tensor[4]]
    e = ft.fractal([], type=t1)
    assert len(e) == 0 and e.type == t1 and e.depth == 1 and e.lengths() == 0
    assert e.to_numpy().shape == (0, 4) and e.to_numpy().dtype == np.float32
    t2 = ft.FractalTensor[ft.FractalTensor[ft.Tensor[(2,), ft.int64]]]
    e2 = ft.fractal([[], []], type=t2)
    assert e2.type == t2 and e2.lengths() == [0, 0] and e2.to_numpy().shape == (2, 0, 2)
    with pytest.raises(ft.FractalTypeError):
        ft.fractal([])
    with pytest.raises(ft.FractalTypeError):
        ft.fractal([[], []])
    # type= casts leaves to its dtype
    c = ft.fractal([np.arange(4), np.arange(4) + 1], type=ft.FractalTensor[ft.Tensor[(4,), ft.float64]])
    assert c.type.leaf.dtype == np.float64 and c[1].dtype == np.float64
    assert c[1].tolist() == [1.0, 2.0, 3.0, 4.0]
    # ... but never reshapes them, and must agree with the data's depth
    with pytest.raises(ft.FractalTypeError):
        ft.fractal([np.zeros(3)], type=ft.FractalTensor[ft.Tensor[4]])
    with pytest.raises(ft.FractalTypeError):
        ft.fractal([[np.zeros(4)]], type=ft.FractalTensor[ft.Tensor[4]])


def test_fractal_rejects_inconsistent_leaves():
    """All leaves share one shape and dtype, and sit at one depth."""
    with pytest.raises(ft.FractalTypeError):
        ft.fractal([np.zeros(3), np.zeros(4)])
    with pytest.raises(ft.FractalTypeError):
        ft.fractal([np.zeros(3), np.zeros(3, np.int64)])
    with pytest.raises(ft.FractalTypeError):
        ft.fractal([[np.zeros(3)], np.zeros(3)])
    with pytest.raises(ft.FractalTypeError):
        ft.fractal(np.zeros((2, 3)))  # a bare array: use ft.from_numpy
    with pytest.raises(ft.FractalTypeError):
        ft.FractalTensor([np.zeros(3)])  # not a constructor


def test_fractal_copies_its_input():
    """Values are immutable: changing the input arrays afterwards does not change the list."""
    a = np.zeros(3)
    x = ft.fractal([a, a])
    a[0] = 7.0
    assert x[0].tolist() == [0.0, 0.0, 0.0]


# -- from_numpy / to_numpy ----------------------------------------------------------------------

def test_from_numpy_turns_leading_axes_into_lists():
    a = np.arange(24.0).reshape(2, 3, 4)
    x1, x2, x3 = (ft.from_numpy(a, depth=k) for k in (1, 2, 3))
    assert x1.type == ft.FractalTensor[ft.Tensor[(3, 4), ft.float64]]
    assert x2.type == ft.FractalTensor[ft.FractalTensor[ft.Tensor[(4,), ft.float64]]]
    assert x3.type == ft_type(3, ())
    assert x2.lengths() == [3, 3] and x3.lengths() == [[4] * 3] * 2
    assert np.array_equal(x2[1][2], a[1, 2])
    assert x3[1][2][3] == a[1, 2, 3]
    for x in (x1, x2, x3):
        assert np.array_equal(x.to_numpy(), a) and x.to_numpy().dtype == a.dtype
    assert ft.from_numpy(a).depth == 1  # default depth 1
    for bad in (0, 4, 1.0):
        with pytest.raises(ft.FractalTypeError):
            ft.from_numpy(a, depth=bad)


def test_to_numpy_of_ragged_list_needs_pad_value():
    a, b, c = vec(2), vec(2), vec(2)
    x = ft.fractal([[a, b], [c], []])
    with pytest.raises(ft.LengthError):
        x.to_numpy()
    expected = np.full((3, 2, 2), -1.0)
    expected[0, 0], expected[0, 1], expected[1, 0] = a, b, c
    got = x.to_numpy(pad_value=-1.0)
    assert got.dtype == np.float64 and np.array_equal(got, expected)
    # depth 3, ragged at two levels
    y = ft.fractal([[[a]], [[b, c], [], [a]]])
    exp_y = np.full((2, 3, 2, 2), 5.0)
    exp_y[0, 0, 0], exp_y[1, 0, 0], exp_y[1, 0, 1], exp_y[1, 2, 0] = a, b, c, a
    assert np.array_equal(y.to_numpy(pad_value=5.0), exp_y)
    # padding a regular list changes nothing
    r = ft.from_numpy(np.arange(6.0).reshape(2, 3))
    assert np.array_equal(r.to_numpy(pad_value=99.0), np.arange(6.0).reshape(2, 3))


def test_to_numpy_of_views():
    """to_numpy sees exactly the elements of a sliced / reversed view, in order."""
    a = np.arange(60.0).reshape(3, 4, 5)
    x = ft.from_numpy(a, depth=2)
    assert np.array_equal(x[::-1].to_numpy(), a[::-1])
    assert np.array_equal(x[1:][0].to_numpy(), a[1])
    assert np.array_equal(x[::2].to_numpy(), a[::2])
    x3 = ft.from_numpy(a, depth=3)
    assert np.array_equal(x3[::-1].to_numpy(), a[::-1])
    assert np.array_equal(x3[2:0:-2].to_numpy(), a[2:0:-2])


def test_to_numpy_returns_a_fresh_writable_array():
    x = ft.from_numpy(np.zeros((2, 3)))
    out = x.to_numpy()
    out[0, 0] = 1.0
    assert x[0][0] == 0.0


# -- reading -------------------------------------------------------------------------------------

def test_index_negative_and_out_of_range():
    leaves = [vec(2, 2) for _ in range(5)]
    x = ft.fractal(leaves)
    for i in range(-5, 5):
        assert np.array_equal(x[i], leaves[i])
    assert np.array_equal(x[np.int64(-2)], leaves[-2])
    for i in (5, -6, 100):
        with pytest.raises(ft.LengthError):
            x[i]
    with pytest.raises(ft.FractalTypeError):
        x[[0, 1]]
    with pytest.raises(ft.FractalTypeError):
        x[True]


SLICES = [slice(None), slice(1, 4), slice(None, None, -1), slice(None, None, 2), slice(1, None, 3),
          slice(-2, None), slice(None, -2), slice(4, 0, -1), slice(4, 0, -2), slice(-1, -6, -2),
          slice(10, -10, -1), slice(3, 3), slice(4, 1), slice(-100, 100, 4), slice(0, 5, 7),
          slice(None, None, -3)]


@pytest.mark.parametrize("s1", SLICES, ids=str)
@pytest.mark.parametrize("s2", [slice(None), slice(1, None, 2), slice(None, None, -1), slice(-1, 0, -2)], ids=str)
def test_slices_and_their_compositions_follow_python(s1, s2):
    """`x[s1][s2]` selects what `list[s1][s2]` selects, for every step sign."""
    leaves = [vec(3) for _ in range(6)]
    ragged = [[vec(2) for _ in range(k)] for k in (0, 3, 1, 2, 4, 1)]
    for data in (leaves, ragged):
        x = ft.fractal(data)
        assert_nested_equal(x[s1], data[s1])
        assert_nested_equal(x[s1][s2], data[s1][s2])
        assert x[s1].type == x.type


def test_reverse_then_every_other():
    """The example from the spec: x[::-1][1::2]."""
    data = [[vec(2)] * k for k in range(7)]
    x = ft.fractal(data)
    assert_nested_equal(x[::-1][1::2], data[::-1][1::2])
    assert x[::-1][1::2].lengths() == [5, 3, 1]


def test_iteration_and_len():
    data = [[vec(2) for _ in range(k)] for k in (2, 0, 3)]
    x = ft.fractal(data)
    items = list(x)
    assert len(items) == len(x) == 3
    for item, d in zip(items, data):
        assert isinstance(item, ft.FractalTensor)
        assert_nested_equal(item, d)
    assert [len(i) for i in x] == [2, 0, 3]
    assert bool(x) and not bool(x[1])


def test_isinstance_type_depth_lengths():
    x = ft.fractal([[[vec(1, 2)]], [[vec(1, 2)], [vec(1, 2)] * 2]])
    assert isinstance(x, ft.FractalTensor) and isinstance(x[0], ft.FractalTensor)
    assert not isinstance(x[0][0][0], ft.FractalTensor)
    assert x.depth == 3 and x[1].depth == 2 and x[1][1].depth == 1
    assert x.type == ft.FractalTensor[ft.FractalTensor[ft.FractalTensor[ft.Tensor[(1, 2), ft.float64]]]]
    assert x[1].type == x.type.elem and x[1][1].type == x.type.elem.elem
    assert x.lengths() == [[1], [1, 2]]
    assert x[1].lengths() == [1, 2] and x[1][1].lengths() == 2


def test_repr_and_html_show_type_lengths_and_leaf():
    x = ft.fractal([[vec(1, 512)] * 3, [vec(1, 512)]])
    r = repr(x)
    assert "ft<ft<f64[1,512]>>" in r and "[3, 1]" in r and "f64[1,512]" in r
    h = x._repr_html_()
    assert h.lstrip().startswith("<")
    text = html.unescape(h)
    assert "ft<ft<f64[1,512]>>" in text and "[3, 1]" in text and "f64[1,512]" in text
    assert "<ft<" not in h  # the type's angle brackets are escaped in HTML


def test_to_list_gives_nested_python_lists_of_arrays():
    a, b, c = vec(2), vec(2), vec(2)
    got = ft.fractal([[a, b], [], [c]]).to_list()
    assert type(got) is list and all(type(g) is list for g in got)
    assert all(type(leaf) is np.ndarray for g in got for leaf in g)
    assert_nested_equal(got, [[a, b], [], [c]])


# -- storage: read-only leaves and views --------------------------------------------------------

def test_leaves_are_plain_read_only_arrays():
    x = ft.fractal([[vec(2, 3)] * 2, [vec(2, 3)]])
    leaf = x[0][1]
    assert type(leaf) is np.ndarray and leaf.shape == (2, 3) and leaf.dtype == np.float64
    assert not leaf.flags.writeable
    with pytest.raises(ValueError):
        leaf[0, 0] = 1.0
    for leaf in ft.from_numpy(np.zeros((3, 4))).to_list():
        assert type(leaf) is np.ndarray and not leaf.flags.writeable


def test_indexing_slicing_and_reversing_share_the_leaf_buffer():
    """Views, not copies: the same element reached by two access paths is the same memory."""
    x = ft.fractal([vec(4) for _ in range(5)])
    assert np.shares_memory(x[::-1][0], x[len(x) - 1])
    assert np.shares_memory(x[1:][::2][1], x[3])
    assert np.shares_memory(x[::-2][1], x[2])
    assert not np.shares_memory(x[0], x[1])
    xx = ft.fractal([[vec(4)] * k for k in (2, 3, 1)])
    assert np.shares_memory(xx[::-1][0][0], xx[len(xx) - 1][0])
    assert np.shares_memory(xx[1][::-1][0], xx[1][2])
    assert np.shares_memory(xx[-2:][0][1], xx[1][1])


def test_indexing_does_not_copy_the_buffer():
    """x[i] is O(1): a leaf is a view into the one buffer, an inner list a view of it too."""
    x = ft.from_numpy(np.arange(1000.0).reshape(10, 10, 10), depth=2)
    leaf = x[7][3]
    assert leaf.base is not None  # a view ...
    assert np.shares_memory(leaf, x[7][::-1][6])  # ... of the same storage other paths see
    assert np.shares_memory(x[7][0], x[6:][1][0])


def test_compact_lays_out_exactly_the_elements_and_from_storage_rebuilds_the_list():
    xx = ft.fractal([[vec(2)] * k for k in (2, 3, 1)])
    view = xx[::-1]
    leaves, offsets = view.compact()
    assert len(leaves) == 6 and [list(o) for o in offsets] == [[0, 1, 4, 6]]
    rebuilt = ft.FractalTensor.from_storage(view.type, leaves, offsets, range(len(view)))
    assert rebuilt == view and rebuilt.lengths() == [1, 3, 2]


def test_compact_is_computed_once_per_value_and_read_only():
    """(A compiled program asks for every argument's storage on every call.)"""
    view = ft.fractal([[vec(2)] * k for k in (2, 3, 1)])[::-1]
    leaves, offsets = view.compact()
    assert view.compact()[0] is leaves and view.compact()[1] is offsets
    assert not leaves.flags.writeable and not any(o.flags.writeable for o in offsets)
    with pytest.raises(ValueError):
        leaves[0] = 0.0


def test_from_elements_packs_element_values_and_empty_lists():
    a, b = vec(3), vec(3)
    xs = ft.FractalTensor.from_elements(ft.Tensor[(3,), ft.float64], [a, b])
    assert xs == ft.fractal([a, b])
    empty = ft.FractalTensor.from_elements(ft.Tensor[(3,), ft.float64], [])
    assert len(empty) == 0 and empty.type == ft.FractalTensor[ft.Tensor[(3,), ft.float64]]
    nested = ft.FractalTensor.from_elements(xs.type, [xs, xs[:1]])
    assert nested.lengths() == [2, 1]


def test_take_selects_elements_by_position_as_a_view():
    x = ft.fractal([vec(4) for _ in range(5)])
    picked = x.take(np.array([4, 0, 4]))
    assert len(picked) == 3 and np.shares_memory(picked[0], x[4]) and np.shares_memory(picked[1], x[0])
    assert x.take(range(1, 5, 2)) == x[1:5:2]


def test_with_leaves_keeps_the_structure_over_other_leaves():
    xx = ft.fractal([[np.array(1.0), np.array(2.0)], [np.array(3.0)]])
    doubled = xx[::-1].with_leaves(np.array([2.0, 4.0, 6.0]), xx.type)  # storage leaf k -> 2 * (k + 1)
    assert doubled == ft.fractal([[np.array(6.0)], [np.array(2.0), np.array(4.0)]])


# -- types ---------------------------------------------------------------------------------------

def test_tensor_type_constructors():
    assert ft.Tensor[1, 512] == TensorType((1, 512), np.dtype("float32"))
    assert ft.Tensor[4] == TensorType((4,), ft.float32)
    t = ft.Tensor[(1, 512), ft.float64]
    assert t.shape == (1, 512) and t.dtype == np.float64 and str(t) == "f64[1,512]"
    s = ft.Tensor[(), ft.int64]
    assert s.shape == () and s.dtype == np.int64 and str(s) == "i64[]"
    assert ft.Tensor[(1, 512), np.float64] == t  # NumPy scalar types work as dtypes
    assert ft.Tensor[1, 512] != t and ft.Tensor[1, 512] != ft.Tensor[512, 1]
    assert hash(ft.Tensor[(2, 3), ft.int32]) == hash(ft.Tensor[(2, 3), ft.int32])
    with pytest.raises(ft.FractalTypeError):
        ft.Tensor(1, 2)
    with pytest.raises(ft.FractalTypeError):
        ft.Tensor[-1]
    with pytest.raises(ft.FractalTypeError):
        ft.Tensor[(2,), np.complex128]


def test_fractal_tensor_type_constructors():
    t = ft.FractalTensor[ft.FractalTensor[ft.Tensor[4]]]
    assert isinstance(t, FractalTensorType) and t.depth == 2
    assert t.elem == ft.FractalTensor[ft.Tensor[4]] and t.leaf == ft.Tensor[4]
    assert str(t) == "ft<ft<f32[4]>>"
    assert t == ft.FractalTensor[ft.FractalTensor[ft.Tensor[(4,), ft.float32]]]
    assert t != ft.FractalTensor[ft.Tensor[4]] and t != ft.FractalTensor[ft.FractalTensor[ft.Tensor[5]]]
    assert {t: 1}[ft.FractalTensor[ft.FractalTensor[ft.Tensor[4]]]] == 1
    with pytest.raises(ft.FractalTypeError):
        ft.FractalTensor[4]
    # the type of a value is the type written with the constructors
    x = ft.fractal([[np.zeros(4, np.float32)]])
    assert x.type == t


@pytest.mark.parametrize("name", ["float16", "float32", "float64", "int32", "int64", "bool_"])
def test_dtypes_are_numpy_dtypes(name):
    d = getattr(ft, name)
    assert d == getattr(np, name) and d == np.dtype(getattr(np, name))
    assert ft.Tensor[(2,), d].dtype == np.dtype(getattr(np, name))
    x = ft.fractal([np.zeros(2, dtype=d)])
    assert x.type.leaf.dtype == d and x[0].dtype == d


# -- properties ------------------------------------------------------------------------------------

@PROPS
@given(nested_lists())
def test_fractal_round_trips_through_to_list(case):
    """ft.fractal(nested).to_list() is the input structure; type, depth and lengths match it."""
    nested, depth, shape, dtype = case
    x = make(nested, depth, shape, dtype)
    assert isinstance(x, ft.FractalTensor)
    assert x.type == ft_type(depth, shape, dtype) and x.depth == depth
    assert x.lengths() == nested_lengths(nested, depth)
    assert_nested_equal(x.to_list(), nested)
    assert_nested_equal(x, nested)  # indexing reaches the same leaves


@PROPS
@given(nested_lists(), st.data())
def test_slicing_matches_python_lists(case, data):
    """Random slices, composed twice, agree with Python list slicing."""
    nested, depth, shape, dtype = case
    x = make(nested, depth, shape, dtype)
    s1 = data.draw(st.slices(max(len(nested), 1)))
    s2 = data.draw(st.slices(max(len(nested[s1]), 1)))
    assert_nested_equal(x[s1], nested[s1])
    assert_nested_equal(x[s1][s2], nested[s1][s2])


@PROPS
@given(nested_lists(), st.sampled_from([-7, 0, 3]))
def test_to_numpy_with_padding_matches_python_padding(case, pad):
    """to_numpy(pad_value=) equals a plain-Python padding loop; without it, only regular lists convert."""
    nested, depth, shape, dtype = case
    x = make(nested, depth, shape, dtype)
    expected = padded_reference(nested, depth, shape, dtype, pad)
    got = x.to_numpy(pad_value=pad)
    assert got.dtype == dtype and got.shape == expected.shape
    assert np.array_equal(got, expected)
    # the same on the reversed view
    rev = x[::-1].to_numpy(pad_value=pad)
    assert np.array_equal(rev, padded_reference(nested[::-1], depth, shape, dtype, pad))
    if is_regular(nested, depth):
        assert np.array_equal(x.to_numpy(), expected)
    else:
        with pytest.raises(ft.LengthError):
            x.to_numpy()


@st.composite
def dense_arrays(draw):
    """(array, depth): leading list axes >= 1 except possibly the last one (an empty outer list
    has no inner lists, so the lengths of deeper axes would be undefined), any leaf axes."""
    depth = draw(st.integers(1, 3))
    leaf_ndim = draw(st.integers(0, 2))
    lead = [draw(st.integers(1, 4)) for _ in range(depth - 1)] + [draw(st.integers(0, 4))]
    leaf = [draw(st.integers(0, 3)) for _ in range(leaf_ndim)]
    dtype = draw(st.sampled_from([np.float64, np.float32, np.int64, np.int32, np.bool_]))
    seed = draw(st.integers(0, 2**32 - 1))
    a = (np.random.default_rng(seed).standard_normal(lead + leaf) * 5).astype(dtype)
    return a, depth


@PROPS
@given(dense_arrays())
def test_from_numpy_to_numpy_round_trip(case):
    a, depth = case
    x = ft.from_numpy(a, depth=depth)
    assert x.depth == depth and x.type.leaf == ft.Tensor[a.shape[depth:], a.dtype]
    out = x.to_numpy()
    assert out.dtype == a.dtype and out.shape == a.shape and np.array_equal(out, a)
    if len(a):
        assert np.array_equal(x[-1].to_numpy() if depth > 1 else x[-1], a[-1])
