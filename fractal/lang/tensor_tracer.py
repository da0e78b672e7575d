"""Traced tensors: NumPy-like operator overloads that record cell ops.

`x @ w`, `x + 1.0`, `x[:, :4]`, `x.T`, `x.astype(...)`, and NumPy ufuncs
applied to a traced tensor (`np.tanh(x)`, `W @ x` with `W` a NumPy array)
all dispatch to the same op table as `ft.*` (through `fractal.lang.api`).  Python
scalars are weakly typed as in NumPy 2: `x * 2.0` keeps `x`'s float32.  Defining
`TensorTracer` enters it in `Tracer.BY_TYPE`, so tracing wraps tensor variables in it.
"""

from __future__ import annotations

import numpy as np

from . import api
from .api import binary
from .arguments import static_int
from .errors import FractalTypeError, TraceError
from .ir_nodes import Slice
from .tracing import Tracer, bind
from .types import TensorType, as_dtype


def _index_key(key) -> tuple:
    key = key if isinstance(key, tuple) else (key,)
    out = []
    for k in key:
        if isinstance(k, Tracer):
            raise TraceError("indexing a tensor with a traced value is data-dependent; use ft.where, "
                             "or ft.gather on a list")
        if isinstance(k, slice):
            parts = (k.start, k.stop, k.step)
            if any(isinstance(p, Tracer) for p in parts):
                raise TraceError("slice bounds must be Python ints known at trace time")
            out.append(Slice(*(None if p is None else static_int(p, "a tensor slice bound") for p in parts)))
        elif k is None or k is Ellipsis:
            out.append(k)
        elif isinstance(k, (int, np.integer)) and not isinstance(k, bool):
            out.append(int(k))
        else:
            raise FractalTypeError(f"tensors support static basic indexing (ints, slices, ..., None), "
                                   f"not {type(k).__name__}")
    return tuple(out)


_UFUNC_OPS = {
    "add": "add", "subtract": "sub", "multiply": "mul", "true_divide": "div", "divide": "div",
    "power": "pow", "remainder": "mod", "floor_divide": "floordiv", "maximum": "maximum",
    "minimum": "minimum", "equal": "eq", "not_equal": "ne", "less": "lt", "less_equal": "le",
    "greater": "gt", "greater_equal": "ge", "logical_and": "logical_and", "logical_or": "logical_or",
    "negative": "neg", "exp": "exp", "log": "log", "log1p": "log1p", "tanh": "tanh", "sqrt": "sqrt", "absolute": "abs",
    "sin": "sin", "cos": "cos", "logical_not": "logical_not", "matmul": "matmul",
}


class TensorTracer(Tracer, traces=TensorType):
    """A traced tensor of static shape and dtype."""

    __slots__ = ()

    shape = property(lambda self: self.var.type.shape)
    ndim = property(lambda self: self.var.type.ndim)
    dtype = property(lambda self: self.var.type.dtype)
    size = property(lambda self: self.var.type.size)
    T = property(lambda self: bind("transpose", self, axes=None)[0])

    def astype(self, dtype):
        return bind("astype", self, dtype=as_dtype(dtype))[0]

    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return api.reshape(self, shape)

    def transpose(self, *axes):
        axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        return api.transpose(self, axes if axes else None)

    def sum(self, axis=None, keepdims=False):
        return api.sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        return api.mean(self, axis=axis, keepdims=keepdims)

    def max(self, axis=None, keepdims=False):
        return api.max(self, axis=axis, keepdims=keepdims)

    def min(self, axis=None, keepdims=False):
        return api.min(self, axis=axis, keepdims=keepdims)

    def __getitem__(self, key):
        return bind("index", self, index=_index_key(key))[0]

    def __len__(self):
        if not self.shape:
            raise FractalTypeError("len() of a scalar tensor")
        return self.shape[0]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def _concrete(self, *_):
        raise TraceError("a traced tensor has no concrete value at trace time (int(), float(), "
                         "np.asarray() or .item() on it); keep the computation in ft.* ops")

    __int__ = __float__ = __index__ = __complex__ = __array__ = item = tolist = _concrete

    __hash__ = object.__hash__

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        op = _UFUNC_OPS.get(ufunc.__name__)
        if method != "__call__" or op is None or kwargs:
            raise TraceError(f"np.{ufunc.__name__} cannot be applied to a traced tensor; "
                             f"use the ft.* operation of the same name")
        if len(inputs) == 1:
            return bind(op, inputs[0])[0]
        return binary(op, *inputs)

    def __array_function__(self, func, types, args, kwargs):
        fn = getattr(api, func.__name__, None)
        if fn is None or func.__name__ not in api.NUMPY_FUNCTIONS:
            raise TraceError(f"np.{func.__name__} cannot be applied to a traced tensor; use ft.* operations")
        return fn(*args, **kwargs)


def _binop(op, reflected=False):
    if reflected:
        return lambda self, other: binary(op, other, self)
    return lambda self, other: binary(op, self, other)


for _op, _dunder in [("add", "add"), ("sub", "sub"), ("mul", "mul"), ("div", "truediv"), ("pow", "pow"),
                     ("matmul", "matmul"), ("mod", "mod"), ("floordiv", "floordiv"),
                     ("logical_and", "and"), ("logical_or", "or")]:
    setattr(TensorTracer, f"__{_dunder}__", _binop(_op))
    setattr(TensorTracer, f"__r{_dunder}__", _binop(_op, reflected=True))
for _op, _dunder in [("eq", "eq"), ("ne", "ne"), ("lt", "lt"), ("le", "le"), ("gt", "gt"), ("ge", "ge")]:
    setattr(TensorTracer, f"__{_dunder}__", _binop(_op))
TensorTracer.__neg__ = lambda self: bind("neg", self)[0]
TensorTracer.__pos__ = lambda self: self
TensorTracer.__abs__ = lambda self: bind("abs", self)[0]
TensorTracer.__invert__ = lambda self: bind("logical_not", self)[0]
