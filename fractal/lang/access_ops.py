"""Access operators: declarative reads of FractalTensors.

They only choose which elements a combinator sees (each lowers to a
quasi-affine access map in the ETDG); the NumPy rules here are the reference
semantics.  Rules work on plain (non-zipped) lists: lists of tuples are split
into their component lists before an access operator is applied.
"""

from __future__ import annotations

import numpy as np

from .errors import ArgumentError, FractalTypeError, LengthError
from .limits import check_points
from .registry import register
from .types import FractalTensorType, TensorType, int64
from .values import FractalTensor, check_slice, type_of

I64 = TensorType((), int64)


def _list(t, op: str, what: str = "argument") -> FractalTensorType:
    if not isinstance(t, FractalTensorType):
        raise FractalTypeError(f"{op}: the {what} must be a FractalTensor, got a {t}")
    return t


def _nested(t, op: str) -> FractalTensorType:
    t = _list(t, op)
    if not isinstance(t.elem, FractalTensorType):
        raise FractalTypeError(f"{op}: needs a list of lists (depth >= 2), got {t} of depth {t.depth}")
    return t


def _positive(op: str, **values) -> None:
    for name, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ArgumentError(f"{op}: {name} must be a positive int, got {v!r}")


def _check_index(i: int, n: int, op: str) -> int:
    if not -n <= i < n:
        raise LengthError(f"{op}: index {i} is out of range for a list of length {n}")
    return i % n


def _same(types):
    return (types[0],)


# -- selecting elements ---------------------------------------------------------------------

def _list_index_rule(types, i):
    return (_list(types[0], "list index").elem,)


@register("list_index", "access", _list_index_rule)
def _list_index(xs, i):
    """`xs[i]`: one element (negative i counts from the end)."""
    return (xs[_check_index(i, len(xs), "xs[i]")],)


def _list_slice_rule(types, start, stop, step):
    _list(types[0], "list slice")
    check_slice(slice(start, stop, step))
    return _same(types)


@register("list_slice", "access", _list_slice_rule)
def _list_slice(xs, start, stop, step):
    """`xs[start:stop:step]` (a view)."""
    return (xs[start:stop:step],)


@register("reverse", "access", lambda types: (_list(types[0], "reverse"),))
def _reverse(xs):
    """The elements in reverse order (a view)."""
    return (xs[::-1],)


def _gather_rule(types, indices):
    if not all(isinstance(i, int) for i in indices):
        raise FractalTypeError(f"gather: static indices must be ints, got {indices!r}")
    return (_list(types[0], "gather"),)


@register("gather", "access", _gather_rule)
def _gather(xs, indices):
    """`result[k] == xs[indices[k]]` for indices known at trace time (a view)."""
    n = len(xs)
    idx = np.array([_check_index(i, n, "gather") for i in indices], dtype=np.int64)
    return (xs.take(idx),)


def _gather_dynamic_rule(types):
    xs, idx = types
    _list(xs, "gather")
    elem = idx.elem if isinstance(idx, FractalTensorType) else idx  # a list of int scalars: per list, ragged
    if not isinstance(elem, TensorType) or elem.ndim != (0 if elem is not idx else 1) or elem.dtype.kind not in "iu":
        raise FractalTypeError(f"gather: indices must be a 1-D integer tensor or a list of integer scalars, got {idx}")
    return (xs,)


@register("gather_dynamic", "access", _gather_dynamic_rule)
def _gather_dynamic(xs, indices):
    """Like `gather`, with indices computed at run time (data-dependent access): a 1-D tensor,
    or a list of scalars (a graph's neighbour lists: each node's list of any length)."""
    n = len(xs)
    if isinstance(indices, FractalTensor):
        indices = indices.compact()[0]
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if len(idx) and (idx.min() < -n or idx.max() >= n):
        raise LengthError(f"gather: an index in {idx.tolist()} is out of range for a list of length {n}")
    return (xs.take(idx % max(n, 1)),)


def _join_rule(types):
    a, b = types
    _list(a, "join", "first argument"), _list(b, "join", "second argument")
    if a != b:
        raise FractalTypeError(f"join: both lists must have the same type, got {a} and {b}")
    return (a,)


@register("join", "access", _join_rule)
def _join(xs, ys):
    """The elements of `xs` followed by those of `ys`."""
    return (FractalTensor.from_elements(xs.elem_type, list(xs) + list(ys)),)


# -- changing the nesting -------------------------------------------------------------------

@register("flatten", "access", lambda types: (_nested(types[0], "flatten").elem,))
def _flatten(xss):
    """Concatenate the inner lists (depth - 1)."""
    leaves, offsets = xss.compact()
    total = int(offsets[0][-1])
    return (FractalTensor.from_storage(xss.elem_type, leaves, offsets[1:], range(total)),)


def _split_rule(types, n):
    _positive("split", n=n)
    return (FractalTensorType(_list(types[0], "split")),)


@register("split", "access", _split_rule)
def _split(xs, n):
    """n contiguous parts of near-equal length (the first `len % n` parts one longer)."""
    size, extra = divmod(len(xs), n)
    bounds = np.cumsum([0] + [size + (k < extra) for k in range(n)])
    return (FractalTensor.from_elements(xs.type, [xs[bounds[k]:bounds[k + 1]] for k in range(n)]),)


def pad_sides(padding) -> tuple[int, int]:
    """`(before, after)` of a window's `padding`: an int pads both ends alike, a pair
    `(before, after)` each end by its own count (`(k - 1, 0)`: causal, left only)."""
    if isinstance(padding, tuple):
        return padding
    return padding, padding


def normalise_padding(padding):
    """The `padding` attribute as programs hold it: an int, or a `(before, after)` tuple when
    the ends differ (a list becomes a tuple, `(p, p)` becomes `p`, NumPy ints Python ints);
    other values are kept for `window`'s rule to reject."""
    def plain(v):
        return int(v) if isinstance(v, np.integer) else v
    if isinstance(padding, (list, tuple)):
        padding = tuple(plain(v) for v in padding)
        if len(padding) == 2 and padding[0] == padding[1] and _count(padding[0]):
            return padding[0]
    return plain(padding)


def _count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def window_count(n: int, size: int, stride: int = 1, dilation: int = 1, padding=0) -> int:
    """Number of full windows: floor((n + before + after - d(size-1) - 1) / stride) + 1, at least 0."""
    before, after = pad_sides(padding)
    span = dilation * (size - 1) + 1
    return max(0, (n + before + after - span) // stride + 1)


def _window_rule(types, size, stride, dilation, padding, pad_value):
    xs = _list(types[0], "window")
    _positive("window", size=size, stride=stride, dilation=dilation)
    pair = isinstance(padding, tuple) and len(padding) == 2 and all(_count(p) for p in padding)
    if not (_count(padding) or pair):
        raise ArgumentError(f"window: padding must be a non-negative int or a pair (before, after) of them, "
                            f"got {padding!r}")
    if any(pad_sides(padding)) and not isinstance(xs.elem, TensorType) and pad_value != 0:
        raise ArgumentError(f"window: pad_value={pad_value!r} pads tensor elements, but the elements are "
                            f"{xs.elem}: lists are padded with empty lists (leave pad_value out)")
    return (FractalTensorType(xs),)


@register("window", "access", _window_rule)
def _window(xs, size, stride, dilation, padding, pad_value):
    """Windows over the padded list: result[w][k] == padded[w*stride + k*dilation], where
    `padded` is `before` pad elements, xs, then `after` pad elements (`pad_sides(padding)`):
    tensors of `pad_value` for tensor elements, empty lists for list elements."""
    n = len(xs)
    elem = xs.elem_type
    before, after = pad_sides(padding)
    count = window_count(n, size, stride, dilation, padding)
    if isinstance(elem, TensorType):  # one gather from the padded leaves, no per-element Python loop
        leaves, _ = xs.compact()
        parts = [np.full((before,) + elem.shape, pad_value, dtype=elem.dtype), leaves,
                 np.full((after,) + elem.shape, pad_value, dtype=elem.dtype)]
        padded = np.concatenate(parts) if before or after else leaves
        pos = np.arange(count)[:, None] * stride + np.arange(size)[None, :] * dilation
        flat = padded[pos.reshape(-1)]
        offsets = (np.arange(count + 1, dtype=np.int64) * size,)
        flat.flags.writeable = False
        return (FractalTensor.from_storage(FractalTensorType(xs.type), flat, offsets, range(count)),)
    pad = FractalTensor._empty(elem)
    windows = []
    for w in range(count):  # lists of lists: windows of views, an empty list where padded
        pos = [w * stride + k * dilation - before for k in range(size)]
        windows.append(FractalTensor.from_elements(elem, [xs[p] if 0 <= p < n else pad for p in pos]))
    return (FractalTensor.from_elements(xs.type, windows),)


def _shifted_window_rule(types, size, dilation):
    xs = _list(types[0], "shifted_window")
    _positive("shifted_window", size=size, dilation=dilation)
    if size % 2 == 0:
        raise ArgumentError(f"shifted_window: size must be odd (a window centred on each element), got {size}")
    return (FractalTensorType(xs),)


@register("shifted_window", "access", _shifted_window_rule)
def _shifted_window(xs, size, dilation):
    """result[i][k] == xs[(i + (k - size//2) * dilation) mod n]: circular windows centred on i."""
    n, half = len(xs), size // 2
    rows = [xs.take(np.array([(i + (k - half) * dilation) % n for k in range(size)], dtype=np.int64))
            for i in range(n)]
    return (FractalTensor.from_elements(xs.type, rows),)


def _dilate_rule(types, d):
    _positive("dilate", d=d)
    return (FractalTensorType(_list(types[0], "dilate")),)


@register("dilate", "access", _dilate_rule)
def _dilate(xs, d):
    """d interleaved sub-lists: result[k] == xs[k::d] (some empty when len < d)."""
    if isinstance(xs.elem_type, TensorType):  # one gather from the compact leaves, no per-element Python loop
        leaves, _ = xs.compact()
        n = len(xs)
        order = np.concatenate([np.arange(k, n, d) for k in range(d)]).astype(np.int64)
        offsets = np.array([0] + [len(range(k, n, d)) for k in range(d)], dtype=np.int64).cumsum()
        flat = leaves[order]
        flat.flags.writeable = False
        return (FractalTensor.from_storage(FractalTensorType(xs.type), flat, (offsets,), range(d)),)
    return (FractalTensor.from_elements(xs.type, [xs[k::d] for k in range(d)]),)


@register("interleave", "access", lambda types: (_nested(types[0], "interleave").elem,))
def _interleave(xss):
    """Inverse of dilate: result[i] == xss[i % d][i // d] with d == len(xss)."""
    d = len(xss)
    n = sum(len(x) for x in xss)
    for k, x in enumerate(xss):
        if len(x) != len(range(k, n, d)):
            raise LengthError(f"interleave: sub-list {k} has length {len(x)}, but interleaving {d} lists "
                              f"of {n} elements needs {len(range(k, n, d))} (as produced by ft.dilate)")
    elem = xss.elem_type.elem
    if isinstance(elem, TensorType):  # one gather from the compact leaves, no per-element Python loop
        leaves, offsets = xss.compact()
        i = np.arange(n)
        flat = leaves[offsets[0][i % d] + i // d] if n else leaves[:0]
        flat.flags.writeable = False
        return (FractalTensor.from_storage(FractalTensorType(elem), flat, (), range(n)),)
    return (FractalTensor.from_elements(elem, [xss[i % d][i // d] for i in range(n)]),)


def _repeat_rule(types, n):
    if not isinstance(n, int) or n < 0:
        raise ArgumentError(f"repeat: n must be a non-negative int, got {n!r}")
    return (FractalTensorType(types[0]),)


@register("repeat", "access", _repeat_rule)
def _repeat(x, n):
    """A list of n copies of x (depth + 1)."""
    return (FractalTensor.from_elements(type_of(x), [x] * n),)


def _product_rule(types):
    a, b = (_list(t, "product") for t in types)
    return (FractalTensorType(a), FractalTensorType(b))


@register("product", "access", _product_rule)
def _product(xs, ys):
    """Cartesian product as two aligned lists: left[i][j] == xs[i], right[i][j] == ys[j]."""
    m = len(ys)
    check_points(len(xs) * m, f"product: the product of lists of {len(xs):,} and {m:,} elements")
    left = FractalTensor.from_elements(xs.type, [FractalTensor.from_elements(xs.elem_type, [x] * m) for x in xs])
    right = FractalTensor.from_elements(ys.type, [ys] * len(xs))
    return (left, right)


def _enumerate_rule(types):
    _list(types[0], "enumerate")
    return (FractalTensorType(I64),)


@register("enumerate", "access", _enumerate_rule)
def _enumerate(xs):
    """The positions 0..n-1 of xs, as int64 scalars (zipped with xs by ft.enumerate)."""
    return (FractalTensor.from_elements(I64, list(np.arange(len(xs), dtype=np.int64))),)


def _zip_rule(types):
    for t in types:
        _list(t, "zip")
    return tuple(types)


@register("zip", "access", _zip_rule)
def _zip(*xs):
    """Checks that the lists have equal lengths; the outputs are the inputs, aligned."""
    lengths = [len(x) for x in xs]
    if len(set(lengths)) > 1:
        raise LengthError(f"zip: the lists have different lengths {lengths}")
    return tuple(xs)


# -- between tensors and lists --------------------------------------------------------------

def _stack_rule(types, length):
    xs = _list(types[0], "stack")
    if not isinstance(xs.elem, TensorType):
        raise FractalTypeError(f"stack: needs a list of tensors (depth 1), got {xs}; use ft.flatten first")
    return (TensorType((length,) + xs.elem.shape, xs.elem.dtype),)


@register("stack", "access", _stack_rule)
def _stack(xs, length):
    """One tensor with a new leading axis of the list's `length` elements."""
    if len(xs) != length:
        raise LengthError(f"stack: the list has {len(xs)} elements but the program expects {length}")
    leaves, _ = xs.compact()
    return (np.array(leaves),)


def _slices_rule(types, axis):
    x = types[0]
    if not isinstance(x, TensorType) or x.ndim == 0:
        raise FractalTypeError(f"slices: needs a tensor with at least one axis, got {x}")
    if not -x.ndim <= axis < x.ndim:
        raise ArgumentError(f"slices: axis {axis} is out of range for {x}")
    ax = axis % x.ndim
    return (FractalTensorType(TensorType(x.shape[:ax] + x.shape[ax + 1:], x.dtype)),)


@register("slices", "access", _slices_rule)
def _slices(x, axis):
    """The list of x's slices along `axis` (that axis removed)."""
    moved = np.moveaxis(np.asarray(x), axis, 0)
    return (FractalTensor.from_elements(_slices_rule((TensorType(x.shape, x.dtype),), axis)[0].elem, list(moved)),)


def _length_rule(types):
    _list(types[0], "length")
    return (I64,)


@register("length", "access", _length_rule)
def _length(xs):
    """The number of elements, as an int64 scalar."""
    return (np.array(len(xs), dtype=np.int64),)


def _const_list_rule(types, type, leaves, offsets, length):
    return (type,)


@register("const_list", "access", _const_list_rule)
def _const_list(type, leaves, offsets, length):
    """A FractalTensor constant captured by a traced function (leaves + offsets, CSR)."""
    return (FractalTensor.from_storage(type, leaves.value, tuple(o.value for o in offsets), range(length)),)
