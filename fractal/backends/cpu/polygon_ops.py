"""The op rules of a polygon stage (`polygon`): a box's rules for copy, convert,
elementwise and reduce (they see `box = (P,)` and gathered arrays), and these for GEMM,
gather and scatter, which must not gather what the points share.

GEMM: in a grid RNN's wavefront step the weights `w[f, 0:K, 0:N]` are read by the outer
dim only while the rows `a` move with every point: gathering a copy of the weights per
point would copy megabytes to multiply kilobytes.  So the points are grouped by the
block of the operand they share most (`W`: the one with fewer distinct tile origins, b
on a tie), and the other operand's tiles (`X`) are stacked as the rows of one product
per block, as a box folds shared operands (`gemm.fold`):

* `one`: every point shares W: one `[P*M, K] @ [K, N]` BLAS call;
* `stacked`: groups whose blocks lie at equal distances in memory: one `np.matmul` over a
  strided view of the blocks, `[G, g*M, K] @ [G, K, N]`; groups of unequal sizes padded
  to the largest (with rows of a real point, dropped after) where the wasted multiply-adds
  cost less than the calls they save (`CALL_MACS` per call);
* `batched`: W's tiles are small (`P * tile <= GATHER_LIMIT` elements): both gathered
  per point, one batched `np.matmul`;
* `grouped`: else (blocks at uneven distances, or padding too wasteful) one BLAS call per
  distinct block, W viewed in place, each writing its rows of one array of products.

X's tiles are gathered once (ordered by block), and c written once, whatever the mode.

A shared a (rather than b) folds into the columns: `c^T = op(b)^T @ op(a)^T` per point.
How the points group is computed once per point plan.  The product is computed in the
operands' dtype and cast into c (c may be wider), `+=` adds it to c's tiles.

Gather and scatter index the table's rows in place: each point's row origins are its
table tile's origin plus the index times the axis stride, one fancy index over a window
view of the rows (`PointAccess`'s windows) for the whole stage.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fractal.lower.tile_ir import Gather, Gemm, Scatter

from .gemm import BLAS_DTYPES, blas_friendly
from .ops import RULES as BOX_RULES
from .polygon import PointAccess, SharedAccess, window
from .rows import check_index, split_padding, zero_padding

GATHER_LIMIT = 1 << 14  # elements of W's tiles over all points up to which gathering them is cheaper
CALL_MACS = 1 << 16  # multiply-adds costing about one more small BLAS call (~3 us on one core)


class _Block(NamedTuple):
    """One product of a planned GEMM: the points `lo:hi` (in the plan's order), split evenly
    among `count` blocks of W from byte `origin`, `step` bytes apart."""

    lo: int
    hi: int
    origin: int
    count: int
    step: int


class _GemmPlan(NamedTuple):
    """How one run's points multiply: `rows` (W is b; else a, folded into the columns); X's
    and c's fancy indices in the plan's order (None for a shared region); the `blocks` of W,
    or, when `w_index` is given, W's tiles gathered per point (in point order); `keep`: the
    product rows that are points (the others pad groups to one size), None: all."""

    rows: bool
    x_index: np.ndarray | None
    c_index: np.ndarray | None
    blocks: tuple[_Block, ...]
    w_index: np.ndarray | None
    keep: np.ndarray | None = None


def _index(access, env, plan, order=None):
    """The access's fancy index, in `order` (None for a shared region)."""
    if not isinstance(access, PointAccess):
        return None
    index = access.index(env, plan)
    return index if order is None else index[order]


def _shares_b(a, b, env, plan) -> bool:
    """Whether the points group by b's blocks (else by a's): the operand with fewer
    distinct tile origins, b on a tie."""
    if isinstance(b, SharedAccess) or isinstance(a, SharedAccess):
        return isinstance(b, SharedAccess)
    return len(np.unique(b.origins(env, plan))) <= len(np.unique(a.origins(env, plan)))


def _plan_gemm(a, b, c, depth: int, env, plan) -> _GemmPlan:
    """Groups the points by W's blocks (see the module)."""
    rows = _shares_b(a, b, env, plan)
    x, w = (a, b) if rows else (b, a)
    if isinstance(w, SharedAccess):  # one
        block = _Block(0, plan.size, w.origins(env, plan), 1, 0)
        return _GemmPlan(rows, _index(x, env, plan), _index(c, env, plan), (block,), None)
    if plan.size * int(np.prod(w.shape)) <= GATHER_LIMIT or isinstance(c, SharedAccess):  # batched
        return _GemmPlan(rows, _index(x, env, plan), _index(c, env, plan), (), _index(w, env, plan))
    origins = w.origins(env, plan)
    order = np.argsort(origins, kind="stable")
    ordered = origins[order]
    bounds = (0, *(np.flatnonzero(np.diff(ordered)) + 1).tolist(), plan.size)
    firsts = tuple(int(ordered[k]) for k in bounds[:-1])
    sizes, steps = np.diff(bounds), np.diff(firsts)
    groups, most, step = len(firsts), int(sizes.max()), int(steps[0]) if len(steps) else 0
    x_index, c_index = _index(x, env, plan, order), _index(c, env, plan, order)
    if len(steps) and (steps != step).any():  # grouped: blocks at uneven distances
        blocks = tuple(_Block(lo, hi, first, 1, 0) for lo, hi, first in zip(bounds, bounds[1:], firsts))
        return _GemmPlan(rows, x_index, c_index, blocks, None)
    stacked = _Block(0, groups * most, firsts[0], groups, step)
    if (sizes == most).all():
        return _GemmPlan(rows, x_index, c_index, (stacked,), None)
    # groups of unequal sizes: padded to the largest (rows of the first point) when the
    # wasted multiply-adds cost less than the BLAS calls one product per group would add
    waste = (groups * most - plan.size) * int(np.prod(x.shape)) * int(np.prod(w.shape)) // depth
    if waste > (groups - 1) * CALL_MACS:
        blocks = tuple(_Block(lo, hi, first, 1, 0) for lo, hi, first in zip(bounds, bounds[1:], firsts))
        return _GemmPlan(rows, x_index, c_index, blocks, None)
    slot = np.concatenate([k * most + np.arange(n) for k, n in enumerate(sizes)])  # each point's padded row
    rows_of = np.zeros(groups * most, np.intp)
    rows_of[slot] = np.arange(plan.size)
    return _GemmPlan(rows, None if x_index is None else x_index[rows_of], c_index, (stacked,), None, slot)


def _gemm(op, scope):
    a, b, c = scope.access(op.a), scope.access(op.b), scope.access(op.c)
    # rows: X = op(a), W = op(b); else (folding into columns) X = op(b)^T, W = op(a)^T and
    # the products come out transposed: whether X's and W's tiles are transposed, per case
    flips = {True: (op.trans_a, op.trans_b), False: (not op.trans_b, not op.trans_a)}
    key, accumulate = object(), op.accumulate  # key: this op's entry in a point plan's `derived`
    depth = op.a.shape[0] if op.trans_a else op.a.shape[1]  # K

    def run(env, plan, box):
        strides = (a.memory.strides, b.memory.strides, c.memory.strides)
        found = plan.derived.get(key)
        if found is None or found[0] != strides:
            found = plan.derived[key] = (strides, _plan_gemm(a, b, c, depth, env, plan))
        g = found[1]
        x, w = (a, b) if g.rows else (b, a)
        flip_x, flip_w = flips[g.rows]
        xs = _tiles(x, g.x_index, env, plan, flip_x)  # [P, r, K]
        if g.w_index is not None:
            product = _product(xs, _tiles(w, g.w_index, env, plan, flip_w))
        else:  # X's tiles stacked as the rows of each W block, into one array of products
            ws = [_blocks(w, block, flip_w) for block in g.blocks]
            product = np.empty(xs.shape[:2] + ws[0].shape[-1:], xs.dtype)
            for block, wb in zip(g.blocks, ws):
                n, (_, r, k) = block.hi - block.lo, xs.shape
                shape = (n * r, k) if block.count == 1 else (block.count, n // block.count * r, k)
                _product(xs[block.lo:block.hi].reshape(shape), wb[0] if block.count == 1 else wb,
                         product[block.lo:block.hi].reshape(shape[:-1] + wb.shape[-1:]))
            if g.keep is not None:
                product = product[g.keep]
        _write(c, g.c_index, product, g.rows, accumulate, env, plan)
    return run


def _tiles(access, index, env, plan, flip: bool) -> np.ndarray:
    """The access's tiles at `index` (all P alike for a shared region), `[P, r, K]`."""
    tiles = access.storage()[index] if index is not None else access.get(env, plan, plan.box)
    return tiles.swapaxes(1, 2) if flip else tiles


def _blocks(w, block: _Block, flip: bool) -> np.ndarray:
    """A block's `count` blocks of W viewed in place: `[count, K, cols]` (built once per
    bound array: constructing a view costs about as much as a small product)."""
    m = w.memory
    strides = tuple(st * m.strides[k] for k, (n, st) in enumerate(zip(w.region.size, w.region.stride))
                    if n is not None)
    key = ("blocks", w.shape, strides, block.origin, block.count, block.step, flip)
    found = m.derived.get(key)
    if found is None:
        found = np.ndarray((block.count,) + w.shape, w.dtype, m.raw, block.origin, (block.step,) + strides)
        found = m.derived[key] = found.swapaxes(1, 2) if flip else found
    return found


def _product(x: np.ndarray, w: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """`x @ w` (over leading batch axes), in the operands' dtype, into `out` if given:
    BLAS-ready operands (see `gemm.blas_friendly`), a contraction of one as a broadcast
    multiply (`gemm.multiply`)."""
    if x.shape[-1] == 1:
        return np.multiply(x, w, out=out, dtype=x.dtype)
    if x.dtype in BLAS_DTYPES:
        x = x if blas_friendly(x) else np.ascontiguousarray(x)
        w = w if blas_friendly(w) else np.ascontiguousarray(w)
    return np.matmul(x, w, out=out)


def _write(c, index, product: np.ndarray, rows: bool, accumulate: bool, env, plan) -> None:
    """c's tiles at `index` set to, or increased by, the products `[n, M, N]` (`[n, N, M]`
    when folded into columns); a shared c (every point writes one tile) in point order."""
    if not rows:
        product = product.swapaxes(1, 2)
    if index is None:
        if accumulate:
            product = np.add(c.get(env, plan, plan.box), product, dtype=c.dtype, casting="unsafe")
        c.put(env, plan, plan.box, product)
        return
    storage = c.storage()
    if accumulate:
        current = storage[index]
        np.add(current, product, out=current, casting="unsafe")
        product = current
    storage[index] = product


# --- gather, scatter ---------------------------------------------------------------------------

def _rows(table, axis: int):
    """`f(env, plan, index) -> (view, rows)`: the rows of a table region along `axis` picked
    by `index` (`[P, n]`, counting from the region's start; negative from its end), as a
    window view of one row (the axes after `axis`) and a fancy index into it `[P, lead.., n]`:
    each point's tile origin plus lead positions and indices times their byte strides."""
    region, m = table.region, table.memory
    ranges = [(k, n, st) for k, (n, st) in enumerate(zip(region.size, region.stride)) if n is not None]
    lead, (k_axis, n_axis, st_axis), inner = ranges[:axis], ranges[axis], ranges[axis + 1:]
    inner_shape = tuple(n for _, n, _ in inner)
    key = object()  # this table's entry in a point plan's `derived`

    def rows(env, plan, index: np.ndarray):
        inner_strides = tuple(st * m.strides[k] for k, _, st in inner)
        first, unit, view = window(m, inner_shape, inner_strides)
        found = plan.derived.get(key)
        if found is None or found[0] != m.strides:
            base = np.asarray(table.origins(env, plan), np.intp).reshape((-1,) + (1,) * (len(lead) + 1)) - first
            for j, (k, n, st) in enumerate(lead):
                base = base + (np.arange(n, dtype=np.intp) * (st * m.strides[k])).reshape((n,) + (1,) * (len(lead) - j))
            found = plan.derived[key] = (m.strides, base, st_axis * m.strides[k_axis])
        _, base, step = found
        index = index.reshape(index.shape[:1] + (1,) * len(lead) + index.shape[1:])
        return view, (base + (np.asarray(index, np.intp) % n_axis) * step) // unit
    return rows


def _gather(op, scope):
    table, index, dst = scope.access(op.src), scope.access(op.index), scope.access(op.dst)
    rows, size = _rows(table, op.axis), op.src.shape[op.axis]

    def run(env, plan, box):
        idx = index.get(env, plan, box)
        check_index(op, idx, size)
        idx, pad = split_padding(idx, size)
        view, at = rows(env, plan, idx)
        value = view[at]
        zero_padding(value, pad, 1, len(at.shape) - 2)
        dst.put(env, plan, box, value)
    return run


def _scatter(op, scope):
    src, index, table = scope.access(op.src), scope.access(op.index), scope.access(op.dst)
    rows, size = _rows(table, op.axis), op.dst.shape[op.axis]

    def run(env, plan, box):
        idx = index.get(env, plan, box)
        check_index(op, idx, size)
        idx, pad = split_padding(idx, size)
        view, at = rows(env, plan, idx)
        if pad is None:
            view[at] = src.get(env, plan, box)
            return
        keep = np.broadcast_to(~pad.reshape(pad.shape[:1] + (1,) * (at.ndim - 2) + pad.shape[1:]), at.shape)
        view[at[keep]] = np.broadcast_to(src.get(env, plan, box), at.shape + view.shape[1:])[keep]
    return run


RULES = {**BOX_RULES, Gemm: _gemm, Gather: _gather, Scatter: _scatter}
