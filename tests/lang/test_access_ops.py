"""Access operators, each checked against a plain Python/NumPy loop over lists of arrays.

Every operator is run three ways and must give the same value: eagerly on FractalTensors,
traced by `@ft.function` and run by the reference interpreter (`f(...)`), and via
`f.interpret(...)`; the traced program must also pass `verify()`.  Inputs are ragged
(inner lists of different lengths, some empty) wherever lists of lists appear.
Reference semantics (README / docstrings of `fractal.lang.api`):

    reverse(xs)[i]            == xs[n-1-i]
    gather(xs, idx)[k]        == xs[idx[k]]                     (negative idx count from the end)
    join(xs, ys)              == xs + ys
    flatten(xss)              == [x for xs in xss for x in xs]
    split(xs, n)              == n contiguous parts, the first len % n one longer
    window(xs, size, ...)[w][k] == padded[w*stride + k*dilation], no trailing partial window
                                   (padded: p pad elements at each end, or (before, after); lists pad with [])
    shifted_window(xs, s, d)[i][k] == xs[(i + (k - s//2)*d) mod n]
    dilate(xs, d)[k]          == xs[k::d]  (always d sub-lists)
    interleave(dilate(xs, d)) == xs
    zip(a, b)[i]              == (a[i], b[i])  (equal lengths)
    product(xs, ys)[i][j]     == (xs[i], ys[j])
    repeat(x, n)              == [x] * n  (depth + 1)
    enumerate(xs)[i]          == (int64(i), xs[i])
    stack(xs) == np.stack(xs); slices(t, axis)[i] == np.take(t, i, axis); length(xs) == int64(len(xs))
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fractal as ft

PROPS = settings(max_examples=50, deadline=None)
F2 = ft.Tensor[(2,), ft.float64]


# -- helpers ----------------------------------------------------------------------------------------

def assert_same(actual, expected, path="result"):
    """`actual` (FractalTensor / tuple / array) equals the nested Python value `expected`
    (lists, tuples, arrays) exactly: same nesting, lengths, shapes, dtypes and values."""
    if isinstance(expected, list):
        assert isinstance(actual, ft.FractalTensor), f"{path}: expected a FractalTensor, got {type(actual)}"
        assert len(actual) == len(expected), f"{path}: length {len(actual)} != {len(expected)}"
        for i, e in enumerate(expected):
            assert_same(actual[i], e, f"{path}[{i}]")
    elif isinstance(expected, tuple):
        assert isinstance(actual, tuple), f"{path}: expected a tuple, got {type(actual)}"
        assert len(actual) == len(expected), f"{path}: tuple of {len(actual)} != {len(expected)}"
        for i, e in enumerate(expected):
            assert_same(actual[i], e, f"{path}.{i}")
    else:
        assert not isinstance(actual, (ft.FractalTensor, tuple, list)), f"{path}: expected a tensor"
        a, e = np.asarray(actual), np.asarray(expected)
        assert a.shape == e.shape, f"{path}: shape {a.shape} != {e.shape}"
        assert a.dtype == e.dtype, f"{path}: dtype {a.dtype} != {e.dtype}"
        assert np.array_equal(a, e), f"{path}: {a} != {e}"


def check(fn, *args, expected, type=None):
    """`fn(*args)` equals `expected` eagerly, traced + interpreted, and via `interpret`;
    the traced program verifies and its result has the eager result's type."""
    eager = fn(*args)
    assert_same(eager, expected)
    f = ft.function(fn, name="access")
    f.trace(*args).verify()
    traced, interpreted = f(*args), f.interpret(*args)
    assert_same(traced, expected)
    assert_same(interpreted, expected)
    if isinstance(eager, ft.FractalTensor):
        assert traced.type == eager.type
        if type is not None:
            assert eager.type == type
    return eager


def both_ways(fn, *args):
    """(eager result, traced-and-interpreted result) of `fn(*args)`."""
    return fn(*args), ft.function(fn, name="access")(*args)


def leaves(n, shape=(2,), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape) for _ in range(n)]


def ragged(lengths, shape=(2,), seed=0):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(shape) for _ in range(k)] for k in lengths]


def fr(nested, depth=1, shape=(2,)):
    """ft.fractal with the type given, so empty lists work too."""
    t = ft.Tensor[shape, ft.float64]
    for _ in range(depth):
        t = ft.FractalTensor[t]
    return ft.fractal(nested, type=t)


XS = leaves(7, seed=1)                        # depth 1
XSS = ragged([3, 0, 2, 4, 1], seed=2)         # depth 2, ragged with an empty inner list
YSS = ragged([1, 2, 0], seed=3)


# -- plain-Python references -------------------------------------------------------------------------

def ref_split(xs, n):
    size, extra = divmod(len(xs), n)
    parts, start = [], 0
    for k in range(n):
        length = size + (1 if k < extra else 0)
        parts.append(xs[start:start + length])
        start += length
    return parts


def ref_window(xs, size, stride=1, dilation=1, padding=0, pad=None):
    before, after = padding if isinstance(padding, tuple) else (padding, padding)
    padded = [pad] * before + list(xs) + [pad] * after
    out, start = [], 0
    while start + dilation * (size - 1) < len(padded):
        out.append([padded[start + k * dilation] for k in range(size)])
        start += stride
    return out


def window_count(n, size, stride, dilation, padding):
    before, after = padding if isinstance(padding, tuple) else (padding, padding)
    return max(0, (n + before + after - dilation * (size - 1) - 1) // stride + 1)


def ref_shifted_window(xs, size, dilation=1):
    n, half = len(xs), size // 2
    return [[xs[(i + (k - half) * dilation) % n] for k in range(size)] for i in range(n)]


def ref_interleave(xss):
    d, out = len(xss), []
    n = sum(len(x) for x in xss)
    for i in range(n):
        out.append(xss[i % d][i // d])
    return out


# -- reverse, gather, join ------------------------------------------------------------------------

@pytest.mark.parametrize("data,depth", [(XS, 1), (XSS, 2), ([], 1), ([[]], 2)])
def test_reverse(data, depth):
    check(lambda xs: ft.reverse(xs), fr(data, depth), expected=data[::-1], type=fr(data, depth).type)


def test_reverse_is_a_view():
    xs = fr(XS)
    assert np.shares_memory(ft.reverse(xs)[0], xs[len(xs) - 1])


@pytest.mark.parametrize("idx", [[0], [4, 0, -1, 2, 2, -5], [], [-1, -1, -1]])
def test_gather_static_indices(idx):
    xss = fr(XSS, 2)
    check(lambda xs: ft.gather(xs, idx), xss, expected=[XSS[i] for i in idx])
    check(lambda xs: ft.gather(xs, np.array(idx, dtype=np.int64)), xss, expected=[XSS[i] for i in idx])


def test_gather_is_a_view_and_checks_range():
    xs = fr(XS)
    assert np.shares_memory(ft.gather(xs, [3, 1])[1], xs[1])
    for bad in ([7], [-8]):
        with pytest.raises(ft.LengthError):
            ft.gather(xs, bad)
        with pytest.raises(ft.LengthError):
            ft.function(lambda xs: ft.gather(xs, bad), name="g")(xs)


@pytest.mark.parametrize("idx_dtype", [np.int64, np.int32])
def test_gather_traced_indices(idx_dtype):
    """Indices passed as a 1-D int tensor argument are traced (data-dependent access)."""
    xss = fr(XSS, 2)
    idx = np.array([4, -5, 0, 2, -1, 2], dtype=idx_dtype)
    expected = [XSS[int(i)] for i in idx]
    check(lambda xs, i: ft.gather(xs, i), xss, idx, expected=expected)
    f = ft.function(lambda xs, i: ft.gather(xs, i), name="g")
    assert "gather_dynamic" in str(f.trace(xss, idx))  # not baked in as constants
    assert_same(f(xss, np.array([], dtype=idx_dtype)), [])
    with pytest.raises(ft.LengthError):
        f(xss, np.array([5], dtype=idx_dtype))
    with pytest.raises(ft.FractalTypeError):
        ft.function(lambda xs, i: ft.gather(xs, i), name="g")(xss, np.zeros(2))  # float indices


@pytest.mark.parametrize("a,b", [(XSS, YSS), ([], YSS), (XSS, []), ([], [])])
def test_join(a, b):
    out = check(lambda xs, ys: ft.join(xs, ys), fr(a, 2), fr(b, 2), expected=a + b)
    assert len(out) == len(a) + len(b)


def test_join_needs_same_types():
    with pytest.raises(ft.FractalTypeError):
        ft.join(fr(XS), fr(XSS, 2))
    with pytest.raises(ft.FractalTypeError):
        ft.function(lambda a, b: ft.join(a, b), name="j")(fr(XS), fr(leaves(2, (3,)), shape=(3,)))


# -- flatten, split -----------------------------------------------------------------------------

def test_flatten():
    check(lambda xss: ft.flatten(xss), fr(XSS, 2), expected=[x for xs in XSS for x in xs],
          type=ft.FractalTensor[F2])
    xsss = [ragged([2, 0], seed=4), [], ragged([1, 3, 0], seed=5)]
    check(lambda x: ft.flatten(x), fr(xsss, 3), expected=[xs for xss in xsss for xs in xss])
    check(lambda x: ft.flatten(x), fr([[], []], 2), expected=[])
    # flattening a reversed / sliced view sees exactly the view's elements
    check(lambda x: ft.flatten(ft.reverse(x)[1:]), fr(XSS, 2),
          expected=[x for xs in XSS[::-1][1:] for x in xs])
    with pytest.raises(ft.FractalTypeError):
        ft.flatten(fr(XS))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 10])
def test_split(n):
    """n contiguous near-equal parts, the first len % n one longer; n > len gives empty parts."""
    parts = check(lambda xs: ft.split(xs, n), fr(XS), expected=ref_split(XS, n))
    lengths = [len(p) for p in parts]
    assert len(lengths) == n and sum(lengths) == len(XS)
    assert lengths == sorted(lengths, reverse=True) and max(lengths) - min(lengths) <= 1
    assert lengths.count(max(lengths)) == (len(XS) % n or n)
    check(lambda x: ft.split(x, n), fr(XSS, 2), expected=ref_split(XSS, n))


def test_split_examples_and_errors():
    assert [len(p) for p in ft.split(fr(leaves(7)), 3)] == [3, 2, 2]
    assert [len(p) for p in ft.split(fr(leaves(2)), 4)] == [1, 1, 0, 0]
    assert [len(p) for p in ft.split(fr([]), 2)] == [0, 0]
    for bad in (0, -1, 1.5):
        with pytest.raises(ft.ArgumentError):
            ft.split(fr(XS), bad)


# -- window, shifted_window -----------------------------------------------------------------------

@pytest.mark.parametrize("size,stride,dilation,padding", [
    (1, 1, 1, 0), (2, 1, 1, 0), (3, 2, 1, 0), (2, 1, 2, 0), (3, 2, 2, 1), (3, 1, 1, 1),
    (4, 3, 1, 2), (7, 1, 1, 0), (8, 1, 1, 0), (3, 1, 3, 0), (2, 5, 1, 3),
    (3, 1, 1, (2, 0)), (3, 1, 2, (4, 0)), (2, 2, 1, (0, 1)), (4, 1, 1, (3, 1)), (8, 1, 1, (7, 0))])
def test_window(size, stride, dilation, padding):
    pad = np.full((2,), -9.0)
    out = check(lambda xs: ft.window(xs, size, stride=stride, dilation=dilation, padding=padding,
                                     pad_value=-9.0),
                fr(XS), expected=ref_window(XS, size, stride, dilation, padding, pad),
                type=ft.FractalTensor[ft.FractalTensor[F2]])
    assert len(out) == window_count(len(XS), size, stride, dilation, padding)
    assert all(len(w) == size for w in out)


def test_window_count_and_no_partial_window():
    xs = fr(leaves(5))
    assert len(ft.window(xs, 2, stride=2)) == 2          # [0,1], [2,3]; no partial [4]
    assert len(ft.window(xs, 5)) == 1 and len(ft.window(xs, 6)) == 0
    assert len(ft.window(xs, 3, dilation=2)) == 1        # [0, 2, 4]
    assert len(ft.window(xs, 3, padding=1)) == 5         # same-length windows
    assert len(ft.window(fr([]), 1, padding=1)) == 2     # two pad-only windows
    assert len(ft.window(fr([]), 2)) == 0


def test_causal_windows_end_at_each_element():
    """padding=(dilation*(size-1), 0): one window per element, its last entry the element itself,
    the others the elements dilation, 2*dilation, ... before it (pad elements before the start)."""
    for size, dilation in [(1, 1), (2, 1), (3, 1), (3, 2), (2, 4)]:
        out = ft.window(fr(XS), size, dilation=dilation, padding=(dilation * (size - 1), 0), pad_value=7.0)
        assert len(out) == len(XS)
        for t, w in enumerate(out):
            for k in range(size):
                back = t - (size - 1 - k) * dilation
                assert_same(w[k], XS[back] if back >= 0 else np.full((2,), 7.0))


def test_window_padding_pairs_are_normalised():
    """(p, p) is the same program as p; a list is taken as a pair."""
    f = ft.function(lambda xs: ft.window(xs, 2, padding=(1, 1)), name="w")
    g = ft.function(lambda xs: ft.window(xs, 2, padding=1), name="w")
    (a,), (b,) = f.trace(fr(XS)).body.eqns, g.trace(fr(XS)).body.eqns
    assert a.attrs == b.attrs and a.attrs["padding"] == 1
    assert_same(ft.window(fr(XS), 2, padding=[2, 0]), ref_window(XS, 2, padding=(2, 0), pad=np.zeros(2)))


def test_window_on_lists_of_lists():
    """The elements may themselves be (ragged) lists; padding gives empty lists."""
    check(lambda xss: ft.window(xss, 2, stride=1), fr(XSS, 2), expected=ref_window(XSS, 2))
    check(lambda xss: ft.window(xss, 2, stride=2, dilation=2), fr(XSS, 2),
          expected=ref_window(XSS, 2, 2, 2))
    for padding in (1, (2, 0), (0, 1), (1, 3)):
        check(lambda xss: ft.window(xss, 2, padding=padding), fr(XSS, 2),
              expected=ref_window(XSS, 2, padding=padding, pad=[]))
    with pytest.raises(ft.ArgumentError):  # list elements have no pad value
        ft.window(fr(XSS, 2), 2, padding=1, pad_value=0.5)


def test_window_argument_errors():
    for kwargs in ({"size": 0}, {"size": 2, "stride": 0}, {"size": 2, "dilation": 0},
                   {"size": 2, "padding": -1}, {"size": 2, "padding": (1, -1)}, {"size": 2, "padding": (1, 2, 3)},
                   {"size": 2, "padding": (1.0, 0)}, {"size": 2, "padding": (True, 0)}):
        size = kwargs.pop("size")
        with pytest.raises(ft.ArgumentError):
            ft.window(fr(XS), size, **kwargs)


@pytest.mark.parametrize("size,dilation", [(1, 1), (3, 1), (3, 2), (5, 1), (5, 3), (9, 1)])
def test_shifted_window(size, dilation):
    """Circular windows centred on each element (odd size)."""
    for data, depth in ((XS, 1), (XSS, 2)):
        out = check(lambda xs: ft.shifted_window(xs, size, dilation=dilation), fr(data, depth),
                    expected=ref_shifted_window(data, size, dilation))
        assert len(out) == len(data)
        for i in range(len(data)):  # the centre of window i is element i
            assert_same(out[i][size // 2], data[i])
    check(lambda xs: ft.shifted_window(xs, size, dilation=dilation), fr([]), expected=[])


def test_shifted_window_needs_odd_size():
    with pytest.raises(ft.ArgumentError):
        ft.shifted_window(fr(XS), 2)


# -- dilate, interleave --------------------------------------------------------------------------

@pytest.mark.parametrize("d", [1, 2, 3, 7, 9])
def test_dilate_and_interleave(d):
    """dilate(xs, d)[k] == xs[k::d], always d sub-lists; interleave inverts it."""
    for data, depth in ((XS, 1), (XSS, 2), ([], 1)):
        x = fr(data, depth)
        out = check(lambda xs: ft.dilate(xs, d), x, expected=[data[k::d] for k in range(d)])
        assert len(out) == d and out.depth == depth + 1
        check(lambda xs: ft.interleave(ft.dilate(xs, d)), x, expected=data)
        dilated = [data[k::d] for k in range(d)]
        check(lambda xss: ft.interleave(xss), fr(dilated, depth + 1), expected=ref_interleave(dilated))


def test_interleave_rejects_lists_not_made_by_dilate():
    with pytest.raises(ft.LengthError):
        ft.interleave(fr(ragged([1, 3]), 2))
    f = ft.function(lambda xss: ft.interleave(xss), name="i")
    with pytest.raises(ft.LengthError):
        f(fr(ragged([1, 3]), 2))
    with pytest.raises(ft.FractalTypeError):
        ft.interleave(fr(XS))


# -- stack, slices, length ------------------------------------------------------------------------

def test_stack_and_slices_eager():
    t = np.arange(24.0).reshape(2, 3, 4)
    for axis in (0, 1, 2, -1):
        s = ft.slices(t, axis)
        assert_same(s, [np.take(t, i, axis=axis) for i in range(t.shape[axis])])
        assert np.array_equal(ft.stack(s), np.moveaxis(t, axis, 0))
    assert np.array_equal(ft.stack(fr(XS)), np.stack(XS))
    assert ft.stack(fr([])).shape == (0, 2)
    with pytest.raises(ft.FractalTypeError):
        ft.stack(fr(XSS, 2))
    with pytest.raises(ft.FractalTypeError):
        ft.slices(fr(XS))


def test_stack_and_slices_traced():
    t = np.arange(24.0).reshape(2, 3, 4)
    for axis in (0, 1, -1):
        check(lambda t: ft.slices(t, axis), t, expected=[np.take(t, i, axis=axis) for i in range(t.shape[axis])])
        check(lambda t: ft.stack(ft.slices(t, axis)), t, expected=np.moveaxis(t, axis, 0))
        check(lambda t: ft.stack(ft.reverse(ft.slices(t, axis))), t, expected=np.moveaxis(t, axis, 0)[::-1])
    # a traced list's length is runtime data: stack needs length= ...
    with pytest.raises(ft.TraceError):
        ft.function(lambda xs: ft.stack(xs), name="s").trace(fr(XS))
    check(lambda xs: ft.stack(xs, length=7), fr(XS), expected=np.stack(XS))
    # ... which is checked when the program runs
    with pytest.raises(ft.LengthError):
        ft.function(lambda xs: ft.stack(xs, length=7), name="s")(fr(leaves(3)))


def test_length():
    for data, depth in ((XS, 1), (XSS, 2), ([], 1)):
        check(lambda xs: ft.length(xs), fr(data, depth), expected=np.int64(len(data)))
    check(lambda xss: ft.map(lambda xs: ft.length(xs), xss), fr(XSS, 2),
          expected=[np.int64(len(r)) for r in XSS])


# -- zip, product, repeat, enumerate ---------------------------------------------------------------

def test_zip_elements_are_tuples():
    a, b = fr(XS[:5]), fr(XSS, 2)
    out = check(lambda a, b: ft.zip(a, b), a, b, expected=list(zip(XS[:5], XSS)))
    assert isinstance(out[0], tuple) and len(out[0]) == 2
    assert out.type == ft.FractalTensor[ft.TupleType((F2, ft.FractalTensor[F2]))]
    c = fr(leaves(5, (3,), seed=9), shape=(3,))
    check(lambda a, b, c: ft.zip(a, b, c), a, b, c, expected=list(zip(XS[:5], XSS, c.to_list())))


def test_zip_lengths_must_match():
    with pytest.raises(ft.LengthError):
        ft.zip(fr(XS), fr(XSS, 2))
    f = ft.function(lambda a, b: ft.zip(a, b), name="z")
    with pytest.raises(ft.LengthError):
        f(fr(XS), fr(XSS, 2))  # lengths of traced lists are checked when the program runs


@pytest.mark.parametrize("xs,ys", [(XS[:3], XSS), (XSS, XS[:2]), ([], XS), (XS, [])])
def test_product(xs, ys):
    """result[i][j] == (xs[i], ys[j]), depth + 1."""
    dx, dy = (2 if xs is XSS else 1), (2 if ys is XSS else 1)
    out = check(lambda a, b: ft.product(a, b), fr(xs, dx), fr(ys, dy),
                expected=[[(x, y) for y in ys] for x in xs])
    assert out.depth == 2 and len(out) == len(xs)


def test_product_then_flatten_is_all_pairs():
    xs, ys = XS[:3], XS[3:]
    check(lambda a, b: ft.flatten(ft.product(a, b)), fr(xs), fr(ys),
          expected=[(x, y) for x in xs for y in ys])


@pytest.mark.parametrize("n", [0, 1, 4])
def test_repeat(n):
    """n copies, one more list level."""
    t = np.arange(6.0).reshape(2, 3)
    out = check(lambda t: ft.repeat(t, n), t, expected=[t] * n,
                type=ft.FractalTensor[ft.Tensor[(2, 3), ft.float64]])
    assert out.depth == 1
    out = check(lambda xs: ft.repeat(xs, n), fr(XSS, 2), expected=[XSS] * n)
    assert out.depth == 3
    z = ft.zip(fr(XS[:2]), fr(XSS[:2], 2))
    check(lambda a, b: ft.repeat(ft.zip(a, b), n), fr(XS[:2]), fr(XSS[:2], 2),
          expected=[list(zip(XS[:2], XSS[:2]))] * n)
    assert ft.repeat(z, n).depth == 2


def test_enumerate():
    """Elements are (i, x) with i an int64 scalar."""
    for data, depth in ((XS, 1), (XSS, 2), ([], 1)):
        out = check(lambda xs: ft.enumerate(xs), fr(data, depth),
                    expected=[(np.int64(i), x) for i, x in enumerate(data)])
        for i, (k, _) in enumerate(out):
            assert np.asarray(k).shape == () and np.asarray(k).dtype == np.int64 and k == i
    # the index is usable inside a map body, eagerly and traced
    check(lambda xs: ft.map(lambda p: p[1] * p[0], ft.enumerate(xs)), fr(XS),
          expected=[x * i for i, x in enumerate(XS)])


# -- access operators on zipped lists and inside map bodies ---------------------------------------

A, B = XS[:5], XSS  # equal outer lengths


@pytest.mark.parametrize("name,op,ref", [
    ("reverse", lambda z: ft.reverse(z), lambda z: z[::-1]),
    ("gather", lambda z: ft.gather(z, [4, -5, 1]), lambda z: [z[i] for i in (4, -5, 1)]),
    ("split", lambda z: ft.split(z, 2), lambda z: ref_split(z, 2)),
    ("dilate", lambda z: ft.dilate(z, 2), lambda z: [z[0::2], z[1::2]]),
    ("interleave", lambda z: ft.interleave(ft.dilate(z, 3)), lambda z: z),
    ("window", lambda z: ft.window(z, 2, stride=2), lambda z: ref_window(z, 2, 2)),
    ("shifted", lambda z: ft.shifted_window(z, 3), lambda z: ref_shifted_window(z, 3)),
    ("join", lambda z: ft.join(z, ft.reverse(z)), lambda z: z + z[::-1]),
    ("slice", lambda z: z[::-2], lambda z: z[::-2]),
    ("repeat", lambda z: ft.repeat(z, 2), lambda z: [z, z]),
    ("enumerate", lambda z: ft.enumerate(z), lambda z: [(np.int64(i), e) for i, e in enumerate(z)]),
])
def test_access_ops_on_zipped_lists(name, op, ref):
    """An access operator applied to zip(a, b) acts on the pairs, keeping them aligned."""
    check(lambda a, b: op(ft.zip(a, b)), fr(A), fr(B, 2), expected=ref(list(zip(A, B))))


def test_zipped_lists_of_lists_cannot_be_flattened():
    """The elements of zip(a, b) are tuples, not lists, even when a and b hold lists."""
    z = ft.zip(fr(XSS, 2), fr(XSS, 2))
    for op in (ft.flatten, ft.interleave):
        with pytest.raises(ft.FractalTypeError):
            op(z)
        with pytest.raises(ft.FractalTypeError):
            ft.function(lambda a, b: op(ft.zip(a, b)), name="z").trace(fr(XSS, 2), fr(XSS, 2))


def test_traced_indices_on_zipped_list():
    idx = np.array([0, -1, 3], dtype=np.int64)
    check(lambda a, b, i: ft.gather(ft.zip(a, b), i), fr(A), fr(B, 2), idx,
          expected=[(A[i], B[i]) for i in idx])


@pytest.mark.parametrize("name,op,ref", [
    ("reverse", lambda r: ft.reverse(r), lambda r: r[::-1]),
    ("window", lambda r: ft.window(r, 2, padding=1, pad_value=0.5),
     lambda r: ref_window(r, 2, 1, 1, 1, np.full((2,), 0.5))),
    ("dilate", lambda r: ft.dilate(r, 2), lambda r: [r[0::2], r[1::2]]),
    ("shifted", lambda r: ft.shifted_window(r, 3, dilation=2), lambda r: ref_shifted_window(r, 3, 2)),
    ("split", lambda r: ft.split(r, 3), lambda r: ref_split(r, 3)),
    ("gather", lambda r: ft.gather(ft.join(r, r), [0, -1]), lambda r: [r[0], r[-1]]),
    ("enumerate", lambda r: ft.map(lambda p: p[1] + p[0], ft.enumerate(r)),
     lambda r: [x + i for i, x in enumerate(r)]),
])
def test_access_ops_inside_map_over_ragged_rows(name, op, ref):
    """Inside a map body each row has its own (runtime) length."""
    rows = [r for r in XSS if r] if name == "gather" else XSS
    check(lambda xss: ft.map(op, xss), fr(rows, 2), expected=[ref(r) for r in rows])


# -- properties --------------------------------------------------------------------------------------

@st.composite
def lists(draw, max_len=9, depth=None):
    """(nested data, depth): a depth-1 list of f64[2] or a ragged depth-2 list of them."""
    depth = draw(st.integers(1, 2)) if depth is None else depth
    seed = draw(st.integers(0, 2**32 - 1))
    n = draw(st.integers(0, max_len))
    if depth == 1:
        return leaves(n, seed=seed), 1
    inner = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    return ragged(inner, seed=seed), 2


@PROPS
@given(lists(), st.integers(1, 5))
def test_interleave_inverts_dilate(case, d):
    data, depth = case
    x = fr(data, depth)
    assert_same(ft.interleave(ft.dilate(x, d)), data)
    assert_same(ft.dilate(x, d), [data[k::d] for k in range(d)])


@PROPS
@given(lists())
def test_reverse_is_an_involution(case):
    data, depth = case
    x = fr(data, depth)
    assert ft.reverse(ft.reverse(x)) == x
    assert_same(ft.reverse(ft.reverse(x)), data)


PADDINGS = st.integers(0, 3) | st.tuples(st.integers(0, 5), st.integers(0, 3))


@PROPS
@given(st.integers(0, 12), st.integers(1, 5), st.integers(1, 4), st.integers(1, 3), PADDINGS,
       st.floats(-5, 5, allow_nan=False))
def test_window_counts_and_contents(n, size, stride, dilation, padding, pad_value):
    data = leaves(n)
    out = ft.window(fr(data), size, stride=stride, dilation=dilation, padding=padding, pad_value=pad_value)
    assert len(out) == window_count(n, size, stride, dilation, padding)
    assert_same(out, ref_window(data, size, stride, dilation, padding, np.full((2,), pad_value)))


@PROPS
@given(lists(depth=2), st.integers(1, 3), st.integers(1, 2), st.integers(1, 3), PADDINGS)
def test_windows_of_ragged_lists_of_lists(case, size, stride, dilation, padding):
    """Eager, traced and interpreted alike; padded positions hold empty lists."""
    data, _ = case
    check(lambda xss: ft.window(xss, size, stride=stride, dilation=dilation, padding=padding), fr(data, 2),
          expected=ref_window(data, size, stride, dilation, padding, pad=[]))


@PROPS
@given(lists(), st.integers(1, 12))
def test_flatten_of_split_is_identity(case, n):
    data, depth = case
    x = fr(data, depth)
    parts = ft.split(x, n)
    assert len(parts) == n
    assert ft.flatten(parts) == x
    assert_same(parts, ref_split(data, n))


@PROPS
@given(st.integers(1, 2), st.data())
def test_join_lengths_add_up(depth, data):
    da = data.draw(lists(depth=depth))[0]
    db = data.draw(lists(depth=depth))[0]
    joined = ft.join(fr(da, depth), fr(db, depth))
    assert len(joined) == len(da) + len(db)
    assert_same(joined, da + db)
    if depth == 2:  # ... and so do the inner lengths
        assert joined.lengths() == fr(da, 2).lengths() + fr(db, 2).lengths()
        assert ft.flatten(joined) == ft.join(ft.flatten(fr(da, 2)), ft.flatten(fr(db, 2)))


OPS = {
    "reverse": lambda p: (lambda xs: ft.reverse(xs)),
    "gather": lambda p: (lambda xs: ft.gather(xs, [i % max(p["n"], 1) for i in p["idx"]] if p["n"] else [])),
    "join": lambda p: (lambda xs: ft.join(xs, ft.reverse(xs))),
    "split": lambda p: (lambda xs: ft.split(xs, p["k"])),
    "window": lambda p: (lambda xs: ft.window(xs, p["size"], stride=p["stride"], dilation=p["dilation"])),
    "shifted_window": lambda p: (lambda xs: ft.shifted_window(xs, 2 * p["size"] - 1, dilation=p["dilation"])),
    "dilate": lambda p: (lambda xs: ft.dilate(xs, p["k"])),
    "interleave": lambda p: (lambda xs: ft.interleave(ft.dilate(xs, p["k"]))),
    "zip": lambda p: (lambda xs: ft.zip(xs, ft.reverse(xs))),
    "product": lambda p: (lambda xs: ft.product(xs, xs[:p["k"]])),
    "repeat": lambda p: (lambda xs: ft.repeat(xs, p["k"])),
    "enumerate": lambda p: (lambda xs: ft.enumerate(xs)),
    "length": lambda p: (lambda xs: ft.length(xs)),
    "slice": lambda p: (lambda xs: xs[::-1][1::2]),
    "zip_window": lambda p: (lambda xs: ft.window(ft.zip(xs, xs), p["size"], stride=p["stride"])),
    "flatten_split": lambda p: (lambda xs: ft.flatten(ft.split(xs, p["k"]))),
}


@PROPS
@given(lists(), st.sampled_from(sorted(OPS)),
       st.fixed_dictionaries({"k": st.integers(1, 4), "size": st.integers(1, 3), "stride": st.integers(1, 3),
                              "dilation": st.integers(1, 2), "n": st.just(0),
                              "idx": st.lists(st.integers(-20, 20), max_size=4)}))
def test_eager_equals_traced_and_interpreted(case, name, params):
    """For random ragged inputs, eager execution and the interpreted program agree exactly."""
    data, depth = case
    x = fr(data, depth)
    params = dict(params, n=len(data))
    eager, traced = both_ways(OPS[name](params), x)
    if isinstance(eager, ft.FractalTensor):
        assert traced.type == eager.type
        assert traced == eager
    else:
        assert_same(traced, eager)


@PROPS
@given(lists(), st.lists(st.integers(-20, 20), max_size=6))
def test_traced_gather_indices_agree_with_python(case, raw):
    data, depth = case
    n = len(data)
    idx = np.array([i % n - (n if i < 0 else 0) for i in raw] if n else [], dtype=np.int64)
    f = ft.function(lambda xs, i: ft.gather(xs, i), name="g")
    expected = [data[i] for i in idx]
    assert_same(f(fr(data, depth), idx), expected)
    assert_same(ft.gather(fr(data, depth), idx.tolist()), expected)
