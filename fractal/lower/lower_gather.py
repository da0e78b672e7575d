"""Gathers with traced indices, and reductions of the rows they gather (graphs).

`gather(xs, idx)` with indices known only at run time: `idx` a 1-D int tensor, or a list of
int scalars (per point a list of its own length: a node's neighbours, `ft.gather(h, nbrs_i)`
in a `map` over the neighbour lists).  The lowering knows every list's length, not the index
values, so the rows are moved by `Gather` ops at run time; how many and where:

* **runs** (a GraphSAGE layer): the list `xs` is one list for every point (the node features,
  defined outside the maps) and the index lists are rows written before the maps (the
  neighbour lists, an argument): one `Gather` of every point's rows at once, placed before
  the outermost loop, into a buffer holding the points' runs back to back in row order (no
  padding: a hub's thousand neighbours pad no other node's list).
* **shared**: the list is one for every point but the indices are computed inside the loop:
  a gather per point, all from one layout of the list (not a copy of it per point).
* **per point**: each point has its own list, laid out per point (`gather_rows`).

Indices are wrapped (`i mod n` for `-n <= i < n`); one out of range becomes `m + 1` (past the
padding `m`: the gather raises `LengthError` at run time, `runtime_checks` says at which line).
A list of indices of several lengths (per point, padded to the longest) marks its padding
slots `m`: they read zeros.

`segment_reduce`: a `reduce` whose body is one `add` / `maximum` / `minimum` of its state and
element, over lists whose elements are rows written before the loops (the runs above, or a
ragged argument's rows), is one `SegmentReduce` over the runs back to back (`reduceat`), placed
before the loops, then the initial value combined in per point: not a sequential loop over
the longest list's positions.  (`reduce` declares its function associative; a `fold` keeps
its order and its loop.)
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from ..lang.errors import UnsupportedError
from ..lang.types import TensorType
from .lower_values import (ROOT, ROW_MASK, LVal, broadcast_ids, element_gids, id_list, lengths, row_region,
                           source_buffers)
from .tile_expr import Binary, Const, Load, Region, Unary, Where
from .tile_ir import COMBINER_OF, Elementwise, Gather, If, Loop, SegmentReduce, Stage



@contextmanager
def at_root(em):
    """Emit into the program's top block, before the enclosing loops, over the root domain
    (for rows every point reads and no loop writes)."""
    domain, stack = em.domain, em.stack
    em.domain, em.stack = ROOT, stack[:1]
    try:
        yield
    finally:
        em.domain, em.stack = domain, stack


def _written(stmts, out: set) -> set:
    for s in stmts:
        if isinstance(s, Stage):
            out.update(r.buffer for op in s.body for r in op.writes)
        elif isinstance(s, Loop):
            _written(s.body, out)
        elif isinstance(s, If):
            _written(s.then + s.orelse, out)
    return out


def _root_rows(em, gids: np.ndarray) -> bool:
    """Whether every valid gid is a row of a buffer complete before the enclosing loops: an
    input, a const, or a buffer written only by the statements before them (so a gather or
    reduce placed there may read it)."""
    before = _written(em.stack[0], set())
    inside = _written([s for block in em.stack[1:] for s in block], set())
    for b in source_buffers(gids[gids >= 0]):
        buf = em.buffers[int(b)]
        if buf.role not in ("input", "const") and (buf.name not in before or buf.name in inside):
            return False
    return True


def _compact(em, gids: np.ndarray, shape, dtype) -> Region | None:
    """The rows `gids` (1-d, root buffers) as one region of `len(gids)` rows: a view when they
    are consecutive rows of one buffer, else gathered once at the root; None when empty."""
    n = len(gids)
    if n == 0:
        return None
    zeros = (0,) * len(shape)
    bufs = source_buffers(gids)
    if len(bufs) == 1:
        rows = gids & ROW_MASK
        if np.array_equal(rows, rows[0] + np.arange(n)):
            return Region(em.buffers[int(bufs[0])].name, (int(rows[0]),) + zeros, (n,) + tuple(shape))
    with at_root(em):
        name, _ = em.gather_rows(gids, shape, dtype)
    return Region(name, (0,) + zeros, (n,) + tuple(shape))


def _one_list(ids: np.ndarray) -> np.ndarray | None:
    """The element gids of the list every point holds, or None when points hold different lists."""
    lists = [x for x in ids.reshape(-1) if x is not None]
    if not lists:
        return None
    first = lists[0].compact()[0]
    if any(not np.array_equal(x.compact()[0], first) for x in lists[1:]):
        return None
    return first


def _in_row_order(em, lists: np.ndarray):
    """The valid points' lists in row order: (their rows, their element gids concatenated, lengths)."""
    valid = em.domain.valid
    points = [tuple(p) for p in np.argwhere(valid)] if valid.ndim else ([()] if valid else [])
    rows = np.array([em.domain.row(p) for p in points], dtype=np.int64)
    order = np.argsort(rows, kind="stable")
    empty = np.zeros(0, np.int64)
    leaves = [empty if lists[points[i]] is None else lists[points[i]].compact()[0] for i in order]
    lens = np.array([len(x) for x in leaves], dtype=np.int64)
    flat = np.concatenate(leaves).astype(np.int64) if leaves else empty
    return rows[order], flat, lens


def _wrapped(em, index: Region, dtype, n, m: int, live: Region | None = None) -> str:
    """A fresh index buffer of `index`'s shape: `i mod n` where `-n <= i < n`, `m + 1` elsewhere
    (`n` a Load of per-point lengths or an int), and `m` (padding: zeros) where `live` is False."""
    name = em.buffer("t", _flat_shape(em, index), dtype)
    i = Load(index)
    if isinstance(n, int) and n == 0:  # an empty list: every index is out of range
        expr = Const(float(m + 1))
    else:
        n = Const(float(n)) if isinstance(n, int) else n
        inside = Binary("logical_and", Binary("ge", i, Unary("neg", n)), Binary("lt", i, n))
        expr = Where(inside, Binary("mod", i, n), Const(float(m + 1)))
    if live is not None:
        expr = Where(Load(live), expr, Const(float(m)))
    em.emit([Elementwise(_like(name, index, em), expr)])
    return name


def _flat_shape(em, index: Region) -> tuple:
    return ((em.domain.size,) if em.domain.vars else ()) + tuple(int(d) for d in index.shape)


def _like(name: str, index: Region, em) -> Region:
    """The region of `name` laid out like `index` (one row per point when in a loop)."""
    if em.domain.vars:
        return Region(name, (em.domain.flat(),) + (0,) * len(index.shape), (None,) + index.shape)
    return Region(name, (0,) * len(index.shape), index.shape)


def lower_gather_dynamic(walker, eqn, env) -> LVal:
    em = walker.em
    xs_t, out_t = eqn.inputs[0].type, eqn.outputs[0].type
    if not isinstance(xs_t.elem, TensorType):
        raise UnsupportedError("the cpu backend cannot yet lower gather with traced indices of a list of lists")
    elem = xs_t.elem
    xs = env[eqn.inputs[0]]
    shared = _one_list(xs.ids)
    if shared is not None and not _root_rows(em, shared):
        shared = None
    idx = env[eqn.inputs[1]]
    if isinstance(idx, LVal):
        lists = broadcast_ids(idx.ids, em.domain.extents)
        if shared is not None and _root_rows(em, element_gids(lists, int(lengths(lists).max(initial=0)))):
            return _gather_runs(em, eqn, shared, lists, elem, out_t)
        return _gather_per_point(walker, eqn, env, shared, lists)
    return _gather_per_point(walker, eqn, env, shared, None)


def _gather_runs(em, eqn, shared, lists, elem: TensorType, out_t) -> LVal:
    """Every point's rows in one gather before the loops, the runs back to back in row order."""
    rows, flat, lens = _in_row_order(em, lists)
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    total, m = int(offsets[-1]), len(shared)
    index_t = eqn.inputs[1].type.elem
    gathered = None
    if total:
        with at_root(em):
            source = _compact(em, shared, elem.shape, elem.dtype) if m else None
            if source is None:  # an empty list: every index is out of range (one zero row to name)
                name = em.buffer("t", (1,) + elem.shape, elem.dtype)
                source = Region(name, (0,) * (1 + len(elem.shape)), (1,) + elem.shape)
                em.emit([Elementwise(source, Const(0.0))])
            index = _compact(em, flat, (), index_t.dtype)
            wrapped = _wrapped(em, index, index_t.dtype, m, max(m, 1))
            em.runtime_checks[wrapped] = eqn.loc  # a gather through it that meets index m + 1 failed here
            gathered = em.buffer("t", (total,) + elem.shape, elem.dtype)
            em.emit([Gather(source, Region(wrapped, (0,), (total,)),
                            Region(gathered, (0,) * (1 + len(elem.shape)), (total,) + elem.shape), 0)])
    ids = np.empty(em.domain.extents, dtype=object)
    by_row = dict(zip(rows.tolist(), range(len(rows))))
    grid = em.domain.rows_grid()
    for pt in np.ndindex(*em.domain.extents):
        if em.domain.valid[pt]:
            k = by_row[int(grid[pt])]
            ids[pt] = id_list(em.gid(gathered, np.arange(offsets[k], offsets[k + 1])) if gathered else [])
    return LVal(ids, out_t)


def _gather_per_point(walker, eqn, env, shared, idx_lists) -> LVal:
    """One gather per point: from one layout of a shared list, or from each point's own list."""
    em = walker.em
    elem, out_t = eqn.inputs[0].type.elem, eqn.outputs[0].type
    ext, flat = em.domain.extents, em.domain.flat()
    zeros = (0,) * len(elem.shape)
    if idx_lists is None:
        idx = walker.tensor(eqn.inputs[1], env)
        (k,) = idx.shape
        counts, index, dtype = np.full(ext, k, dtype=np.int64), idx.region, idx.dtype
    else:  # a list of indices per point: padded to the longest (its padding slots marked below)
        counts = lengths(idx_lists)
        k, dtype = int(counts.max(initial=0)), eqn.inputs[1].type.elem.dtype
    out = em.buffer("t", (em.domain.size * max(k, 1),) + elem.shape, elem.dtype)
    ids = np.empty(ext, dtype=object)
    for pt in np.ndindex(*ext):
        if em.domain.valid[pt]:
            ids[pt] = id_list(em.gid(out, em.domain.row(pt) * k + np.arange(counts[pt])))
    if k == 0:  # no index: empty lists, nothing to gather (a region has at least one element)
        return LVal(ids, out_t)
    live = None
    if idx_lists is not None:
        name, kk = em.gather_rows(element_gids(idx_lists, k), (), dtype)
        index = Region(name, (flat * kk,), (k,))
        mask = np.arange(k) < counts[..., None]
        live = Region(em.const_rows(em.domain.in_row_order(mask)), (flat * k,), (k,))
    src = None
    if shared is not None:  # one list: read in place (or laid out once), not copied per point
        m = n = len(shared)
        src = _compact(em, shared, elem.shape, elem.dtype)
    else:
        lists = broadcast_ids(env[eqn.inputs[0]].ids, ext)
        lens = lengths(lists)
        m = max(int(lens.max(initial=0)), 1)
        if lens.max(initial=0) > 0:
            name, stride = em.gather_rows(element_gids(lists, m), elem.shape, elem.dtype)
            src = Region(name, (flat * stride,) + zeros, (m,) + elem.shape)
        size = em.const_rows(em.domain.in_row_order(lens).astype(dtype))
        n = Load(Region(size, (flat,), (None,)))
    if src is None:  # every list is empty: any index is out of range (a zero row to name)
        name = em.buffer("t", (em.domain.size,) + elem.shape, elem.dtype)
        src = Region(name, (flat,) + zeros, (1,) + elem.shape)
        em.emit([Elementwise(src, Const(0.0))])
        m = 1
    wrapped = _wrapped(em, index, dtype, n, m, live)
    em.runtime_checks[wrapped] = eqn.loc  # a gather through it that meets index m + 1 failed here
    em.emit([Gather(src, _like(wrapped, index, em), Region(out, (flat * k,) + zeros, (k,) + elem.shape), 0)])
    return LVal(ids, out_t)


# -- reductions over gathered runs --------------------------------------------------------------

def segment_combiner(eqn) -> str | None:
    """The tile combiner of a `reduce` whose body is one add / maximum / minimum of its state and
    its element (of one type), else None."""
    if eqn.op != "reduce" or eqn.attrs["n_state"] != 1 or len(eqn.inputs) != 2:
        return None
    body = eqn.regions[0]
    if len(body.eqns) != 1 or len(body.params) != 2:
        return None
    (op,) = body.eqns
    state, x = body.params
    if (op.op not in COMBINER_OF or set(op.inputs) != {state, x} or len(op.inputs) != 2
            or body.results != tuple(op.outputs) or not isinstance(state.type, TensorType)
            or not state.type == x.type == op.outputs[0].type):
        return None
    return COMBINER_OF[op.op]


def lower_segment_reduce(walker, eqn, env):
    """`reduce(f, xs, init)` as one `SegmentReduce` of every point's run of rows before the loops
    and `f(init, run)` per point; None where the lists' rows are written inside the loops."""
    em = walker.em
    combiner = segment_combiner(eqn)
    if combiner is None:
        return None
    xs = env[eqn.inputs[1]]
    if not isinstance(xs, LVal) or xs.ids.ndim != len(em.domain.vars) or isinstance(env[eqn.inputs[0]], LVal):
        return None  # (a list every point shares is reduced in place by the loop, not copied per point)
    elem = eqn.inputs[1].type.elem
    lists = broadcast_ids(xs.ids, em.domain.extents)
    if not em.domain.vars or not _root_rows(em, element_gids(lists, int(lengths(lists).max(initial=0)))):
        return None
    rows, flat, lens = _in_row_order(em, lists)
    counts = np.zeros(em.domain.size, dtype=np.int64)
    counts[rows] = lens  # runs in row order; a padding point's run is empty
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    size = em.domain.size
    with at_root(em):
        runs = _compact(em, flat, elem.shape, elem.dtype)
        reduced = em.buffer("t", (size,) + elem.shape, elem.dtype)
        dst = Region(reduced, (0,) * (1 + len(elem.shape)), (size,) + elem.shape)
        if runs is None:  # no rows at all: every run is empty, the identity everywhere
            identity = {"add": 0.0, "max": float("-inf"), "min": float("inf")}[combiner]
            if elem.dtype.kind in "iu":
                info = np.iinfo(elem.dtype)
                identity = {"add": 0, "max": info.min, "min": info.max}[combiner]
            em.emit([Elementwise(dst, Const(float(identity)))])
        else:
            table = em.const_rows(offsets)
            em.emit([SegmentReduce(runs, Region(table, (0,), (len(offsets),)), dst, combiner)])
    init = walker.tensor(eqn.inputs[0], env)
    out = em.temp(elem.shape, elem.dtype)
    op = {"add": "add", "max": "maximum", "min": "minimum"}[combiner]
    em.emit([Elementwise(out.region, Binary(op, Load(init.region), Load(row_region(reduced, em.domain.flat(),
                                                                                    elem.shape))))])
    return [out]


__all__ = ["lower_gather_dynamic", "lower_segment_reduce", "at_root"]
