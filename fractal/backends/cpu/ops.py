"""One rule per tile op: `RULES[type](op, scope)` compiles the op, once, into
`run(env, los, box)` that executes it for every point of a stage box with one batched
NumPy call (the box dims are the leading axes of every operand, see `views`).

Semantics per point are those of `fractal.lower.tile_ir`; the batched forms:

* copy: `dst = reshape(transpose(src, perm), dst.shape)` (`perm` empty: identity);
  convert: the same cast to dst's dtype;
* elementwise: the expression tree, evaluated into dst and reused scratch (`elementwise`);
* reduce: `np.<combiner>.reduce` in dst's dtype over the shifted axes; a float sum whose
  rows are a BLAS-ready view, as one matrix-vector product with ones (`gemm.row_sums`);
* gather / scatter: one `np.take` / indexed assignment of whole rows (`rows`) where the
  table's strides allow and the indices are in range (a gather's padding, one past the end,
  reads row 0 and is then cleared to zeros); else `np.take` / indexed assignment
  when every point uses one index vector, else `take_along_axis` / assignment through
  batch index arrays; a scatter with padding entries (one past the end) assigns the others
  through masked index arrays;
* segment reduce: one `ufunc.reduceat` over the runs (`rows.segment_reduce`);
* gemm: `gemm.gemm_into` (folding shared operands into one BLAS call).
"""

from __future__ import annotations

import numpy as np

from fractal.lower.tile_ir import Convert, Copy, Elementwise, Gather, Gemm, Reduce, Scatter, SegmentReduce

from .elementwise import compile_elementwise
from .gemm import BLAS_DTYPES, gemm_into, multiply, prepare, row_sums
from .rows import (check_index, flat_rows, in_range, row_view, segment_reduce, split_padding, take_rows,
                   zero_padding)

COMBINE = {"add": np.add, "max": np.maximum, "min": np.minimum}
# what max and min give over no elements (softmax and logsumexp reduce over empty axes too)
EMPTY = {"max": lambda dt: -np.inf if dt.kind == "f" else np.iinfo(dt).min if dt.kind in "iu" else False,
         "min": lambda dt: np.inf if dt.kind == "f" else np.iinfo(dt).max if dt.kind in "iu" else True}


def _copy(op, scope):
    src, dst = scope.access(op.src), scope.access(op.dst)
    perm, shape = op.perm, op.dst.shape

    def run(env, los, box):
        x = src.get(env, los, box)
        if perm:
            nb = len(box)
            x = x.transpose(tuple(range(nb)) + tuple(nb + p for p in perm))
        if x.shape[len(box):] != shape:
            x = x.reshape(box + shape)
        dst.put(env, los, box, x)
    return run


def _convert(op, scope):
    src, dst = scope.access(op.src), scope.access(op.dst)
    return lambda env, los, box: dst.put(env, los, box, src.get(env, los, box))


# --- reduce, gather, scatter, gemm --------------------------------------------------------

def _reduce(op, scope):
    src, dst = scope.access(op.src), scope.access(op.dst)
    fn, keep = COMBINE[op.combiner], len(op.dst.shape) == len(op.src.shape)
    by_blas = op.combiner == "add" and src.dtype == dst.dtype and src.dtype in BLAS_DTYPES

    def run(env, los, box):
        axes = tuple(len(box) + a for a in op.axes)
        x = src.get(env, los, box)
        if op.combiner != "add" and any(x.shape[a] == 0 for a in axes):  # max of nothing: -inf
            dst.put(env, los, box, fn.reduce(x, axis=axes, dtype=dst.dtype, keepdims=keep,
                                             initial=EMPTY[op.combiner](dst.dtype)))
            return
        sums = row_sums(x, axes) if by_blas else None
        if sums is not None:
            shape = tuple(1 if a in axes else n for a, n in enumerate(x.shape)) if keep else \
                tuple(n for a, n in enumerate(x.shape) if a not in axes)
            if dst.is_view:
                np.copyto(dst.view(env, los, box), sums.reshape(shape))
            else:
                dst.put(env, los, box, sums.reshape(shape))
            return
        if dst.is_view:
            fn.reduce(x, axis=axes, dtype=dst.dtype, keepdims=keep, out=dst.view(env, los, box))
        else:
            dst.put(env, los, box, fn.reduce(x, axis=axes, dtype=dst.dtype, keepdims=keep))
    return run


def _segment_reduce(op, scope):
    """One `reduceat` per stage point (a segmented reduce sits in a stage of no dims: once)."""
    src, segments, dst = scope.access(op.src), scope.access(op.segments), scope.access(op.dst)
    fn = COMBINE[op.combiner]

    def run(env, los, box):
        rows, offsets, nb = src.get(env, los, box), segments.get(env, los, box), len(box)
        out = dst.view(env, los, box) if dst.is_view else np.empty(box + op.dst.shape, dst.dtype)
        for pt in np.ndindex(*box):
            segment_reduce(fn, rows[pt], offsets[pt], out[pt])
        if not dst.is_view:
            dst.put(env, los, box, out)
    return run


def _shared_index(index: np.ndarray, nbatch: int):
    """The one index vector every point uses (stride 0 over the box), or None."""
    if all(s == 0 or n == 1 for s, n in zip(index.strides[:nbatch], index.shape[:nbatch])):
        return index[(0,) * nbatch]
    return None


def _batch_index(index: np.ndarray, nbatch: int, axis: int, ndata: int) -> tuple:
    """Per box dim an index array, and `index` shaped to stand for data axis `axis`."""
    shape = index.shape[:nbatch] + (1,) * axis + index.shape[nbatch:] + (1,) * (ndata - axis - 1)
    batch = tuple(np.arange(n).reshape((-1,) + (1,) * (nbatch + ndata - d - 1))
                  for d, n in enumerate(index.shape[:nbatch]))
    return batch, index.reshape(shape)


def _gather(op, scope):
    src, index, dst = scope.access(op.src), scope.access(op.index), scope.access(op.dst)
    axis, size = op.axis, op.src.shape[op.axis]

    def run(env, los, box):
        data, idx, nb = src.get(env, los, box), index.get(env, los, box), len(box)
        check_index(op, idx, size)
        idx, pad = split_padding(idx, size)
        table = row_view(data, nb + axis) if in_range(idx, size) else None
        if table is not None:  # one np.take of whole rows
            rows, offsets = table
            flat = flat_rows(offsets, idx, data.shape[:nb + axis], nb)
            out = dst.view(env, los, box) if dst.is_view else None
            if out is not None and out.flags.c_contiguous and out.dtype == rows.dtype:
                take_rows(rows, flat, out)
                zero_padding(out, pad, nb, axis)
            else:
                out = take_rows(rows, flat, None)
                zero_padding(out, pad, nb, axis)
                dst.put(env, los, box, out)
            return
        one = _shared_index(idx, nb)
        if one is not None:
            out = np.take(data, one, axis=nb + axis)
        else:
            _, along = _batch_index(idx, nb, axis, data.ndim - nb)
            out = np.take_along_axis(data, along, axis=nb + axis)
        zero_padding(out, pad, nb, axis)
        dst.put(env, los, box, out)
    return run


def _scatter(op, scope):
    src, index, dst = scope.access(op.src), scope.access(op.index), scope.access(op.dst)
    axis, ndata, size = op.axis, len(op.dst.shape), op.dst.shape[op.axis]

    def run(env, los, box):
        values, idx, nb = src.get(env, los, box), index.get(env, los, box), len(box)
        check_index(op, idx, size)
        table = dst.get(env, los, box)  # a view (written in place) or a gathered copy
        idx, pad = split_padding(idx, size)  # padding (one past the end) writes nothing
        flat_table = row_view(table, nb + axis) if dst.is_view and in_range(idx, size) else None
        if flat_table is not None:  # one assignment of whole rows (those not padding)
            rows, offsets = flat_table
            flat = flat_rows(offsets, idx, table.shape[:nb + axis], nb)
            if pad is None:
                rows[flat] = values
                return
            keep = ~pad.reshape(pad.shape[:nb] + (1,) * axis + pad.shape[nb:])
            kept = np.flatnonzero(np.broadcast_to(keep, flat.shape))  # (cheaper than a mask's copy)
            inner = rows.shape[1:]
            values = np.broadcast_to(values, flat.shape + inner).reshape((-1,) + inner)
            rows[flat.reshape(-1)[kept]] = values[kept]
            return
        if pad is not None:  # assign the entries that are not padding
            batch, along = _batch_index(idx, nb, axis, ndata)
            others = tuple(np.arange(n).reshape((-1,) + (1,) * (ndata - k - 1)) if k != axis else along
                           for k, n in enumerate(table.shape[nb:]))
            where = np.broadcast_arrays(*(batch + others))
            keep = np.broadcast_to(_batch_index(~pad, nb, axis, ndata)[1], where[0].shape)
            table[tuple(w[keep] for w in where)] = np.broadcast_to(values, where[0].shape)[keep]
            if not dst.is_view:
                dst.put(env, los, box, table)
            return
        one = _shared_index(idx, nb)
        if one is not None:
            table[(slice(None),) * (nb + axis) + (one,)] = values
        else:
            batch, along = _batch_index(idx, nb, axis, ndata)
            others = tuple(np.arange(n).reshape((-1,) + (1,) * (ndata - k - 1)) if k != axis else along
                           for k, n in enumerate(table.shape[nb:]))
            table[batch + others] = values
        if not dst.is_view:
            dst.put(env, los, box, table)
    return run


def _gemm(op, scope):
    a, b, c = scope.access(op.a), scope.access(op.b), scope.access(op.c)
    ta, tb, acc = op.trans_a, op.trans_b, op.accumulate
    # folding needs a box dim that a or b does not read (stride 0 there)
    fold = any(all(var not in x.vars() for x in r.start) for var in scope.stage_vars for r in (op.a, op.b))

    # folding and BLAS checks cost more than a small GEMM: where all three regions are views
    # and preparing copied nothing, the prepared shapes and strides are kept per box (and
    # buffer strides) and the next run builds the prepared views directly
    plans, views = {}, a.is_view and b.is_view and c.is_view

    def run(env, los, box):
        if views:
            key = (box, a.memory.strides, b.memory.strides, c.memory.strides)
            plan = plans.get(key)
            if plan is not None:
                multiply(*(r.view_as(env, los, *p) for r, p in zip((a, b, c), plan)), acc)
                return
        x, y = a.get(env, los, box), b.get(env, los, box)
        x, y = (x.swapaxes(-1, -2) if ta else x), (y.swapaxes(-1, -2) if tb else y)
        if c.is_view:
            z = c.view(env, los, box)
            prepared = prepare(x, y, z, fold)
            if views and all(_data(p) == _data(v) for p, v in zip(prepared, (x, y, z))):
                plans[key] = tuple((p.shape, p.strides) for p in prepared)
            multiply(*prepared, acc)
        else:
            out = c.get(env, los, box)
            gemm_into(x, y, out, acc, fold)
            c.put(env, los, box, out)
    return run


def _data(x: np.ndarray) -> int:
    return x.__array_interface__["data"][0]


RULES = {Copy: _copy, Convert: _convert, Elementwise: compile_elementwise, Reduce: _reduce,
         SegmentReduce: _segment_reduce, Gather: _gather,
         Scatter: _scatter, Gemm: _gemm}
