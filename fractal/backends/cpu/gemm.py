"""Batched GEMM over a stage box: `c (+)= a @ b` for every point in a few BLAS calls.

The operands arrive as arrays `[box..., m, k]`, `[box..., k, n]`, `[box..., m, n]` (views of
the buffers, `op()` already applied).  Two things make this fast:

* *Folding*: where b is the same matrix for every point of some box dims (its view has
  stride 0 there) and a and c step through those dims exactly like extra rows, those dims
  are merged into M without a copy, so e.g. 64 points of `[1,256] @ [256,1024]` become one
  `[64,256] @ [256,1024]` call (an RNN's per-sequence steps sharing one weight matrix).
  Symmetrically a shared a folds dims into the N columns of b and c.
* *BLAS-friendly operands*: NumPy's matmul calls BLAS only for f32/f64 matrices with a
  unit stride on one axis and a large enough one on the other (NumPy's `is_blasable2d`);
  anything else takes a slow generic loop, so such operands are copied contiguous first
  (only their non-broadcast part) and such results computed into a scratch.

A product over a contraction of one (`k^T v`, an outer product per point) is one broadcast
multiply: NumPy's stacked matmul calls BLAS per point, 3-4x slower for such shapes.  The
product is computed in the operands' dtype and cast to c's (c may be wider).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

BLAS_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def blas_friendly(x: np.ndarray) -> bool:
    """Whether NumPy's matmul can hand the last two axes of `x` to BLAS."""
    (r, c), (s0, s1), item = x.shape[-2:], x.strides[-2:], x.itemsize
    return (s1 == item and s0 % item == 0 and s0 // item >= c) or (s0 == item and s1 % item == 0 and s1 // item >= r)


def _blas_ready(x: np.ndarray, nbatch: int) -> np.ndarray:
    if x.dtype not in BLAS_DTYPES or blas_friendly(x):
        return x
    # copy only one matrix along broadcast (stride-0) box dims, then broadcast it back
    one = tuple(slice(0, 1) if x.strides[d] == 0 else slice(None) for d in range(nbatch))
    return np.broadcast_to(np.ascontiguousarray(x[one]), x.shape)


def _fold_chain(arrays, dims, axis: int, box) -> list[int]:
    """Box dims (outermost first) that merge with `axis` of every array into one strided axis."""
    n = arrays[0].shape[axis]
    outer = [a.strides[axis] * n for a in arrays] if n > 1 else None  # stride the next dim needs
    chain, left = [], [d for d in dims if box[d] > 1]
    while left:
        if outer is None:  # a size-1 axis merges with any dim: take the innermost
            d = min(left, key=lambda d: abs(arrays[0].strides[d]))
        else:
            d = next((d for d in left if all(a.strides[d] == o for a, o in zip(arrays, outer))), None)
            if d is None:
                break
        chain.insert(0, d)
        left.remove(d)
        outer = [a.strides[d] * box[d] for a in arrays]
    return chain


def _merge(x: np.ndarray, chain, axis: int, nbatch: int) -> np.ndarray:
    """`x` with the box dims `chain` merged into its matrix axis `axis` (-2 or -1)."""
    rest = [d for d in range(nbatch) if d not in chain]
    size = x.shape[axis]
    for d in chain:
        size *= x.shape[d]
    inner = x.strides[axis] if x.shape[axis] > 1 else x.strides[chain[-1]]
    matrix_shape, matrix_strides = list(x.shape[-2:]), list(x.strides[-2:])
    matrix_shape[axis], matrix_strides[axis] = size, inner
    return as_strided(x, tuple(x.shape[d] for d in rest) + tuple(matrix_shape),
                      tuple(x.strides[d] for d in rest) + tuple(matrix_strides))


def _drop(x: np.ndarray, chain, nbatch: int) -> np.ndarray:
    return x[tuple(0 if d in chain else slice(None) for d in range(nbatch))]


def fold(a: np.ndarray, b: np.ndarray, c: np.ndarray, nbatch: int):
    """Merge box dims into M (where b is shared) and N (where a is shared); returns a, b, c."""
    box = c.shape[:nbatch]
    shared_b = [d for d in range(nbatch) if b.strides[d] == 0]
    chain = _fold_chain((a, c), shared_b, -2, box) if shared_b else []
    if chain:
        a, c, b = _merge(a, chain, -2, nbatch), _merge(c, chain, -2, nbatch), _drop(b, chain, nbatch)
        nbatch -= len(chain)
        box = c.shape[:nbatch]
    shared_a = [d for d in range(nbatch) if a.strides[d] == 0]
    chain = _fold_chain((b, c), shared_a, -1, box) if shared_a else []
    if chain:
        b, c, a = _merge(b, chain, -1, nbatch), _merge(c, chain, -1, nbatch), _drop(a, chain, nbatch)
    return a, b, c


_ONES: dict = {}


def _ones(n: int, dtype) -> np.ndarray:
    key = (n, np.dtype(dtype))
    if key not in _ONES:
        _ONES[key] = np.ones((n, 1), dtype)
    return _ONES[key]


def row_sums(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray | None:
    """The sums of `x` over `axes` as a flat array (the other axes in order), by one BLAS
    matrix-vector product with a vector of ones, or None where `x` does not view as a
    BLAS-ready `[rows, summed]` matrix.  NumPy's `add.reduce` runs an inner loop per row:
    5-20x slower on the short rows of a softmax or a normalisation (16-320 elements).  BLAS
    adds in another order: the results differ from it by rounding only."""
    kept = [a for a in range(x.ndim) if a not in axes]
    y = x.transpose(kept + list(axes))
    rows = _merged(y.shape[:len(kept)], y.strides[:len(kept)], x.itemsize)
    cols = _merged(y.shape[len(kept):], y.strides[len(kept):], x.itemsize)
    if rows is None or cols is None:
        return None
    matrix = as_strided(y, (rows[0], cols[0]), (rows[1], cols[1]))
    if not blas_friendly(matrix):
        return None
    return np.matmul(matrix, _ones(cols[0], x.dtype))[:, 0]


def _merged(shape, strides, itemsize: int):
    """(size, stride) of axes that step through memory as one axis (each a whole number of
    the next inner one's span), or None."""
    size, stride, span = 1, itemsize, None  # no axis of size > 1: any stride does
    for n, st in zip(reversed(shape), reversed(strides)):
        if n == 1:
            continue
        if span is None:
            stride = st
        elif st != span:
            return None
        size *= n
        span = st * n
    return size, stride


def gemm_into(a: np.ndarray, b: np.ndarray, c: np.ndarray, accumulate: bool, try_fold: bool = True) -> None:
    """`c (+)= a @ b` over leading batch axes; `c` is written in place.  `try_fold=False`
    skips looking for shared operands (the caller knows there are none)."""
    multiply(*prepare(a, b, c, try_fold), accumulate)


def prepare(a: np.ndarray, b: np.ndarray, c: np.ndarray, try_fold: bool = True):
    """The operands as `multiply` takes them: box dims folded into M / N, a and b made
    BLAS-friendly (copied only if they are not).  Except for such copies, the results are
    re-stridings of the same memory, so a caller may remember their shapes and strides."""
    if try_fold and c.ndim > 2:
        a, b, c = fold(a, b, c, c.ndim - 2)
    nbatch = c.ndim - 2
    return _blas_ready(a, nbatch), _blas_ready(b, nbatch), c


def multiply(a: np.ndarray, b: np.ndarray, c: np.ndarray, accumulate: bool) -> None:
    """`c (+)= a @ b` for prepared operands."""
    if a.shape[-1] == 1:  # an outer product: one broadcast multiply instead of a BLAS call per point
        if accumulate:
            np.add(c, np.multiply(a, b, dtype=a.dtype), out=c, casting="unsafe")
        else:
            np.multiply(a, b, out=c, dtype=a.dtype, casting="unsafe")
        return
    direct = not accumulate and c.dtype == a.dtype and (c.dtype not in BLAS_DTYPES or blas_friendly(c))
    if direct:
        np.matmul(a, b, out=c)
    elif accumulate:
        np.add(c, np.matmul(a, b), out=c, casting="unsafe")
    else:
        np.copyto(c, np.matmul(a, b), casting="unsafe")
