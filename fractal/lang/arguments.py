"""Checks of the static arguments of `ft.*` operations: shapes, axes, sizes, fill values.

A float or a string where an int belongs is a mistake to report, not a number to round
(`ft.zeros((2.5, 1.9))` is not a 2x1 tensor); NumPy ints and floats are accepted wherever
Python ones are.  Each check raises a `FractalTypeError` naming the operation and argument.
"""

from __future__ import annotations

import numpy as np

from .errors import FractalTypeError


def is_python_scalar(x) -> bool:
    """A Python bool, int or float (not a NumPy scalar: `np.float64(2.0)` is a float too)."""
    return isinstance(x, (bool, int, float)) and not isinstance(x, np.generic)


def _show(x) -> str:
    r = repr(x)
    return f"{type(x).__name__} {r if len(r) <= 40 else r[:37] + '...'}"


def static_int(value, what: str) -> int:
    """`value` as a Python int: Python and NumPy ints only, not bools, floats or strings."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    raise FractalTypeError(f"{what} must be an int, got {_show(value)}")


def static_number(value, what: str):
    """`value` as a Python number (int or float; NumPy scalars too), for fill values and eps."""
    if isinstance(value, (int, float, np.integer, np.floating, bool, np.bool_)):
        return value.item() if isinstance(value, np.generic) else value
    raise FractalTypeError(f"{what} must be a number, got {_show(value)}")


def static_bool(value, what: str) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise FractalTypeError(f"{what} must be True or False, got {_show(value)}")


def static_shape(shape, op: str) -> tuple[int, ...]:
    """A shape argument: an int or a tuple/list of ints."""
    if isinstance(shape, (tuple, list)):
        return tuple(static_int(d, f"{op}: each dimension of shape {tuple(shape)!r}") for d in shape)
    return (static_int(shape, f"{op}: shape (an int or a tuple of ints)"),)


def static_value(value):
    """NumPy scalars among an op's static parameters as Python ones (`size=np.int64(3)`)."""
    return value.item() if isinstance(value, np.generic) else value


def static_indices(indices) -> tuple[int, ...]:
    """Gather indices known at trace time: a 1-D sequence of ints (Python or NumPy)."""
    try:
        arr = np.asarray(indices)
    except ValueError:  # a ragged nesting of Python lists
        arr = np.asarray(None)
    if arr.ndim != 1 or not (arr.dtype.kind in "iu" or arr.size == 0 and arr.dtype.kind == "f"):
        what = f"a {arr.ndim}-D array of shape {arr.shape}" if arr.ndim != 1 and arr.dtype.kind in "iu" \
            else _show(indices)
        raise FractalTypeError(f"gather: indices must be a 1-D list of ints, got {what}")
    return tuple(int(i) for i in arr)
