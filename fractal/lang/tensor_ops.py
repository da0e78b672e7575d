"""Cell ops: the tensor operations usable inside combinator bodies.

Each row pairs a shape rule with a NumPy rule.  Output dtypes are found by
running the NumPy rule on tiny arrays of the input dtypes, so they follow
NumPy's promotion exactly and can never disagree with execution.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .errors import FractalTypeError, ShapeError
from .ir_nodes import Const, Slice
from .registry import register
from .types import TensorType, as_dtype, dtype_name, tensor_type


def _probe(t: TensorType) -> np.ndarray:
    """A zero-stride array of type `t`: NumPy computes result shapes on it without allocating."""
    return np.lib.stride_tricks.as_strided(np.zeros(1, t.dtype), t.shape, [0] * t.ndim)


def _tensor(t, op: str, what: str = "operand") -> TensorType:
    if not isinstance(t, TensorType):
        raise FractalTypeError(f"{op}: the {what} must be a tensor, got a {t}")
    return t


@functools.lru_cache(maxsize=None)
def _result_dtype(fn_name: str, *dtypes: np.dtype) -> np.dtype:
    fn = _NUMPY_FNS[fn_name]
    try:
        with np.errstate(all="ignore"):
            return np.asarray(fn(*(np.ones((1,), d) for d in dtypes))).dtype
    except TypeError:  # NumPy has no loop for these dtypes (e.g. bool - bool)
        raise FractalTypeError(f"{fn_name} is not defined for {' and '.join(dtype_name(d) for d in dtypes)} "
                               f"tensors (as in NumPy); convert with .astype(...)") from None


def _broadcast(op: str, *types: TensorType) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(*(t.shape for t in types)))
    except ValueError:
        shapes = " and ".join(str(t) for t in types)
        raise ShapeError(f"{op}: shapes {shapes} do not broadcast") from None


# -- elementwise ----------------------------------------------------------------------------

def _floating(x) -> np.ndarray:
    """x as an array; bool / int are computed in float64, like 0.5 * x would be."""
    x = np.asarray(x)
    return x if x.dtype.kind in "fc" else x.astype(np.result_type(x.dtype, 0.5))


def _sigmoid(x):
    # exp form: one transcendental pass (tanh costs twice exp) and full relative accuracy for
    # very negative x; exp(-x) overflows to inf below about -88 (float32), and 1 / inf = 0
    x = _floating(x)
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x))


def _relu(x):
    return np.maximum(x, np.zeros((), x.dtype))


def _gelu(x):
    # the tanh approximation (as in BERT/GPT-2); exact erf needs scipy
    c = math.sqrt(2.0 / math.pi)
    return 0.5 * x * (1 + np.tanh(c * (x + 0.044715 * (x * x * x))))  # (x ** 3 is a slow float power)


# Stable forms (no overflow, no cancellation, for any finite x; the steps are repeated one by one
# by the cpu backend's in-place kernels, `fractal.backends.cpu.elementwise`, so keep them alike):
# exp is only taken of -|x| <= 0 and log1p of 1 + exp(-|x|) in [1, 2].

def _softplus(x):
    """log(1 + e^x) = max(x, 0) + log1p(e^-|x|)."""
    x = _floating(x)
    return np.maximum(x, np.zeros((), x.dtype)) + np.log1p(np.exp(-np.abs(x)))


def _log_sigmoid(x):
    """log(sigmoid(x)) = -softplus(-x) = min(x, 0) - log1p(e^-|x|)."""
    x = _floating(x)
    return np.minimum(x, np.zeros((), x.dtype)) - np.log1p(np.exp(-np.abs(x)))


def _elu(x):
    """x for x > 0, e^x - 1 else (alpha = 1): max(x, 0) + expm1(min(x, 0)), with no branch."""
    x = _floating(x)
    zero = np.zeros((), x.dtype)
    return np.maximum(x, zero) + np.expm1(np.minimum(x, zero))


UNARY = {
    "neg": np.negative, "exp": np.exp, "log": np.log, "log1p": np.log1p, "tanh": np.tanh,
    "sigmoid": _sigmoid, "log_sigmoid": _log_sigmoid, "softplus": _softplus, "elu": _elu,
    "relu": _relu, "gelu": _gelu, "sqrt": np.sqrt, "abs": np.abs, "sin": np.sin, "cos": np.cos,
    "logical_not": np.logical_not,
}
BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.true_divide, "pow": np.power,
    "mod": np.mod, "floordiv": np.floor_divide, "maximum": np.maximum, "minimum": np.minimum,
    "eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal, "gt": np.greater,
    "ge": np.greater_equal, "logical_and": np.logical_and, "logical_or": np.logical_or,
}
_NUMPY_FNS = {**UNARY, **BINARY, "where": np.where}


def _unary_rule(name):
    def rule(types):
        (x,) = types
        x = _tensor(x, name)
        return (TensorType(x.shape, _result_dtype(name, x.dtype)),)
    return rule


def _binary_rule(name):
    def rule(types):
        a, b = (_tensor(t, name) for t in types)
        return (TensorType(_broadcast(name, a, b), _result_dtype(name, a.dtype, b.dtype)),)
    return rule


def _register_elementwise():
    for name, fn in UNARY.items():
        register(name, "tensor", _unary_rule(name))(lambda x, _fn=fn: (_fn(x),))
    for name, fn in BINARY.items():
        register(name, "tensor", _binary_rule(name))(lambda a, b, _fn=fn: (_fn(a, b),))


_register_elementwise()


def _where_rule(types):
    c, a, b = (_tensor(t, "where") for t in types)
    if c.dtype != np.dtype(bool):
        raise FractalTypeError(f"where: the condition must be a bool tensor, got {c}")
    return (TensorType(_broadcast("where", c, a, b), np.result_type(a.dtype, b.dtype)),)


@register("where", "tensor", _where_rule)
def _where(c, a, b):
    return (np.where(c, a, b),)


# -- matmul ---------------------------------------------------------------------------------

def _matmul_rule(types):
    a, b = (_tensor(t, "matmul") for t in types)
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"matmul: operands must have at least one dimension, got {a} @ {b}")
    k_a = a.shape[-1]
    k_b = b.shape[-2] if b.ndim >= 2 else b.shape[0]
    if k_a != k_b:
        raise ShapeError(f"matmul: inner dimensions differ ({k_a} vs {k_b}) in {a} @ {b}")
    batch_a, batch_b = a.shape[:-2], b.shape[:-2]
    try:
        batch = tuple(np.broadcast_shapes(batch_a, batch_b))
    except ValueError:
        raise ShapeError(f"matmul: batch dimensions of {a} @ {b} do not broadcast") from None
    rows = a.shape[-2:-1] if a.ndim >= 2 else ()
    cols = b.shape[-1:] if b.ndim >= 2 else ()
    return (TensorType(batch + rows + cols, np.result_type(a.dtype, b.dtype)),)


@register("matmul", "tensor", _matmul_rule)
def _matmul(a, b):
    return (np.matmul(a, b),)


# -- reductions -----------------------------------------------------------------------------

def _norm_axes(op: str, axis, ndim: int) -> tuple[int, ...]:
    axes = range(ndim) if axis is None else (axis if isinstance(axis, tuple) else (axis,))
    out = []
    for ax in axes:
        if not isinstance(ax, int) or not -ndim <= ax < max(ndim, 1) or ndim == 0 and axis is not None:
            raise ShapeError(f"{op}: axis {ax} is out of range for a tensor with {ndim} dimensions")
        out.append(ax % ndim if ndim else 0)
    if len(set(out)) != len(out):
        raise ShapeError(f"{op}: repeated axis in {axis}")
    return tuple(sorted(out))


def _reduced_shape(shape, axes, keepdims):
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


_REDUCERS = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min}


def _reduce_rule(name):
    def rule(types, axis=None, keepdims=False):
        (x,) = types
        x = _tensor(x, name)
        axes = _norm_axes(name, axis, x.ndim)
        if name in ("max", "min") and any(x.shape[a] == 0 for a in axes):
            raise ShapeError(f"{name}: cannot reduce over an empty axis of {x}")
        dt = np.asarray(_REDUCERS[name](np.ones((1,), x.dtype))).dtype
        return (TensorType(_reduced_shape(x.shape, axes, keepdims), dt),)
    return rule


def _mean(x, axis=None, keepdims=False):
    x = np.asarray(x)
    if x.size == 0:  # the mean of nothing is NaN, as the backends give it (without NumPy's warning)
        shape = np.sum(x, axis=axis, keepdims=keepdims).shape
        return np.full(shape, np.nan, np.mean(np.ones((1,), x.dtype)).dtype)
    return np.mean(x, axis=axis, keepdims=keepdims)


for _name, _fn in {**_REDUCERS, "mean": _mean}.items():
    register(_name, "tensor", _reduce_rule(_name))(
        lambda x, axis=None, keepdims=False, _fn=_fn: (np.asarray(_fn(x, axis=axis, keepdims=keepdims)),))


def _float_like(op, x):
    x = _tensor(x, op)
    if x.dtype.kind != "f":
        raise FractalTypeError(f"{op}: needs a floating-point tensor, got {x}; use .astype(ft.float32)")
    return x


def _softmax_rule(types, axis=-1):
    (x,) = types
    x = _float_like("softmax", x)
    _norm_axes("softmax", axis, x.ndim)
    return (x,)


@register("softmax", "tensor", _softmax_rule)
def _softmax(x, axis=-1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True, initial=-np.inf))  # (initial: an empty axis)
    return (e / np.sum(e, axis=axis, keepdims=True),)


def _logsumexp_rule(types, axis=None, keepdims=False):
    (x,) = types
    x = _float_like("logsumexp", x)
    axes = _norm_axes("logsumexp", axis, x.ndim)
    return (TensorType(_reduced_shape(x.shape, axes, keepdims), x.dtype),)


@register("logsumexp", "tensor", _logsumexp_rule)
def _logsumexp(x, axis=None, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True, initial=-np.inf)  # over an empty axis: log(0) = -inf
    m = np.where(np.isfinite(m), m, np.zeros((), x.dtype))
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return (np.asarray(out if keepdims else np.squeeze(out, axis=axis)),)


def _layer_norm_rule(types, eps=1e-5):
    x, w, b = types
    x = _float_like("layer_norm", x)
    if x.ndim == 0:
        raise ShapeError(f"layer_norm: needs a tensor with at least one axis, got {x}")
    for t, what in ((w, "weight"), (b, "bias")):
        t = _tensor(t, "layer_norm", what)
        if not _broadcasts(t.shape, x.shape) or tuple(np.broadcast_shapes(t.shape, x.shape)) != x.shape:
            raise ShapeError(f"layer_norm: {what} {t} does not fit {x} (normalised over its last axis)")
    return (x,)


def _broadcasts(a, b) -> bool:
    try:
        np.broadcast_shapes(a, b)
        return True
    except ValueError:
        return False


@register("layer_norm", "tensor", _layer_norm_rule)
def _layer_norm(x, w, b, eps=1e-5):
    if x.shape[-1] == 0:  # nothing to normalise (and no NumPy warning about the mean of nothing)
        return (np.array(x, dtype=x.dtype),)
    mu = np.mean(x, axis=-1, keepdims=True)
    var = np.mean((x - mu) ** 2, axis=-1, keepdims=True)
    return (((x - mu) / np.sqrt(var + eps) * w + b).astype(x.dtype, copy=False),)


# -- shape and layout -----------------------------------------------------------------------

def _concat_rule(types, axis=0):
    ts = [_tensor(t, "concat") for t in types]
    if not ts:
        raise ShapeError("concat: needs at least one tensor")
    first = ts[0]
    ax = _norm_axes("concat", axis, first.ndim)[0]
    for t in ts[1:]:
        if t.ndim != first.ndim or any(d1 != d2 for i, (d1, d2) in enumerate(zip(t.shape, first.shape)) if i != ax):
            raise ShapeError(f"concat: {first} and {t} differ outside axis {axis}")
    shape = list(first.shape)
    shape[ax] = sum(t.shape[ax] for t in ts)
    return (TensorType(tuple(shape), np.result_type(*(t.dtype for t in ts))),)


@register("concat", "tensor", _concat_rule)
def _concat(*xs, axis=0):
    return (np.concatenate(xs, axis=axis),)


def _reshape_rule(types, shape):
    (x,) = types
    x = _tensor(x, "reshape")
    try:
        new = _probe(x).reshape(shape).shape
    except (ValueError, TypeError):
        raise ShapeError(f"reshape: cannot reshape {x} ({x.size} elements) into {tuple(shape)}") from None
    return (TensorType(tuple(new), x.dtype),)


@register("reshape", "tensor", _reshape_rule)
def _reshape(x, shape):
    return (np.reshape(x, shape),)


def _transpose_rule(types, axes=None):
    (x,) = types
    x = _tensor(x, "transpose")
    perm = tuple(reversed(range(x.ndim))) if axes is None else axes
    if sorted(a % x.ndim if x.ndim else a for a in perm) != list(range(x.ndim)) or len(perm) != x.ndim:
        raise ShapeError(f"transpose: axes {axes} are not a permutation of the {x.ndim} axes of {x}")
    return (TensorType(tuple(x.shape[a] for a in perm), x.dtype),)


@register("transpose", "tensor", _transpose_rule)
def _transpose(x, axes=None):
    return (np.transpose(x, axes),)


def _full_rule(types, shape, dtype, value):
    return (tensor_type(shape, dtype),)


@register("full", "tensor", _full_rule)
def _full(shape, dtype, value):
    return (np.full(shape, value, dtype=dtype),)


def _astype_rule(types, dtype):
    (x,) = types
    return (TensorType(_tensor(x, "astype").shape, as_dtype(dtype)),)


@register("astype", "tensor", _astype_rule)
def _astype(x, dtype):
    return (np.asarray(x).astype(dtype),)


def _const_rule(types, value):
    v = value.value
    return (tensor_type(v.shape, v.dtype),)


@register("const", "tensor", _const_rule)
def _const(value: Const):
    return (value.value,)


def to_numpy_index(index: tuple):
    """The NumPy key for a static index parameter (Slice -> slice)."""
    return tuple(i.to_slice() if isinstance(i, Slice) else i for i in index)


def _index_rule(types, index):
    (x,) = types
    x = _tensor(x, "index")
    try:
        shape = _probe(x)[to_numpy_index(index)].shape
    except IndexError as e:
        raise ShapeError(f"index: {e} (indexing {x} with [{_show_index(index)}])") from None
    return (TensorType(shape, x.dtype),)


def _show_index(index) -> str:
    def one(i):
        if isinstance(i, Slice):
            return ":".join("" if v is None else str(v) for v in (i.start, i.stop, i.step)).rstrip(":") or ":"
        return "..." if i is Ellipsis else "None" if i is None else str(i)
    return ", ".join(one(i) for i in index)


@register("index", "tensor", _index_rule)
def _index(x, index):
    return (np.asarray(x[to_numpy_index(index)]),)


__all__ = ["UNARY", "BINARY", "to_numpy_index", "dtype_name"]
