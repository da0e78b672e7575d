"""The plan of a stage that only copies: its regions move home to home, no PE computes.

A stage whose ops are all plain copies (`copy` without a permutation, equal shapes, unit
strides) or scatters through a const index table (each row a copy, the rows named at plan
time) and that reads no buffer it writes is a redistribution: each copied element goes
from the home block that holds it to the home block that will (`home.Home`), in one
superstep of messages between homes, with no window and no compute.  This is how the
planner re-lays data between two consecutive products (T10's re-layout): the message count
is the number of (source block, destination block) pairs the regions meet, not the points'.
"""

from __future__ import annotations

import numpy as np

from fractal.backends.pointwise import region_starts, stage_point_values
from fractal.lower.tile_ir import Const, Copy, Elementwise, Gather, Region, Scatter, Stage

from .mesh_ir import Compute, Superstep, covering, sends_table


def _plain(op) -> bool:
    return isinstance(op, Copy) and not op.perm and op.src.shape == op.dst.shape


def _row_scatter(planner, op) -> bool:
    """A scatter or gather through a const index table: rows copied to or from rows named at
    plan time (a gather's padding rows, one past the end, are zeros: filled where they live)."""
    return isinstance(op, (Scatter, Gather)) and planner.is_const(op.index.buffer)


def qualifies(planner, stage: Stage) -> bool:
    ops = stage.body
    if not ops or not all(_plain(op) or _row_scatter(planner, op) for op in ops):
        return False
    if any(s != 1 for op in ops for r in (op.src, op.dst) for s in r.stride):
        return False
    written = {op.dst.buffer for op in ops}
    return not written & {op.src.buffer for op in ops} and all(
        planner.home(r.buffer) is not None for op in ops for r in (op.src, op.dst))


def _rows(r: Region, axis: int, at, count: int = 1) -> Region:
    """Rows `at` to `at + count` of region `r` along its `axis`-th range axis."""
    buffer_axis = r.range_axes[axis]
    start = list(r.start)
    start[buffer_axis] = start[buffer_axis] + at
    size = list(r.size)
    size[buffer_axis] = count
    return Region(r.buffer, tuple(start), tuple(size), r.stride)


def _runs(index: np.ndarray, size: int):
    """Const index tables (one per row of `index`) as runs of rows that follow one another
    (i, i + 1, ...), negative rows counted from the end; rows outside [0, size) are runs of
    their own (padding).  Arrays over the runs: (table, first position j, first row i, length,
    is a real row)."""
    rows = np.where(index < 0, index + size, index).astype(np.int64)
    valid = (rows >= 0) & (rows < size)
    T, L = rows.shape
    breaks = np.ones((T, L), bool)
    breaks[:, 1:] = ~(valid[:, 1:] & valid[:, :-1] & (rows[:, 1:] == rows[:, :-1] + 1))
    table, j = np.nonzero(breaks)
    flat = table * L + j
    end = np.minimum(np.append(flat[1:], T * L), (table + 1) * L)
    return table, j, rows[table, j], end - flat, valid[table, j]


def _tables(planner, r: Region, at: np.ndarray, values: dict, which: np.ndarray) -> np.ndarray:
    """The values of index region `r` at each distinct start `at[t]` (T, L): gathered at once
    when the region has one range axis, else read start by start."""
    axes = r.range_axes
    data = np.asarray(planner.buffers[r.buffer].data.value)
    if len(axes) == 1 and data.ndim == len(r.size):
        a, L = axes[0], r.size[axes[0]]
        index = tuple(at[:, b][:, None] + (np.arange(L) * r.stride[b] if b == a else 0) for b in range(len(r.size)))
        return np.asarray(data[index], np.int64).reshape(len(at), L)
    first = [int(np.flatnonzero(which == t)[0]) for t in range(len(at))]
    return np.stack([np.asarray(planner.const_region(r, {v: int(x[i]) for v, x in values.items()}), np.int64)
                     for i in first])


def index_tables(planner, index: Region, values: dict, n: int):
    """A const index region read at every point: (its distinct tables (T, L), which table each
    point reads (n,)); a table read at a point-dependent offset is one table per offset."""
    at = region_starts(index, values, n)
    tables, which = np.unique(at, axis=0, return_inverse=True) if at.shape[1] else (at[:1], np.zeros(n, np.int64))
    which = which.reshape(-1)
    return _tables(planner, index, tables, values, which), which


def _copies(planner, op, values: dict, n: int):
    """The op at every point as copies of boxes, arrays over the copies: (source region
    starts, destination region starts, sizes along the range axes), and the destination
    boxes a gather's padding rows zero (lo, hi).  A scatter or gather copies each run of
    consecutive rows its const table names as one box."""
    src, dst = region_starts(op.src, values, n), region_starts(op.dst, values, n)
    shape = np.array(op.src.shape if isinstance(op, Gather) else op.dst.shape, np.int64)
    if isinstance(op, Copy):
        return src, dst, np.broadcast_to(shape, (n, len(shape))).copy(), None
    size = int(shape[op.axis])
    sa, da = op.src.range_axes[op.axis], op.dst.range_axes[op.axis]
    tables, which = index_tables(planner, op.index, values, n)
    table, j, i, length, valid = _runs(tables, size)
    # every run of a table at every point that reads that table
    order = np.argsort(which, kind="stable")
    count = np.bincount(which, minlength=len(tables))
    begin = np.cumsum(count) - count
    run = np.repeat(np.arange(len(table)), count[table])
    within = np.arange(len(run)) - np.repeat(np.cumsum(count[table]) - count[table], count[table])
    pt = order[begin[table[run]] + within]
    real = valid[run]
    src_at, dst_at = (i, j) if isinstance(op, Gather) else (j, i)
    s, d = src[pt[real]], dst[pt[real]]
    s[:, sa] += src_at[run[real]]
    d[:, da] += dst_at[run[real]]
    sizes = np.broadcast_to(np.array(op.dst.shape, np.int64), (len(s), len(shape))).copy()
    sizes[:, op.axis] = length[run[real]]
    zeros = None
    if isinstance(op, Gather) and not real.all():   # padding rows: zeros where they live
        pad = ~real
        lo = dst[pt[pad]]
        lo[:, da] += j[run[pad]]
        hi = lo + 1
        hi[:, list(op.dst.range_axes)] = lo[:, list(op.dst.range_axes)] + np.array(op.dst.shape, np.int64)
        hi[:, da] = lo[:, da] + length[run[pad]]
        zeros = (lo, hi)
    return s, d, sizes, zeros


def _moves(planner, op, src, dst, sizes):
    """The messages of copies (`_copies`) home block to home block: each destination piece of
    a copy's box takes its data from the source pieces that hold it."""
    sh, dh = planner.home(op.src.buffer), planner.home(op.dst.buffer)
    sa, da = list(op.src.range_axes), list(op.dst.range_axes)
    lo = dst.copy()
    hi = lo + 1
    hi[:, da] = lo[:, da] + sizes
    c, downer, dlo, dhi, dblo = dh.pieces_many(lo, hi)
    slo = src[c].copy()
    slo[:, sa] += dlo[:, da] - dst[c][:, da]
    shi = slo + 1
    shi[:, sa] = slo[:, sa] + (dhi - dlo)[:, da]
    k, sowner, plo, phi, sblo = sh.pieces_many(slo, shi)
    to = dlo[k].copy()
    to[:, da] += plo[:, sa] - slo[k][:, sa]
    to_size = np.ones_like(to)
    to_size[:, da] = (phi - plo)[:, sa]
    cols = planner.spec.cols
    routes = np.stack([sowner // cols, sowner % cols, downer[k] // cols, downer[k] % cols], 1)
    return sends_table(sh.local, dh.local, routes, plo - sblo, to - dblo[k], phi - plo, to_size)


def steps(planner, stage: Stage, env: dict, label: str) -> list[Superstep]:
    values, n = stage_point_values(stage.dims, env)
    if not n:
        return []
    transfers, fills = [], []
    for op in stage.body:
        src, dst, sizes, zeros = _copies(planner, op, values, n)
        if len(src):
            transfers += _moves(planner, op, src, dst, sizes)
        if zeros is not None:
            fills += _fills(planner, op, zeros, stage.name)
    if not transfers and not fills:
        return []
    return [Superstep(f"{label} copy", computes=tuple(fills), transfers=tuple(transfers))]


def _fills(planner, op, zeros, label: str) -> list[Compute]:
    """Computes writing zeros at a gather's padding rows (boxes `zeros`) in their home blocks:
    consecutive rows of one block as one box, and the PEs with the same box in one compute
    per rectangle."""
    home, cols = planner.home(op.dst.buffer), planner.spec.cols
    _, owner, lo, hi, block_lo = home.pieces_many(*zeros)
    a, b = lo - block_lo, hi - lo
    axis = op.dst.range_axes[op.axis] if op.dst.range_axes else 0
    join = np.zeros(len(a), bool)
    if len(a) > 1:   # the next row of the same block, the same elsewhere: one box
        rest = [x for x in range(a.shape[1]) if x != axis]
        join[1:] = (owner[1:] == owner[:-1]) & (a[1:, axis] == a[:-1, axis] + b[:-1, axis]) & \
            (a[1:, rest] == a[:-1, rest]).all(1) & (b[1:, rest] == b[:-1, rest]).all(1)
    first = np.flatnonzero(~join)
    last = np.append(first[1:], len(a)) - 1
    size = b[first].copy()
    size[:, axis] = a[last, axis] + b[last, axis] - a[first, axis]
    by_box: dict = {}
    for q, start, n in zip(owner[first].tolist(), a[first].tolist(), size.tolist()):
        by_box.setdefault((tuple(start), tuple(n)), []).append(q)
    return [Compute(rect, (Elementwise(Region(home.local, start, n), Const(0.0)),), (), label)
            for (start, n), pes in by_box.items() for rect in covering(pes, cols)]
