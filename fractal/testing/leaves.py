"""Leaf tensors: hypothesis strategies for NumPy arrays of a fractal tensor type.

`tensors(shape, dtype)` draws arrays of exactly that shape and dtype, like
`hypothesis.extra.numpy.arrays(dtype, shape)`, but with the defaults a model check wants:
finite values, no subnormals and no negative zero unless asked for::

    from fractal.testing import tensors

    tensors((1, 4), ft.float64)                               # finite f64[1,4]
    tensors(ft.Tensor[(1, 4), ft.float64], min_value=-1, max_value=1)
    tensors((3,), ft.float32, allow_nan=True, allow_infinity=True, allow_signed_zero=True)
    tensors((), ft.int64, elements=st.integers(0, 9))         # `elements=` overrides the rest

The options are checked when the strategy is built: a bad one is an `ft.FractalError`
naming the option, raised at the caller's line (not at the first draw, deep in hypothesis).
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.extra import numpy as hnp

from fractal.lang.errors import ArgumentError, FractalTypeError
from fractal.lang.types import DTYPES, TensorType, as_dtype, tensor_type

__all__ = ["tensors"]

_FLAGS = ("allow_nan", "allow_infinity", "allow_subnormal", "allow_signed_zero")


def leaf_type(shape, dtype, what: str = "tensors") -> TensorType:
    """The leaf `TensorType` of `shape` (a tuple of ints, an int, or an `ft.Tensor[...]` type,
    whose dtype `dtype` must then agree with or leave as None) and `dtype` (default float32)."""
    if isinstance(shape, TensorType):
        if dtype is not None and as_dtype_arg(dtype, what) != shape.dtype:
            raise FractalTypeError(f"{what}: dtype={np.dtype(dtype)} disagrees with the type {shape}; "
                                   f"leave dtype out or make them agree")
        return shape
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (int(shape),)
    if not isinstance(shape, tuple) or not all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise FractalTypeError(f"{what}: the shape must be a tuple of non-negative ints or an ft.Tensor[...] "
                               f"type, got {type(shape).__name__} {shape!r:.60}")
    return tensor_type(shape, np.float32 if dtype is None else as_dtype_arg(dtype, what))


def as_dtype_arg(dtype, what: str) -> np.dtype:
    """`dtype` as a supported NumPy dtype, or a `FractalTypeError` naming the `dtype` argument."""
    try:
        return as_dtype(dtype)
    except FractalTypeError:
        names = ", ".join(str(d) for d in DTYPES)
        raise FractalTypeError(f"{what}: dtype={dtype!r:.40} is not a fractal dtype; use one of {names}") from None


def element_strategy(dtype: np.dtype, *, elements=None, allow_nan=False, allow_infinity=False,
                     allow_subnormal=False, allow_signed_zero=False, min_value=None, max_value=None,
                     what: str = "tensors"):
    """`(elements, fix_zero)`: the strategy of scalar leaf values for `dtype` (checked now), and
    whether drawn arrays need their negative zeros turned positive."""
    for name, flag in zip(_FLAGS, (allow_nan, allow_infinity, allow_subnormal, allow_signed_zero)):
        if not isinstance(flag, (bool, np.bool_)):
            raise FractalTypeError(f"{what}: {name} must be True or False, got {type(flag).__name__} {flag!r:.40}")
    if elements is not None:
        if not isinstance(elements, st.SearchStrategy):
            raise FractalTypeError(f"{what}: elements= must be a hypothesis strategy (e.g. st.floats(-1, 1)), "
                                   f"got {type(elements).__name__} {elements!r:.40}")
        return elements, False
    bounds = {}
    for name, value in (("min_value", min_value), ("max_value", max_value)):
        if value is None:
            continue
        if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, (bool, np.bool_)) \
                or math.isnan(value):
            raise FractalTypeError(f"{what}: {name} must be a number, got {type(value).__name__} {value!r:.40}")
        bounds[name] = value
    if "min_value" in bounds and "max_value" in bounds and bounds["min_value"] > bounds["max_value"]:
        raise ArgumentError(f"{what}: min_value={min_value} is greater than max_value={max_value}")
    if dtype.kind == "b":
        return st.booleans().map(np.bool_), False
    if dtype.kind == "i":
        info = np.iinfo(dtype)
        lo = info.min if min_value is None else max(info.min, math.ceil(min_value))
        hi = info.max if max_value is None else min(info.max, math.floor(max_value))
        if lo > hi:
            raise ArgumentError(f"{what}: no {dtype} lies between min_value={min_value} and max_value={max_value}")
        return hnp.from_dtype(dtype, min_value=int(lo), max_value=int(hi)), False
    kwargs = {name: _inward(dtype, v, name == "min_value") for name, v in bounds.items()}
    strategy = hnp.from_dtype(dtype, allow_nan=bool(allow_nan), allow_infinity=bool(allow_infinity),
                              allow_subnormal=bool(allow_subnormal), **kwargs)
    try:
        strategy.validate()
    except InvalidArgument as e:
        raise ArgumentError(f"{what}: these options cannot be met for {dtype}: {e}") from None
    return strategy, not allow_signed_zero


def _inward(dtype: np.dtype, value, is_min: bool) -> float:
    """A bound rounded into `dtype`, towards the inside of the interval (hypothesis refuses a bound
    the dtype cannot represent exactly, such as 0.1 for float32)."""
    v = dtype.type(value)
    if np.isinf(v) and not math.isinf(value):  # beyond the dtype's range: no bound on that side
        v = np.finfo(dtype).max if value > 0 else np.finfo(dtype).min
    if is_min and float(v) < value:
        v = np.nextafter(v, dtype.type(np.inf))
    elif not is_min and float(v) > value:
        v = np.nextafter(v, dtype.type(-np.inf))
    return float(v)


def array_strategy(shape: tuple, dtype: np.dtype, elements, fix_zero: bool):
    """Arrays of exactly `shape` and `dtype` whose entries come from `elements`."""
    strategy = hnp.arrays(dtype, shape, elements=elements)
    return strategy.map(_positive_zero) if fix_zero else strategy


def _positive_zero(a: np.ndarray) -> np.ndarray:
    """A copy of `a` with its -0.0 entries turned into +0.0."""
    out = np.array(a, copy=True)
    out[out == 0] = 0
    return out


def tensors(shape, dtype=None, *, elements=None, allow_nan=False, allow_infinity=False, allow_subnormal=False,
            allow_signed_zero=False, min_value=None, max_value=None):
    """A strategy of NumPy arrays of exactly `shape` and `dtype` (a leaf of a FractalTensor).

    `shape` is a tuple of ints (an int for 1-D) or an `ft.Tensor[...]` type; `dtype` is one of
    float16/32/64, int32/64, bool (default float32, or the type's).  Values are drawn like
    `hypothesis.extra.numpy.from_dtype`: any finite value by default (shrinking towards 0);
    `min_value`/`max_value` bound them, `allow_nan`, `allow_infinity`, `allow_subnormal` and
    `allow_signed_zero` (-0.0) admit the special floats, and `elements=` (a strategy of scalars)
    replaces all of that.

        >>> tensors((2, 3), ft.float64, min_value=-1, max_value=1).example().shape
        (2, 3)
    """
    t = leaf_type(shape, dtype)
    elems, fix_zero = element_strategy(t.dtype, elements=elements, allow_nan=allow_nan,
                                       allow_infinity=allow_infinity, allow_subnormal=allow_subnormal,
                                       allow_signed_zero=allow_signed_zero, min_value=min_value,
                                       max_value=max_value)
    return array_strategy(t.shape, t.dtype, elems, fix_zero)
