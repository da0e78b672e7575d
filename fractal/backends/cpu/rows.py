"""Gather and scatter over a stage box as one `np.take` / one indexed assignment of rows.

A gather reads a table `[box..., T_0 .. T_axis-1, T_axis, inner...]` (a view; box dims the
table ignores have stride 0).  When the strides of the box dims and of the table axes
before `axis` (the *lead* axes) are whole multiples of the stride of `axis`, every
(lead position, index) names one row of a single strided array `rows = [R, inner...]`
stepping by that stride: `row = offset(lead position) + index`.  The batched gather is
then `np.take(rows, flat, axis=0)` (a memcpy per row) and a batched scatter
`rows[flat] = src`, instead of fancy indexing with an index array per axis over the
whole result (`take_along_axis`), which is ~10x slower.

A gather index one past the end (`T_axis`) is padding: its row reads zeros (`split_padding`
swaps it for row 0 and `zero_padding` clears what that read).

Only indices in `[0, T_axis)` take this path (a flat row number cannot tell where one
table ends); callers fall back to the general path otherwise, so out-of-range and
negative indices behave exactly as before.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from fractal.lang.errors import LengthError
from fractal.lower.tile_ir import Gather


def row_view(x: np.ndarray, nlead: int):
    """`(rows, offsets)` for `x = [lead..., T, inner...]` (`nlead` lead axes), or None
    where the lead strides are not whole multiples of the row stride.  `offsets` is the
    row number of each lead position's row 0 (shape `lead`), None where all are 0."""
    s = x.strides[nlead]
    if s == 0:
        return None
    lead, steps = x.shape[:nlead], []
    for n, stride in zip(lead, x.strides[:nlead]):
        if n > 1 and stride % s:
            return None
        steps.append(stride // s if n > 1 else 0)
    lo = sum(min(0, (n - 1) * k) for n, k in zip(lead, steps))
    hi = sum(max(0, (n - 1) * k) for n, k in zip(lead, steps)) + x.shape[nlead] - 1
    # the lead position holding row `lo`: its address starts `rows`
    corner = x[tuple(n - 1 if k < 0 else 0 for n, k in zip(lead, steps))]
    rows = as_strided(corner, (hi - lo + 1,) + x.shape[nlead + 1:], (s,) + x.strides[nlead + 1:])
    if not any(steps):
        return rows, None
    offsets = np.full((1,) * nlead, -lo, np.intp)
    for d, (n, k) in enumerate(zip(lead, steps)):
        if k:
            offsets = offsets + (np.arange(n, dtype=np.intp) * k).reshape((n,) + (1,) * (nlead - d - 1))
    return rows, offsets


def in_range(index: np.ndarray, size: int) -> bool:
    """Whether every index lies in `[0, size)` (an empty index trivially does)."""
    return index.size == 0 or (int(index.min()) >= 0 and int(index.max()) < size)


def flat_rows(offsets, index: np.ndarray, lead: tuple, nbatch: int) -> np.ndarray:
    """Row numbers `[lead..., n]`: `index` (`[box..., n]`) plus each lead position's offset."""
    index = index.reshape(index.shape[:nbatch] + (1,) * (len(lead) - nbatch) + index.shape[nbatch:])
    flat = index if offsets is None else offsets[..., None] + index
    shape = lead + index.shape[-1:]
    return flat if flat.shape == shape else np.broadcast_to(flat, shape)


def take_rows(rows: np.ndarray, flat: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """`rows[flat]`, written into `out` (C-contiguous, `rows`' dtype) when given."""
    if not rows.flags.c_contiguous:  # np.take would first copy the whole table
        value = rows[flat]
        if out is not None:
            np.copyto(out, value)
        return value
    # in-range rows make mode="clip" exact; "raise" would buffer `out` through a copy
    return np.take(rows, flat, axis=0, out=out, mode="clip")


def check_index(op, index: np.ndarray, size: int) -> None:
    """Raise where an index of a gather or scatter `op` lies outside `-size .. size` (NumPy's
    range plus the padding, `size`): a gather's index is the program's data (`LengthError`,
    naming its buffer: a compiled function says the user's line), a scatter's the compiler's."""
    if index.size == 0 or (int(index.max()) <= size and int(index.min()) >= -size):
        return
    if isinstance(op, Gather):
        err = LengthError("gather: an index is out of range for its list")
        err.index_buffer = op.index.buffer
        raise err
    raise IndexError(f"scatter: an index is out of range for axis {op.axis} of size {size}")


def split_padding(index: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """`(index, pad)`: where an index is one past the end (padding: a gather reads zeros, a
    scatter writes nothing) `pad` is True and the index 0 (a row that exists); `pad` is None
    when no entry is padding."""
    if index.size == 0 or int(index.max()) != size:
        return index, None
    pad = index == size
    return np.where(pad, 0, index), pad


def zero_padding(value: np.ndarray, pad: np.ndarray | None, nbatch: int, axis: int) -> None:
    """Clear, in place, the rows of a gathered `value` (`[box..., lead..., n, inner...]`)
    whose index (`pad`, `[box..., n]`) was padding."""
    if pad is None:
        return
    # only the padded rows are written (a masked copy would pass over every element)
    where = np.nonzero(pad)
    value[where[:nbatch] + (slice(None),) * axis + where[nbatch:]] = 0


def identity(ufunc, dtype: np.dtype):
    """The value an empty run of `ufunc` (add, maximum, minimum) reduces to in `dtype`."""
    if ufunc is np.add:
        return 0
    if dtype.kind == "b":
        return ufunc is np.minimum
    if dtype.kind in "iu":
        return np.iinfo(dtype).min if ufunc is np.maximum else np.iinfo(dtype).max
    return -np.inf if ufunc is np.maximum else np.inf


def segment_reduce(ufunc, rows: np.ndarray, offsets: np.ndarray, out: np.ndarray) -> None:
    """`out[r] = ufunc-reduce(rows[offsets[r]:offsets[r + 1]])`, the identity for an empty run: one
    `ufunc.reduceat` over the non-empty runs (it would read `rows[offsets[r]]` for an empty one)."""
    offsets = np.asarray(offsets, dtype=np.int64)
    n = len(offsets) - 1
    if n <= 0:
        return
    if offsets[0] < 0 or offsets[-1] > len(rows) or np.any(offsets[1:] < offsets[:-1]):
        raise IndexError(f"segment offsets must rise from 0 within the {len(rows)} rows, got {offsets.tolist()}")
    runs = offsets[1:] > offsets[:-1]
    if runs.all():
        ufunc.reduceat(rows[:offsets[-1]], offsets[:-1], axis=0, out=out)
        return
    out[...] = identity(ufunc, out.dtype)
    if runs.any():
        out[runs] = ufunc.reduceat(rows[:offsets[-1]], offsets[:-1][runs], axis=0)
