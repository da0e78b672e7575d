"""Pass 10, bucket: each step of a sorted ragged batch runs only its live sequences.

The lowering sorts a ragged batch by length and marks a sequential loop over its steps with
its live prefix (`active m < n(s)`, `fractal.lower.lower_ragged`).  After coarsening, the map
dim `m` of every stage in that loop is a batch dim `m in 0:B`; this pass shrinks it to
`m in 0:n(s)`, so step `s` computes `n(s)` rows instead of `B` (a packed sequence, as
PyTorch's `nn.LSTM` runs it, instead of a padded one).  Statements that hoisting batched out
of such a loop were cut to their live points there (`live_nest`, where the target's policy
finds it worth it); the wavefront's keep the padded box (correct, just not shrunk).

Before::                                            After::

    for s in 0:5 sequential host active m < e {        for s in 0:5 sequential host active m < e {
      stage cell(m in 0:4) device { ... }                stage cell(m in 0:e) device { ... }
    }                                                  }

with `e = min(1, max(0, -s + 2)) + 2*min(1, max(0, -s + 3)) + 1` for lengths `[5, 3, 3, 2]`.
"""

from __future__ import annotations

from dataclasses import replace

from .rewrite import Path, rewrite_blocks, var_ranges
from .tile_affine import amin, floordiv
from .tile_ir import Dim, Loop, Stage, TileProgram


def bucket(program: TileProgram, ctx=None) -> TileProgram:
    """Pass 10, bucket: stages in a step of a sorted ragged batch shrink to its live points."""
    ranges = var_ranges(program.body)

    def block(stmts, path: Path) -> list:
        active = tuple(lp.active for lp in path.loops if lp.active is not None)
        return [_shrunk(s, active, ranges, ctx) if isinstance(s, Stage) and active else s for s in stmts]

    return rewrite_blocks(program, block)


def _shrunk(st: Stage, active: tuple, ranges, ctx) -> Stage:
    """`st` with its dims cut to the live points of `active` (`live_stops`)."""
    stops = live_stops(active, {d.var for d in st.dims}, ranges)
    dims = []
    for d in st.dims:
        stop = _cut(d.var, d.start, d.stop, stops, ranges)
        if stop is not None:
            if ctx is not None:
                ctx.notes.append(f"bucket: {st.name} {d.var} in {d.start}:{stop}")
            d = Dim(d.var, d.start, stop)
        dims.append(d)
    return replace(st, dims=tuple(dims))


def live_stops(active: tuple, names: set, ranges) -> dict:
    """For each variable `v` of a live point `... + w*v + ... < b` (one of the `active` hints),
    the stop `ceil(b / w)` past which no point is live (sound: the other terms are never
    negative, so `w*v <= point < b`); hints whose bound reads one of `names` (the variables
    being cut) give none."""
    stops = {}
    for hint in active:
        terms = dict(hint.point.terms)
        if hint.bound.vars() & names or any(ranges.get(v, (0, 0))[0] < 0 for v in terms):
            continue
        for var, w in terms.items():
            cut = floordiv(hint.bound + (w - 1), w)
            stops[var] = amin(stops[var], cut) if var in stops else cut
    return stops


def _cut(var: str, start, stop, stops: dict, ranges):
    """The stop of `var in start:stop` cut to `stops[var]`, or None where that cuts nothing."""
    cut = stops.get(var)
    if cut is None or not (start.is_const and stop.is_const) or cut.bounds(ranges)[0] >= stop.const:
        return None
    return cut if cut.bounds(ranges)[1] <= stop.const else amin(stop, cut)


def live_nest(stmt, active, ranges):
    """`stmt` (a nest of parallel loops around stages, hoisted out of a sequential loop with the
    `active` hint) with its loops cut to the live points: the points the hint calls dead are
    dead wherever they run."""
    if not isinstance(stmt, Loop) or stmt.kind != "parallel":
        return stmt
    body = tuple(live_nest(s, active, ranges) for s in stmt.body)
    stop = _cut(stmt.var, stmt.start, stmt.stop, live_stops((active,), set(), ranges), ranges)
    return replace(stmt, stop=stop if stop is not None else stmt.stop, body=body)
