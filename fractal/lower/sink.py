"""Pass 4, sink: a parallel nest that reads each step's result of a sequential loop runs inside it.

The reverse of hoisting.  A map over a scan's states (retention's `o[t] = q[t] @ S[t]`)
lowers to a parallel nest after the loop, batched over all steps.  When the states are big
and the map's GEMMs share no operand across the steps, batching buys no bigger GEMM, and
reading every step's state back after the loop streams them all from DRAM (retention: 256
steps x 32 states of 16 KiB = 134 MB).  Inside the loop each step's state is read right
after it is written, from cache.  The loop variable takes the nest's place of the step
variable, the other loops stay.

Before::                                           After::

    for s in 0:256 sequential host {                  for s in 0:256 sequential host {
      for m in 0:32 parallel host {                     for m in 0:32 parallel host {
        stage step() { st[32*s + m + 32] = ... }          stage step() { st[32*s + m + 32] = ... }
      }                                                 }
    }                                                   for m in 0:32 parallel host {
    for m in 0:32 parallel host {                         stage out() { o[m + 32*s] = gemm(q[m + 32*s], st[32*s + m + 32]) }
      for t in 0:256 parallel host {                    }
        stage out() { o[m + 32*t] = gemm(q[m + 32*t], st[32*t + m + 32]) }
      }                                               }
    }

Legal (the dependence engine, exact): the nest meets no statement it moves past, and no
instance of the loop at a later step than the nest's (the move puts the nest's step right
after the loop's).  And the nest reads, of what the loop writes, only what the same point
wrote at the same step (all differences zero): so a point of the nest is live in a step of a
sorted ragged batch exactly when the loop's point it reads is, and the bucket pass may shrink
it with the loop's `active` hint.  Worth it: the target's policy (`CostPolicy.sink_into`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import islpy as isl
import numpy as np

from .dependences import accesses, deltas, only_zero, tables_of
from .policy import SinkFacts
from .rewrite import Path, accesses as _accesses, ops_of, points, rewrite_blocks, stages_of, substitute
from .rewrite import var_ranges
from .tile_affine import aff
from .tile_ir import Gemm, Loop, Stage, TileProgram


def sink(program: TileProgram, ctx) -> TileProgram:
    """Pass 4, sink: a parallel nest reading each step's results of a sequential loop runs
    inside it, where legal and the target's policy finds it worth it."""
    if ctx is None:
        return program  # a cost decision: without a target, leave the batch as it is
    site = _Site(program, ctx)
    return rewrite_blocks(program, site.block)


@dataclass
class _Site:
    program: TileProgram
    ctx: object

    def __post_init__(self):
        p = self.program
        self.shapes = {b.name: b.shape for b in p.buffers}
        self.itemsizes = {b.name: b.dtype.itemsize for b in p.buffers}
        self.tables = tables_of(p)
        self.ranges = var_ranges(p.body)

    def block(self, out, path: Path) -> list:
        out = list(out)
        i = 0
        while i < len(out):
            loop = out[i]
            if isinstance(loop, Loop) and loop.kind == "sequential" and loop.step == 1:
                j = i + 1
                while j < len(out):
                    moved = self.sunk(loop, out[j], out[i + 1:j], path)
                    if moved is None:
                        j += 1
                        continue
                    self.ctx.notes.append(f"sink: {', '.join(st.name for st in stages_of(out[j]))} "
                                          f"into the loop over {loop.var}")
                    loop = out[i] = replace(loop, body=loop.body + moved)
                    del out[j]
            i += 1
        return out

    def sunk(self, loop: Loop, nest, between, path: Path):
        """`nest` rewritten to run inside `loop` (its loop over the same steps dropped, that
        variable replaced by the loop's), or None where that is not legal or not worth it."""
        chain = _parallel_chain(nest)
        if chain is None:
            return None
        for lp in chain:  # the nest's loop over the same steps (tried in turn where several could be)
            if (lp.start, lp.stop, lp.step) == (loop.start, loop.stop, 1):
                moved = self.sunk_over(lp.var, loop, nest, chain, between, path)
                if moved is not None:
                    return moved
        return None

    def sunk_over(self, var: str, loop: Loop, nest, chain, between, path: Path):
        if any(var in lp.start.vars() | lp.stop.vars() for lp in chain) or \
                any(var in d.start.vars() | d.stop.vars() for st in stages_of(nest) for d in st.dims):
            return None  # bounds over the steps: not one nest per step
        moved = tuple(substitute(t, {var: aff(loop.var)}) for t in _without(nest, var))
        reads = set().union(*(_accesses(t)[0] for t in moved))
        loop_writes = _accesses(loop)[1]
        if not reads & loop_writes:
            return None  # it reads nothing of the loop: nothing to gain
        ops = [op for t in moved for op in ops_of(t)]
        if any(isinstance(op, Gemm) and not all(loop.var in x.vars() for x in (op.a, op.b)) for op in ops):
            return None  # an operand shared by the steps: batched, their rows make one bigger GEMM
        scope = path.scope()
        inner = scope.inner(loop.var, loop.start, loop.stop, loop.step)
        xs = accesses(moved, inner, self.shapes, self.tables)
        if between and not deltas(accesses(between, scope, self.shapes, self.tables), xs, (), scope.vars).is_empty():
            return None  # it would move past a statement it meets
        ys = accesses(loop.body, inner, self.shapes, self.tables)
        if not deltas(ys, xs, (loop.var,), scope.vars).intersect(isl.Set("{ [d] : d < 0 }")).is_empty():
            return None  # the loop meets it at a later step
        if not self.same_points(ys, xs, scope.vars):
            return None
        step_bytes = sum(int(np.prod(r.shape, dtype=np.int64)) * self.itemsizes[r.buffer]
                         for op in ops for r in op.reads if r.buffer in loop_writes) * points(moved[0], self.ranges)
        lo, hi = self.ranges.get(loop.var, (0, 0))
        if not self.ctx.target.policy.sink_into(SinkFacts(hi - lo + 1, step_bytes), self.ctx.target.hardware):
            return None
        return moved

    def same_points(self, ys, xs, fixed) -> bool:
        """Does the nest read, of what the loop writes, only what the same point wrote at the
        same step (the variables both name differ by zero)?"""
        writes = [a for a in ys if a.write]
        for x in (a for a in xs if not a.write):
            for w in (a for a in writes if a.region.buffer == x.region.buffer):
                common = tuple(v for v in w.scope.vars if v in x.scope.vars and v not in fixed)
                if not only_zero(deltas([w], [x], common, fixed)):
                    return False
        return True


def _parallel_chain(stmt):
    """The parallel loops of a perfect nest around stages (outermost first), or None."""
    chain = []
    while isinstance(stmt, Loop) and stmt.kind == "parallel":
        chain.append(stmt)
        if len(stmt.body) == 1 and isinstance(stmt.body[0], Loop):
            stmt = stmt.body[0]
        elif all(isinstance(s, Stage) for s in stmt.body):
            return chain
        else:
            return None
    return None


def _without(stmt, var: str) -> tuple:
    """The nest with its loop over `var` replaced by its body (statements)."""
    if stmt.var == var:
        return stmt.body
    return (replace(stmt, body=tuple(t for s in stmt.body for t in (_without(s, var) if isinstance(s, Loop)
                                                                      else (s,)))),)
