"""Pass 10, bucket: each step of a sorted ragged batch runs only its live sequences.

The lowering sorts a ragged batch by length and marks a sequential loop over its steps with
its live prefix (`active m < n(s)`, `fractal.lower.lower_ragged`).  After coarsening, the map
dim `m` of every stage in that loop is a batch dim `m in 0:B`; this pass shrinks it to
`m in 0:n(s)`, so step `s` computes `n(s)` rows instead of `B` (a packed sequence, as
PyTorch's `nn.LSTM` runs it, instead of a padded one).  Stages that hoisting or the wavefront
took out of such a loop lost the hint and keep the padded box (correct, just not shrunk).

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
from .tile_ir import Dim, Stage, TileProgram


def bucket(program: TileProgram, ctx=None) -> TileProgram:
    """Pass 10, bucket: stages in a step of a sorted ragged batch shrink to its live points."""
    ranges = var_ranges(program.body)

    def block(stmts, path: Path) -> list:
        active = tuple(lp.active for lp in path.loops if lp.active is not None)
        return [_shrunk(s, active, ranges, ctx) if isinstance(s, Stage) and active else s for s in stmts]

    return rewrite_blocks(program, block)


def _shrunk(st: Stage, active: tuple, ranges, ctx) -> Stage:
    """`st` with each dim `v` of a live point `... + w*v + ... < b` cut to `v < ceil(b / w)`
    (sound: the other terms are never negative, so `w*v <= point < b`)."""
    names = {d.var for d in st.dims}
    stops = {}
    for hint in active:
        terms = dict(hint.point.terms)
        if hint.bound.vars() & names or any(ranges.get(v, (0, 0))[0] < 0 for v in terms):
            continue
        for var, w in terms.items():
            cut = floordiv(hint.bound + (w - 1), w)
            stops[var] = amin(stops[var], cut) if var in stops else cut
    dims = []
    for d in st.dims:
        cut = stops.get(d.var)
        if cut is not None and d.start.is_const and d.stop.is_const and cut.bounds(ranges)[0] < d.stop.const:
            stop = cut if cut.bounds(ranges)[1] <= d.stop.const else amin(d.stop, cut)
            if ctx is not None:
                ctx.notes.append(f"bucket: {st.name} {d.var} in {d.start}:{stop}")
            d = Dim(d.var, d.start, stop)
        dims.append(d)
    return replace(st, dims=tuple(dims))
