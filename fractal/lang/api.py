"""The public `ft.*` operations: thin wrappers that `bind` ops of the table.

Each works eagerly on NumPy arrays and FractalTensors, and records an
equation when given traced values.  Access operators applied to a list of
tuples (from `ft.zip`) act on each component list.
"""

from __future__ import annotations

import builtins

import numpy as np

from .access_ops import normalise_padding, window_count
from .arguments import (is_python_scalar, static_bool, static_indices, static_int, static_number, static_shape,
                        static_value)
from .errors import ArgumentError, FractalTypeError, TraceError
from .tracing import ListTracer, Tracer, ZipTracer, bind, known_length, with_length
from .tree import make_zipped
from .types import FractalTensorType, TensorType, TupleType, as_dtype, float32
from .values import FractalTensor

# np.<name>(traced) is forwarded to these (see TensorTracer.__array_function__)
NUMPY_FUNCTIONS = {"sum", "mean", "max", "min", "where", "concatenate", "reshape", "transpose",
                   "maximum", "minimum", "exp", "log", "tanh", "sqrt", "abs"}


def _one(op, *inputs, **params):
    return bind(op, *inputs, **params)[0]


def scalar_operand(x, other):
    """A Python scalar next to a tensor (traced or an array) is weakly typed, as in JAX and
    PyTorch: it takes the tensor's dtype where NumPy 2's promotion says so (`x * 2.0` and
    `x + 1` keep a float32 `x` float32; an int tensor times 2.5 is float64), while a NumPy
    scalar or array (`np.float64(2.0)`) promotes.  An int that the tensor's int dtype cannot
    hold is an error, not an overflow."""
    if not is_python_scalar(x):
        return x
    if isinstance(other, Tracer) and isinstance(other.type, TensorType):
        dt = other.type.dtype
    elif isinstance(other, (np.ndarray, np.generic)):
        dt = other.dtype
    else:
        return x
    try:
        return np.asarray(x, dtype=np.result_type(dt, x))
    except OverflowError:
        raise FractalTypeError(f"the Python int {x} does not fit the {dt} tensor it meets; convert "
                               f"the tensor with .astype(ft.int64) (or the number with np.int64)") from None


def binary(op: str, a, b):
    """Apply binary op `op` (also `TensorTracer`'s operators), Python scalars weakly typed."""
    a, b = scalar_operand(a, b), scalar_operand(b, a)
    return _one(op, a, b)


# -- elementwise and cell ops ---------------------------------------------------------------

def _unary(op):
    def fn(x):
        return _one(op, x)
    fn.__name__ = op
    fn.__doc__ = f"Elementwise {op} (NumPy semantics)."
    return fn


exp, log, tanh, sigmoid, relu, gelu, sqrt, abs, sin, cos = (
    _unary(n) for n in ("exp", "log", "tanh", "sigmoid", "relu", "gelu", "sqrt", "abs", "sin", "cos"))


def log1p(x):
    """Elementwise `log(1 + x)`, accurate for small |x|."""
    return _one("log1p", x)


def softplus(x):
    """Elementwise `log(1 + exp(x))`, computed stably as `max(x, 0) + log1p(exp(-|x|))`."""
    return _one("softplus", x)


def log_sigmoid(x):
    """Elementwise `log(sigmoid(x)) = -softplus(-x)`, computed stably as `min(x, 0) - log1p(exp(-|x|))`."""
    return _one("log_sigmoid", x)


def elu(x, alpha=1.0):
    """Elementwise `x` for `x > 0`, else `alpha * (exp(x) - 1)` (`expm1`: accurate near 0)."""
    if not isinstance(alpha, (int, float, np.integer, np.floating)) or isinstance(alpha, bool):
        raise ArgumentError(f"elu: alpha must be a number, got {alpha!r}")
    y = _one("elu", x)
    if alpha == 1:
        return y
    return where(x > 0, y, y * float(alpha))


def maximum(a, b):
    """Elementwise maximum with broadcasting."""
    return binary("maximum", a, b)


def minimum(a, b):
    """Elementwise minimum with broadcasting."""
    return binary("minimum", a, b)


def where(cond, a, b):
    """`a` where `cond` holds, else `b` (broadcasting; the traced replacement of `if`).

    A Python number takes the other branch's dtype (`where(c, x, 0.0)` keeps a float32 `x`
    float32); two Python numbers give fractal's default dtypes, float32 for floats (as
    `ft.zeros`; so `where(mask, 0.0, float("-inf"))` is a float32 mask), int64 or bool."""
    if is_python_scalar(a) and is_python_scalar(b):
        dt = np.result_type(a, b)
        dt = float32 if dt.kind == "f" else dt
        a, b = np.asarray(a, dt), np.asarray(b, dt)
    a, b = scalar_operand(a, b), scalar_operand(b, a)
    return _one("where", cond, a, b)


def matmul(a, b):
    return binary("matmul", a, b)


def _axis(axis, op):
    what = f"{op}: axis"
    if isinstance(axis, (list, tuple)):
        return tuple(static_int(a, what) for a in axis)
    return None if axis is None else static_int(axis, f"{what} (an int, a tuple of ints or None)")


def _reduction(op, x, axis, keepdims):
    return _one(op, x, axis=_axis(axis, op), keepdims=static_bool(keepdims, f"{op}: keepdims"))


def sum(x, axis=None, keepdims=False):
    """Sum over `axis` (all axes when None)."""
    return _reduction("sum", x, axis, keepdims)


def mean(x, axis=None, keepdims=False):
    return _reduction("mean", x, axis, keepdims)


def max(x, axis=None, keepdims=False):
    return _reduction("max", x, axis, keepdims)


def min(x, axis=None, keepdims=False):
    return _reduction("min", x, axis, keepdims)


def softmax(x, axis=-1):
    """exp(x - max) / sum(exp(x - max)) along `axis`."""
    return _one("softmax", x, axis=static_int(axis, "softmax: axis"))


def logsumexp(x, axis=None, keepdims=False):
    return _reduction("logsumexp", x, axis, keepdims)


def layer_norm(x, weight, bias, eps=1e-5):
    """Normalise over the last axis, then scale by `weight` and shift by `bias`."""
    return _one("layer_norm", x, weight, bias, eps=float(static_number(eps, "layer_norm: eps")))


def concat(tensors, axis=0):
    """Concatenate a Python list/tuple of tensors along `axis`."""
    if not isinstance(tensors, (list, tuple)):
        raise FractalTypeError("concat takes a Python list or tuple of tensors; "
                               "use ft.stack for a FractalTensor")
    return _one("concat", *tensors, axis=static_int(axis, "concat: axis"))


concatenate = concat


def reshape(x, shape):
    return _one("reshape", x, shape=static_shape(shape, "reshape"))


def transpose(x, axes=None):
    return _one("transpose", x, axes=None if axes is None else static_shape(axes, "transpose: axes"))


def full(shape, value, dtype=float32):
    """A constant tensor (recorded as an op when tracing, so it is not baked in as data)."""
    shape = static_shape(shape, "full")
    if isinstance(value, Tracer):
        raise TraceError("ft.full needs a Python number; use ft.zeros(...) + value for a traced one")
    return _one("full", shape=shape, dtype=as_dtype(dtype), value=static_number(value, "full: value"))


def zeros(shape, dtype=float32):
    return full(static_shape(shape, "zeros"), 0, dtype)


def ones(shape, dtype=float32):
    return full(static_shape(shape, "ones"), 1, dtype)


def astype(x, dtype):
    return _one("astype", x, dtype=as_dtype(dtype))


# -- access operators -----------------------------------------------------------------------

def _parts(xs, op):
    """Component lists of a zipped list, or None for a plain one; rejects non-lists."""
    if isinstance(xs, ZipTracer):
        return xs.parts
    if isinstance(xs, FractalTensor):
        return xs._parts
    if isinstance(xs, ListTracer):
        return None
    if isinstance(xs, (list, tuple)):
        raise FractalTypeError(f"{op}: expects a FractalTensor, got a Python {type(xs).__name__}; "
                               f"build one with ft.fractal(...)")
    raise FractalTypeError(f"{op}: expects a FractalTensor, got {type(xs).__name__}")


def _per_part(op, xs, out_type, **params):
    """Apply a structure-only access op to a list, or to each component of a zipped list."""
    parts = _parts(xs, op)
    if parts is None:
        return _one(op, xs, **params)
    out_t = out_type(xs.type)
    if not isinstance(out_t, FractalTensorType):  # flatten/interleave of a list of tuples (of lists)
        raise FractalTypeError(f"{op}: needs a list of lists (depth >= 2), got {xs.type}, a list of tuples; "
                               f"apply {op} to each component list before zipping")
    return make_zipped(out_t, tuple(_per_part(op, p, out_type, **params) for p in parts))


def reverse(xs):
    """The elements in reverse order."""
    return with_length(_per_part("reverse", xs, lambda t: t), known_length(xs))


def gather(xs, indices):
    """`result[k] == xs[indices[k]]`; static (ints) or traced (1-D int tensor) indices, or a list
    of int scalars (traced or not: a node's neighbours, `ft.gather(h, nbrs[i])`)."""
    if isinstance(indices, (Tracer, FractalTensor)):
        out = _per_part_dynamic(xs, indices)
        return with_length(out, indices.shape[0] if isinstance(indices.type, TensorType) else known_length(indices))
    idx = static_indices(indices)
    return with_length(_per_part("gather", xs, lambda t: t, indices=idx), len(idx))


def _per_part_dynamic(xs, indices):
    parts = _parts(xs, "gather")
    if parts is None:
        return _one("gather_dynamic", xs, indices)
    return make_zipped(xs.type, tuple(_per_part_dynamic(p, indices) for p in parts))


def join(xs, ys):
    """The elements of `xs` followed by those of `ys` (same type)."""
    a, b = _parts(xs, "join"), _parts(ys, "join")
    if a is None and b is None:
        out = _one("join", xs, ys)
    elif a is not None and b is not None and len(a) == len(b):
        out = make_zipped(xs.type, tuple(join(p, q) for p, q in builtins.zip(a, b)))
    else:
        raise FractalTypeError(f"join: both lists must have the same type, got {xs.type} and {ys.type}")
    n, m = known_length(xs), known_length(ys)
    return with_length(out, None if n is None or m is None else n + m)


def flatten(xss):
    """Concatenate the inner lists (depth - 1)."""
    return _per_part("flatten", xss, lambda t: t.elem)


def split(xs, n):
    """`n` contiguous parts of near-equal length (depth + 1)."""
    n = static_value(n)
    return with_length(_per_part("split", xs, FractalTensorType, n=n), n)


def window(xs, size, *, stride=1, dilation=1, padding=0, pad_value=0):
    """Windows of `size` over `xs` padded at its ends (depth + 1).

    `padding` is `p` (p pad elements at each end) or a pair `(before, after)`; causal windows,
    which see only the present and the past (causal convolutions, TCNs), pad the front only:
    `padding=(dilation * (size - 1), 0)` gives one window per element, ending at it.  Tensor
    elements are padded with tensors of `pad_value`, list elements with empty lists.
    `result[w][k] == padded[w*stride + k*dilation]`; there are
    `floor((n + before + after - dilation*(size-1) - 1) / stride) + 1` windows, no partial one."""
    size, stride, dilation = (static_value(v) for v in (size, stride, dilation))
    padding = normalise_padding(padding)
    pad_value = static_number(pad_value, "window: pad_value")
    out = _per_part("window", xs, FractalTensorType, size=size, stride=stride, dilation=dilation,
                    padding=padding, pad_value=pad_value)
    n = known_length(xs)
    ok = all(isinstance(v, int) and v > 0 for v in (size, stride, dilation))
    return with_length(out, window_count(n, size, stride, dilation, padding) if n is not None and ok else None)


def shifted_window(xs, size, *, dilation=1):
    """For each position i, the circular window of odd `size` centred on i (depth + 1)."""
    size, dilation = static_value(size), static_value(dilation)
    out = _per_part("shifted_window", xs, FractalTensorType, size=size, dilation=dilation)
    return with_length(out, known_length(xs))


def dilate(xs, d):
    """`d` interleaved sub-lists, `result[k] == xs[k::d]` (depth + 1)."""
    d = static_value(d)
    return with_length(_per_part("dilate", xs, FractalTensorType, d=d), d)


def interleave(xss):
    """Inverse of `dilate`: `result[i] == xss[i % d][i // d]`."""
    return _per_part("interleave", xss, lambda t: t.elem)


def repeat(x, n):
    """A list of `n` copies of `x` (depth + 1)."""
    n = static_value(n)
    parts = _parts(x, "repeat") if isinstance(x, (FractalTensor, ZipTracer, ListTracer)) else None
    if parts is not None:
        return make_zipped(FractalTensorType(x.type), tuple(repeat(p, n) for p in parts))
    return with_length(_one("repeat", x, n=n), n)


def zip(*lists):
    """A list of tuples: `result[i] == (lists[0][i], lists[1][i], ...)`; lengths must match."""
    if not lists:
        raise FractalTypeError("zip needs at least one list")
    for xs in lists:
        _parts(xs, "zip")
    checked = bind("zip", *(_as_single(x) for x in lists))
    n = next((k for k in map(known_length, lists) if k is not None), None)
    outs = [_rezip(orig, out) for orig, out in builtins.zip(lists, checked)]
    return with_length(make_zipped(FractalTensorType(TupleType(tuple(x.type.elem for x in lists))), tuple(outs)), n)


def _as_single(x):
    """A plain list standing for `x` in a length check (the first component of a zipped list)."""
    parts = _parts(x, "zip")
    return x if parts is None else _as_single(parts[0])


def _rezip(orig, checked):
    parts = _parts(orig, "zip")
    if parts is None:
        return checked
    return make_zipped(orig.type, (_rezip(parts[0], checked),) + tuple(parts[1:]))


def enumerate(xs):
    """A list of `(i, xs[i])` with `i` an int64 scalar."""
    idx = _one("enumerate", _as_single(xs))
    pair = FractalTensorType(TupleType((idx.type.elem, xs.type.elem)))
    return with_length(make_zipped(pair, (idx, xs)), known_length(xs))


def product(xs, ys):
    """The Cartesian product as a depth+1 list of pairs: `result[i][j] == (xs[i], ys[j])`."""
    if _parts(xs, "product") is not None or _parts(ys, "product") is not None:
        raise FractalTypeError("product takes two plain lists; zip the results of two products instead")
    left, right = bind("product", xs, ys)
    n = known_length(xs)
    with_length(left, n), with_length(right, n)
    t = FractalTensorType(FractalTensorType(TupleType((xs.type.elem, ys.type.elem))))
    return make_zipped(t, (left, right))


def stack(xs, length=None):
    """One tensor with a new leading axis from a list of tensors.

    A tensor's shape is static, so when tracing the list's length must be known
    (lists from ft.slices, ft.split, ft.repeat... carry it) or given as `length=`."""
    if _parts(xs, "stack") is not None:
        raise FractalTypeError("stack needs a list of tensors, not a list of tuples")
    if length is None:
        length = known_length(xs)
        if length is None:
            raise TraceError("stack: the length of this traced list is only known at run time, "
                             "but a tensor's shape is static; pass ft.stack(xs, length=n)")
    return _one("stack", xs, length=static_int(length, "stack: length"))


def slices(t, axis=0):
    """The list of a tensor's slices along `axis` (depth-1 FractalTensor)."""
    if isinstance(t, (FractalTensor, ListTracer, ZipTracer)):
        raise FractalTypeError("slices takes a tensor; a FractalTensor already is a list")
    t = t if isinstance(t, Tracer) else np.asarray(t)
    axis = static_int(axis, "slices: axis")
    out = _one("slices", t, axis=axis)
    return with_length(out, t.shape[axis] if t.ndim else None)


def length(xs):
    """The number of elements of `xs`, as an int64 scalar (traced when `xs` is)."""
    return _one("length", _as_single(xs))
