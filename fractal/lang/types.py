"""Static types of fractal values.

* `TensorType(shape, dtype)`: a static-shape array; printed `f32[1,512]`, a scalar `i64[]`.
* `FractalTensorType(elem)`: a list of `elem` with static depth and runtime length;
  printed `ft<f32[1,512]>`, nested `ft<ft<f32[4]>>`.  An element may be a
  `TupleType` (lists of tuples come from `zip`, `product`, `enumerate`):
  `ft<(i64[], f32[4])>`.
* `TupleType(elems)`: a fixed-size bundle, printed `(f32[4], ft<f32[2]>)`.

Users spell types as `ft.Tensor[1, 512]`, `ft.Tensor[(1, 512), ft.float64]`,
`ft.Tensor[(), ft.int64]` and `ft.FractalTensor[ft.Tensor[4]]`.  The type of a runtime
value is `fractal.lang.values.type_of(value)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np

from .errors import FractalTypeError

# dtypes are plain NumPy dtypes, so `ft.float32 == np.float32` holds.
float16 = np.dtype("float16")
float32 = np.dtype("float32")
float64 = np.dtype("float64")
int32 = np.dtype("int32")
int64 = np.dtype("int64")
bool_ = np.dtype("bool")

DTYPES = (float16, float32, float64, int32, int64, bool_)
_SHORT = {float16: "f16", float32: "f32", float64: "f64", int32: "i32", int64: "i64", bool_: "bool"}
_FROM_SHORT = {v: k for k, v in _SHORT.items()}


def dtype_name(dt: np.dtype) -> str:
    """Short printed name of a dtype (`f32`, `i64`, `bool`)."""
    return _SHORT[np.dtype(dt)]


def dtype_from_name(name: str) -> np.dtype:
    return _FROM_SHORT[name]


def as_dtype(dt) -> np.dtype:
    """Normalise a dtype-like (np.float32, 'float32', ft.float32) to a supported NumPy dtype."""
    try:
        d = np.dtype(dt)
    except TypeError:
        raise FractalTypeError(f"{dt!r} is not a dtype; use one of {', '.join(map(str, DTYPES))}") from None
    if d not in _SHORT:
        raise FractalTypeError(
            f"dtype {d} is not supported; use one of {', '.join(map(str, DTYPES))}")
    return d


class Type:
    """Base of the static types."""

    @property
    def depth(self) -> int:
        return 0


@dataclass(frozen=True)
class TensorType(Type):
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def __str__(self) -> str:
        return f"{dtype_name(self.dtype)}[{','.join(map(str, self.shape))}]"

    __repr__ = __str__


@dataclass(frozen=True)
class FractalTensorType(Type):
    elem: "AnyType"

    @property
    def depth(self) -> int:
        return 1 + self.elem.depth

    @property
    def leaf(self) -> "AnyType":
        """The innermost non-list type (a TensorType, or a TupleType for zipped lists)."""
        t = self.elem
        while isinstance(t, FractalTensorType):
            t = t.elem
        return t

    def __str__(self) -> str:
        return f"ft<{self.elem}>"

    __repr__ = __str__


@dataclass(frozen=True)
class TupleType(Type):
    elems: tuple["AnyType", ...]

    @property
    def depth(self) -> int:
        return 0

    def __str__(self) -> str:
        inner = ", ".join(map(str, self.elems))
        return f"({inner},)" if len(self.elems) == 1 else f"({inner})"

    __repr__ = __str__


AnyType = Union[TensorType, FractalTensorType, TupleType]


def tensor_type(shape, dtype=float32) -> TensorType:
    shape = tuple(shape)
    for d in shape:
        if not isinstance(d, (int, np.integer)) or isinstance(d, bool) or d < 0:
            raise FractalTypeError(f"tensor shape {shape} must be a tuple of non-negative ints")
    return TensorType(tuple(int(d) for d in shape), as_dtype(dtype))


def _is_dtype_like(x) -> bool:
    if isinstance(x, np.dtype):
        return True
    return isinstance(x, type) and issubclass(x, (np.generic, float, int, bool))


class Tensor:
    """Type constructor: `Tensor[1, 512]`, `Tensor[(1, 512), float64]`, `Tensor[(), int64]`."""

    def __new__(cls, *args, **kwargs):
            raise FractalTypeError("ft.Tensor is a type; write ft.Tensor[shape] or ft.Tensor[(shape), dtype]. "
                               "Tensors values are plain numpy arrays")

    def __class_getitem__(cls, key) -> TensorType:
        if isinstance(key, tuple) and len(key) == 2 and isinstance(key[0], tuple) and _is_dtype_like(key[1]):
            return tensor_type(key[0], key[1])
        if isinstance(key, tuple) and len(key) == 2 and _is_dtype_like(key[1]) and isinstance(key[0], int):
            return tensor_type((key[0],), key[1])
        if isinstance(key, tuple):
            return tensor_type(key)
        return tensor_type((key,))

