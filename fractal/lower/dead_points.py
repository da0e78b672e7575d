"""Pass 16, cut_dead: a stage's points whose results nothing reads are cut from its space.

A map over a ragged list runs over the padded box of its lengths: images of different sizes
are computed on the largest image's grid of pixels, the tokens of short sequences up to the
longest's length.  The points past an element's own length compute padding that no one reads
(the program's result gathers the live rows only; a batch statistic reads the live pixels
through its table), and they cost: conv2d's 32 images of 16 to 32 pixels a side fill 56% of
their 32 x 32 box, transformer_block's 8 sequences 844 of 1024 rows.

The live points are found with NumPy over the instances, backwards through the program: an
output's rows are all needed; a stage's point is live when one of the rows (along the first
axis) it writes is needed by a later read (a plain region's rows, a gather's rows through its
constant table), and then the rows it reads are needed.  Stages inside a sequential loop or an
`if`, or with more than `MAX_INSTANCES` instances, count as all live (their reads at every
instance).  Every read counts, not only the reads of the newest value: an older read can only
keep a point alive, so the cut is sound.

A stage whose dead points the target's policy finds worth cutting (`CostPolicy.cut_to_live`)
keeps its first dim and gets each later dim's stop as a step function of the first: one past
its last live coordinate there (a polygon the backends already run: the native backend as
loops over the first dim around the box code, a product per value of it).  A stage holding a
product keeps its innermost dim whole where another dim is cut, so that their rows still fold
into one product per value of the first dim (the native emitter folds a dim of varying size
only outermost).  The padded points left inside the polygon are computed as before.

Before (conv2d's product over 32 images in a box of 32 x 32 output pixels; images 0 and 1
have 32 rows, image 2 31, ...)::

    stage init14(m34 in 0:32, m33 in 0:32, m32 in 0:32) device {
      t32_0[m32 + 32*m33 + 1024*m34, 0:1, 0:64] = gemm(lhs[m32 + 32*m33 + 1024*m34, 0:1, 0:288], w[0, 0:288, 0:64])
    }

After (the rows of each image; the row width stays whole, so each image is one product)::

    stage init14(m34 in 0:32, m33 in 0:-min(1, max(0, m34 - 1)) - 2*min(1, max(0, m34 - 11)) - ... + 32, m32 in 0:32)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .dependences import op_accesses, tables_of
from .policy import LiveFacts
from .rewrite import rewrite_blocks
from .table_fit import table_entries
from .tile_affine import Aff, aff, amax, amin, evaluate_many
from .tile_isl import Scope
from .tile_nodes import Dim, Gemm, If, Loop, Stage
from .workload import point_costs

MAX_INSTANCES = 1 << 22   # instances of one stage listed to find its live points
MAX_STEPS = 32            # changes of a cut dim's stop along the first dim (terms of its index)


@dataclass(frozen=True)
class _Placed:
    """A stage with what encloses it (its dims included in `scope`)."""

    stage: Stage
    scope: Scope
    candidate: bool   # outside sequential loops and ifs: its dead points may be cut


def cut_dead(program, ctx=None):
    """Pass 16, cut_dead: stages lose the points nothing reads where the policy finds it worth it."""
    if ctx is None:
        return program
    cuts = {}
    itemsizes = {b.name: b.dtype.itemsize for b in program.buffers}
    for placed, pts, live in _live_points(program):
        cut = _cut(placed.stage, pts, live)
        if cut is not None and _worth(placed.stage, cut, pts, itemsizes, ctx):
            cuts[placed.stage.name] = cut
            ctx.notes.append(f"cut_dead: {placed.stage.name} "
                             + ", ".join(f"{d.var} in {d.start}:{d.stop}" for d in cut.dims[1:]))
    if not cuts:
        return program
    return rewrite_blocks(program, lambda stmts, path: [cuts.get(s.name, s) if isinstance(s, Stage) else s
                                                       for s in stmts])


# -- which points are live ---------------------------------------------------------------

def _placed(program) -> list[_Placed]:
    """Every stage in program order, with its scope."""
    out: list[_Placed] = []

    def walk(stmts, sc: Scope, free: bool):
        for s in stmts:
            if isinstance(s, Loop):
                walk(s.body, sc.inner(s.var, s.start, s.stop, s.step), free and s.kind != "sequential")
            elif isinstance(s, If):
                walk(s.then, sc.when(s.cond), False)
                walk(s.orelse, sc.unless(s.cond), False)
            elif isinstance(s, Stage):
                inner = sc
                for d in s.dims:
                    inner = inner.inner(d.var, d.start, d.stop)
                out.append(_Placed(s, inner, free and s.rectangular and bool(s.dims)))
    walk(program.body, Scope(), True)
    return out


def _live_points(program) -> list[tuple[_Placed, dict, np.ndarray]]:
    """Each candidate stage with some dead point, its instances (`Scope.points`) and their
    live mask, found backwards from the outputs (module docstring)."""
    shapes = {b.name: b.shape for b in program.buffers}
    tables = tables_of(program)
    needed = {b.name: np.full(max(b.shape[0], 1) if b.shape else 1, b.role == "output")
              for b in program.buffers}
    found = []
    for placed in reversed(_placed(program)):
        pts = placed.scope.points(MAX_INSTANCES)
        n = placed.scope.count(pts) if pts is not None else 0
        xs = [x for op in placed.stage.body for x in op_accesses(op, placed.scope, shapes, tables)]
        live = np.ones(n, bool)
        if pts is not None and placed.candidate:
            live = _writes_needed([x for x in xs if x.write], pts, n, needed)
        for x in xs:
            if x.write:
                continue
            rows = _rows(x, pts, n) if pts is not None else None
            if rows is None:
                needed[x.region.buffer][:] = True
            else:
                inst, row = rows
                keep = live[inst]
                needed[x.region.buffer][row[keep]] = True
        if placed.candidate and pts is not None and not live.all():
            found.append((placed, pts, live))
    return found[::-1]


def _writes_needed(writes, pts: dict, n: int, needed: dict) -> np.ndarray:
    """Which of the `n` instances write a needed row (all of them where a write's rows cannot
    be listed)."""
    live = np.zeros(n, bool)
    for x in writes:
        rows = _rows(x, pts, n)
        if rows is None:
            return np.ones(n, bool)
        inst, row = rows
        hit = needed[x.region.buffer][row]
        live[inst[hit]] = True
    return live


def _rows(x, pts: dict, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(instance, row) pairs: the rows along the first axis that access `x` touches at each of
    the `n` instances `pts`, within the buffer (padding and rows out of range dropped); None
    where they cannot be listed (a table without data, too many entries)."""
    size = x.shape[0] if x.shape else 1
    if x.indirect is not None and x.indirect.buffer_axis(x.region) == 0:
        if x.indirect.table is None:
            return None
        rows, kept, _ = table_entries(x, pts, n)
        inst = np.broadcast_to(np.arange(n)[:, None], rows.shape)
    elif not x.shape:
        return np.arange(n), np.zeros(n, np.int64)
    else:
        width = x.region.size[0] or 1
        if n * width > MAX_INSTANCES:
            return None
        first = np.broadcast_to(evaluate_many(x.region.start[0], pts), (n,))
        rows = first[:, None] + x.region.stride[0] * np.arange(width)
        kept = np.ones(rows.shape, bool)
        inst = np.broadcast_to(np.arange(n)[:, None], rows.shape)
    kept = kept & (rows >= 0) & (rows < size)
    return inst[kept], rows[kept]


# -- the cut -----------------------------------------------------------------------------

def _cut(st: Stage, pts: dict, live: np.ndarray) -> Stage | None:
    """`st` with each dim after the first stopping one past its last live coordinate (over
    its instances `pts`), as a step function of the first dim; None where nothing is cut.  A
    stop that would change more than `MAX_STEPS` times stays; so does a product's innermost
    dim where another dim is cut (its rows fold with the outer ones' into one product per
    value of the first dim only while their sizes are constants but the outermost's)."""
    first = st.dims[0]
    x0 = pts[first.var]
    lo, hi = int(x0.min()), int(x0.max())
    stops = {}
    for d in st.dims[1:]:
        if not (d.start.is_const and d.stop.is_const):
            continue
        last = np.full(hi - lo + 1, d.start.const - 1, np.int64)   # one before the start: none live
        np.maximum.at(last, x0[live] - lo, pts[d.var][live])
        values = np.maximum(np.minimum(last + 1, d.stop.const), d.start.const)
        stop = None if (values >= d.stop.const).all() else _step_function(first.var, lo, values)
        if stop is not None:
            stops[d.var] = stop
    inner = st.dims[-1].var
    if len(stops) > 1 and inner in stops and any(isinstance(op, Gemm) for op in st.body):
        del stops[inner]
    if not stops:
        return None
    return replace(st, dims=tuple(Dim(d.var, d.start, stops.get(d.var, d.stop)) for d in st.dims))


def _step_function(var: str, lo: int, values: np.ndarray) -> Aff | None:
    """An index over `var` equal to `values[var - lo]` for `var` in `lo:lo + len(values)`:
    `values[0]` plus, at each change, the difference times `min(1, max(0, var - at + 1))`."""
    at = np.flatnonzero(values[1:] != values[:-1]) + 1
    if len(at) > MAX_STEPS:
        return None
    out = aff(int(values[0]))
    for k in at:
        out = out + int(values[k] - values[k - 1]) * amin(1, amax(0, aff(var) - (lo + int(k) - 1)))
    return out


def _worth(st: Stage, cut: Stage, pts: dict, itemsizes: dict, ctx) -> bool:
    """The policy's answer (`cut_to_live`) on the points of the box and of the polygon, a
    point's products and the bytes that move with it; the products of the polygon are one per
    value of its first dim."""
    inside = np.ones(len(next(iter(pts.values()))), bool)
    for d in cut.dims:
        inside &= pts[d.var] < evaluate_many(d.stop, pts)
    flops, moved, shared = point_costs(st.body, {d.var for d in st.dims}, itemsizes)
    products = len(np.unique(pts[st.dims[0].var])) if flops else 1
    facts = LiveFacts(len(inside), int(inside.sum()), flops, moved, products, shared)
    return ctx.target.policy.cut_to_live(facts, ctx.target.hardware)
