"""How a compiled backend stores a tile buffer, and how it reports an index out of range.

A backend that runs generated code (CUDA, native C++) keeps every buffer as one flat array
in its layout's order (`Buffer.layout`, the outermost axis first): `physical` turns a
logical array into that storage, `logical` turns it back.  Generated code that finds a
gather's or scatter's index out of range records the op's status code; `status_error`
raises what the interpreter raises for it (`LengthError` for a traced gather, naming its
index buffer, so that a compiled function points at the user's line).

    flat = physical(np.arange(6).reshape(2, 3), Buffer("x", (2, 3), "int64", layout=(1, 0)))
    flat        # [0, 3, 1, 4, 2, 5]: axis 1 outermost
"""

from __future__ import annotations

import numpy as np

from fractal.lang.errors import LengthError
from fractal.lower.tile_nodes import Buffer


def physical(value, b: Buffer, xp=np):
    """A logical array as the flat storage of buffer `b` (its layout's axis order); `xp`: the
    array module of `value` (no copy where the layout is row-major and `value` contiguous)."""
    return xp.ascontiguousarray(xp.transpose(value, b.layout)).reshape(-1)


def logical(flat, b: Buffer, xp=np):
    """The inverse of `physical`."""
    stored = flat.reshape(tuple(b.shape[a] for a in b.layout))
    return xp.ascontiguousarray(xp.transpose(stored, tuple(int(a) for a in np.argsort(b.layout))))


def status_error(op: tuple[str, str]) -> Exception:
    """The error of status `op` = (op kind, its index buffer), as the interpreter raises it."""
    kind, index = op
    if kind == "gather":
        err = LengthError("gather: an index is out of range for its list")
        err.index_buffer = index
        return err
    return IndexError(f"scatter: an index in {index} is out of range")
