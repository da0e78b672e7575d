"""A batch of short reductions on the mesh: a reduce loop whose stage has points (a softmax's
max and sum per query), each point reducing its own rows (`plan_reduce` asks whether the
loop may be re-associated and which states other ops read)::

    for r in 0:50 sequential associative host {
      stage maximum30(m in 0:min(55, 3*min(1, max(0, -r + 25)) + ... + 9)) device {
        st[m + 64*r + 64, 0:1, 0:1] = maximum(st[m + 64*r, 0:1, 0:1], t[50*m + r, 0:1, 0:1])
      }
    }

* `per_phase`: when every state read is one a *phase* ends with (a run of steps with one box
  of points: one, or, over a batch sorted by length, one per distinct length), one stage per
  phase whose points each reduce the phase's rows and combine the state it starts from,
  planned like any stage.
* `own_ends`: a batch sorted by another length (rnn_attention's queries, sorted by the
  decoder's lengths, each reducing over its source's length) has a box that is a prefix
  covering the live points, and each point's state is read at its own step, inside a phase.
  Each point, on a PE of its own near its rows, reduces its rows up to that step and writes
  that one state: two supersteps for the whole loop, where per phase it would take one
  stage run per distinct step read.

The combiners (add, max, min) commute, so the order is free; the results differ from the
loop's by rounding only.
"""

from __future__ import annotations

import numpy as np

from fractal.backends.pointwise import region_starts
from fractal.lower.tile_affine import aff, evaluate_many
from fractal.lower.tile_ir import Binary, Dim, Elementwise, Load, Loop, Reduce, Region, Stage

from .errors import SramCapacityError
from .home import pe_order, pe_rank
from .mesh_ir import Alloc, Compute, Free, Superstep, covering
from .operand import box_moves


def phases(loop: Loop, stage: Stage, env: dict) -> list:
    """The loop's phases: runs of steps with one box of points, as (first step, end step, the
    box's dims); steps with no points are left out."""
    steps = np.arange(loop.start.evaluate(env), loop.stop.evaluate(env), dtype=np.int64)
    at = {**{k: np.int64(v) for k, v in env.items()}, loop.var: steps}
    box = np.stack([np.broadcast_to(evaluate_many(b, at), steps.shape) for d in stage.dims for b in (d.start, d.stop)], 1) \
        if stage.dims else np.zeros((len(steps), 0), np.int64)
    new = np.ones(len(steps), bool)
    new[1:] = (box[1:] != box[:-1]).any(1)
    firsts = np.flatnonzero(new)
    out = []
    for a, b in zip(firsts.tolist(), np.append(firsts[1:], len(steps)).tolist()):
        bounds = box[a].tolist()
        if all(lo < hi for lo, hi in zip(bounds[::2], bounds[1::2])):
            out.append((int(steps[a]), int(steps[b - 1]) + 1,
                        tuple((d.var, lo, hi) for d, lo, hi in zip(stage.dims, bounds[::2], bounds[1::2]))))
    return out


def per_phase(planner, loop: Loop, stage: Stage, op, x: Region, ax: int, combiner: str, env: dict, phases):
    """A reduce per point of the stage (a batch of short reductions): per *phase* (`phases`: a
    sorted ragged batch's points drop out as their lists end) one stage whose points each
    reduce the phase's rows (`Reduce`) and combine the state the phase starts from, writing the
    state it ends with, planned like any stage.  None when a point's rows do not fit a PE."""
    var, dst = loop.var, op.dst
    at = lambda r, v: Region(r.buffer, tuple(s.substitute({var: aff(v)}) for s in r.start), r.size, r.stride)  # noqa: E731
    if not phases:
        return None
    out = []
    for a, b, dims in phases:
        rows = at(x, a)
        rows = Region(rows.buffer, rows.start, tuple(b - a if k == ax else n for k, n in enumerate(x.size)), rows.stride)
        last, init = at(dst, b - 1), at(dst, a - 1)
        ops = (Reduce(rows, last, (rows.range_axes.index(ax),), combiner),
               Elementwise(last, Binary(op.expr.op, Load(init), Load(last))))
        try:
            out += planner.stage(Stage(stage.name, tuple(Dim(*d) for d in dims), ops, stage.placement), env)
        except SramCapacityError:
            return None   # (before anything of the loop is planned, or the planner itself gave up)
    return out


def own_ends(planner, loop: Loop, stage: Stage, op, x: Region, ax: int, combiner: str, env: dict, reads):
    """A batch of short reductions whose states are read at each point's own step (`reads`: a
    ragged batch sorted by another length, the loop's box of points a prefix covering the live
    ones): each point on a PE of its own reduces its rows up to that step (`Reduce`), combines
    the state the loop starts from and writes the one state read.  Two supersteps for the
    loop.  None when a point's states are read at two steps, when a point leaves the box
    before its step, or when the points outnumber the PEs or do not fit them."""
    var, dst, spec = loop.var, op.dst, planner.spec
    ends = dict(reads)
    if len(ends) != len(reads) or len(ends) > spec.pes:
        return None
    start = loop.start.evaluate(env)
    names = [d.var for d in stage.dims]
    points = list(ends)
    n = len(points)
    steps = np.array([ends[p] for p in points], np.int64)
    # each point in the box at every step up to its own (the loop computed that state)
    span = steps - start + 1
    which = np.repeat(np.arange(n), span)
    at = {**{k: np.int64(v) for k, v in env.items()},
          **{v: np.array([p[i] for p in points], np.int64)[which] for i, v in enumerate(names)},
          var: start + np.arange(int(span.sum())) - np.repeat(np.cumsum(span) - span, span)}
    for d in stage.dims:
        if not ((evaluate_many(d.start, at) <= at[d.var]) & (at[d.var] < evaluate_many(d.stop, at))).all():
            return None
    values = {**{k: np.full(n, v, np.int64) for k, v in env.items()},
              **{v: np.array([p[i] for p in points], np.int64) for i, v in enumerate(names)}}
    extent = lambda r: np.array([1 if s is None else s for s in r.size], np.int64)  # noqa: E731
    row_lo = region_starts(x, {**values, var: np.full(n, start, np.int64)}, n)
    row_hi = row_lo + extent(x)
    row_hi[:, ax] = row_lo[:, ax] + span   # (each point's rows: one per step up to its own)
    init_lo = region_starts(_prev(op), {**values, var: np.full(n, start, np.int64)}, n)
    end_lo = region_starts(dst, {**values, var: steps}, n)
    hx, hd, cols = planner.home(x.buffer), planner.home(dst.buffer), spec.cols
    # each point on the PE holding its first row, or the next free one in Z order
    _, owner, _, _, _ = hx.pieces_many(row_lo, row_lo + 1)   # (one piece per box: its first element)
    rank = pe_rank(spec.rows, cols)[owner]
    order, k = np.argsort(rank, kind="stable"), np.arange(n)
    placed = np.empty(n, np.int64)   # (distinct ranks, pushed back from the end of the order)
    placed[order] = np.minimum(np.maximum.accumulate(rank[order] - k) + k, spec.pes - n + k)
    pes = pe_order(spec.rows, cols)[placed]
    dtype = planner.buffers[dst.buffer].dtype
    shape = tuple(int(span.max()) if a == ax else int(e) for a, e in enumerate(extent(x)))
    state = tuple(int(v) for v in extent(dst))
    need = (int(np.prod(shape)) + 2 * int(np.prod(state))) * dtype.itemsize
    if int(planner.free()[pes].min()) < need:
        return None
    name = f"r_{stage.name}"
    rows, acc, init = (planner.declare(f"{name}_{w}", sh, dtype)
                       for w, sh in (("rows" + "x".join(map(str, shape)), shape), ("acc", state), ("init", state)))
    size = lambda c: tuple(c if a == ax else s for a, s in enumerate(x.size))  # noqa: E731
    reduce_at = [a for a, s in enumerate(size(0)) if s is not None].index(ax)
    whole = lambda buf: Region(buf, (0,) * len(state), dst.size)  # noqa: E731
    computes = []
    for c in sorted(set(span.tolist())):   # one SPMD compute per row count
        ops = (Reduce(Region(rows, (0,) * len(shape), size(c)), whole(acc), (reduce_at,), combiner),
               Elementwise(whole(acc), Binary(op.expr.op, Load(whole(init)), Load(whole(acc)))))
        computes += [Compute(q, ops, (), stage.name) for q in covering(pes[span == c].tolist(), cols)]
    label, everyone = planner.label(stage.name), covering(pes.tolist(), cols)
    fetch = box_moves(hx, rows, row_lo, row_hi, pes, cols, True) + \
        box_moves(hd, init, init_lo, init_lo + extent(dst), pes, cols, True)
    back = box_moves(hd, acc, end_lo, end_lo + extent(dst), pes, cols, False)
    return [Superstep(f"{label} reduce: fetch", allocs=tuple(Alloc((rows, acc, init), q) for q in everyone),
                      transfers=fetch),
            Superstep(f"{label} reduce: each to its own step", computes=tuple(computes), transfers=back,
                      frees=tuple(Free((rows, acc, init), q) for q in everyone))]


def _prev(op) -> Region:
    """The state the loop's step reads (the previous step's)."""
    return next(e.region for e in (op.expr.a, op.expr.b) if e.region.buffer == op.dst.buffer)
