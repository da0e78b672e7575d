"""Pass 1c, wavefront: skew a nest of two sequential loops onto its anti-diagonals.

A stacked RNN is `for layer { for step { cells } }` where cell (l, t) needs (l, t - 1) and
(l - 1, t): no two cells of one anti-diagonal `w = l + t` depend on each other.  When every
dependence between the nest's statements has a distance (dl, dt) with `dl + dt >= 1`
(checked here on the tile IR itself: for each write/read pair of a buffer, the instance
distances that make their rows equal), the nest becomes one sequential loop over the
`L + T - 1` diagonals with a parallel loop over the layers active on each: the boundary
("control") regions of the paper are the `max`/`min` bounds.  Coarsening then batches the
layers of a diagonal and the batch into one stage: one batched GEMM per diagonal.

Before::                                     After::

    for l in 0:2 sequential host {              for w in 0:6 sequential host {
      for t in 0:5 sequential host {              for l in max(0, w - 4):min(2, w + 1) parallel host {
        for m in 0:3 parallel host {                for m in 0:3 parallel host {
          stage cell() { h[l, t + 1] = ... }          stage cell() { h[l, w - l + 1] = ... }
"""

from __future__ import annotations

from dataclasses import replace

from .dependence import row_distances
from .rewrite import ops_of, substitute, var_ranges
from .tile_affine import aff, amax, amin
from .tile_ir import If, Loop, TileProgram


def wavefront(program: TileProgram, ctx=None) -> TileProgram:
    ranges = var_ranges(program.body)

    def block(stmts):
        out = []
        for s in stmts:
            if isinstance(s, Loop):
                s = replace(s, body=tuple(block(s.body)))
                skewed = _skew(s, ranges)
                if skewed is not None:
                    if ctx is not None:
                        ctx.notes.append(f"wavefront: {s.var} x {s.body[0].var} -> {skewed.var}")
                    s = skewed
            elif isinstance(s, If):
                s = replace(s, then=tuple(block(s.then)), orelse=tuple(block(s.orelse)))
            out.append(s)
        return out

    return replace(program, body=tuple(block(program.body)))


def _const_loop(s) -> bool:
    return isinstance(s, Loop) and s.kind == "sequential" and s.step == 1 and s.start.is_const and s.stop.is_const


def _skew(outer: Loop, ranges):
    if not (_const_loop(outer) and len(outer.body) == 1 and _const_loop(outer.body[0])):
        return None
    inner = outer.body[0]
    (a, b), (c, d) = (outer.start.const, outer.stop.const), (inner.start.const, inner.stop.const)
    if b - a < 2 or d - c < 2 or not _legal(inner.body, outer.var, inner.var, ranges):
        return None
    w = f"{outer.var}_{inner.var}"
    body = []
    for st in inner.body:
        moved = substitute(st, {inner.var: aff(w) - aff(outer.var)})
        body.append(Loop(outer.var, amax(a, aff(w) - (d - 1)), amin(b, aff(w) - c + 1), 1, "parallel", outer.placement,
                         (moved,)))
    return Loop(w, a + c, b + d - 1, 1, "sequential", outer.placement, tuple(body))


def _legal(stmts, lv: str, sv: str, ranges) -> bool:
    """Every dependence among `stmts` (instances of the (lv, sv) nest) has dl + ds >= 1."""
    accesses = []  # (region, is_write)
    for st in stmts:
        for op in ops_of(st):
            accesses += [(r, False) for r in op.reads] + [(r, True) for r in op.writes]
    written = {r.buffer for r, w in accesses if w}
    carried = False
    for i, (x, xw) in enumerate(accesses):
        if not xw:
            continue
        for j, (y, yw) in enumerate(accesses):
            if y.buffer != x.buffer or (yw and j <= i):
                continue
            sols = row_distances(x, y, ranges)
            if sols is None:
                return False
            for delta in sols:  # instance of y minus instance of x
                dl, ds = delta.get(lv), delta.get(sv)
                if dl is None or ds is None:
                    return False
                if (dl, ds) == (0, 0):
                    continue
                forward = (dl, ds) > (0, 0)
                if (dl + ds if forward else -(dl + ds)) < 1:
                    return False
                carried = True
    return carried and bool(written)
