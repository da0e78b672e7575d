"""Pass 2, hoist: batch across a sequential loop what does not carry its recurrence.

A statement of a sequential loop whose instances at different steps are independent, and
that depends on no other statement of the loop in a way the move would reverse, can run
before the loop, batched over all steps: the loop variable becomes a parallel loop around it
(a batch dim after coarsening).  An RNN's input projection `x[t] @ W` becomes one GEMM over
all time steps instead of one per step, as cuDNN and `nn.LSTM` do.  Statements that read
hoisted results follow them out.  And a statement that does the same work at every step
(reading nothing the loop writes) runs once, before the loop.

Legality is the dependence engine's (`fractal.lower.dependences`, exact, with the loops around
held fixed): the statement's own instances never meet across steps, no statement before it
meets it at its step or an earlier one, no statement after it meets it at an earlier step.
Whether batching pays is the target's cost policy's (`CostPolicy.batch_across`).  In a sorted
ragged batch (a loop with an `active` hint) the batched statement runs only each step's live
points where the policy finds the polygon worth it (`CostPolicy.cut_to_live`): a packed input
projection.  A
statement that reads what an enclosing sequential loop wrote (a stacked RNN's projection of
the layer below) gives up a wavefront over the nest when batched: unless the policy finds it
clearly worth it, it stays, and the wavefront pass weighs the two schedules.

Before::                                      After::

    for s in 0:5 sequential host {              for s in 0:5 parallel host {
      stage xw() { t1[s] = gemm(x[s], w) }        stage xw() { t1[s] = gemm(x[s], w) }
      stage hu() { t2[s] = gemm(h[s], u) }      }
      ...                                       for s in 0:5 sequential host {
    }                                             stage hu() { t2[s] = gemm(h[s], u) } ...
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import islpy as isl
import numpy as np

from .bucket import live_nest
from .dependences import Access, accesses, between, deltas, only_zero, pairwise, tables_of
from .policy import BatchFacts, LiveFacts
from .rewrite import Path, ops_of, points as _points, rewrite_blocks, rewrite_stmts, var_ranges
from .workload import point_costs
from .tile_ir import Gemm, Loop, Scatter, Stage, TileProgram


def hoist(program: TileProgram, ctx) -> TileProgram:
    """Pass 2, hoist: statements of sequential loops that do not carry the recurrence run
    before them, batched over the steps, where the target's policy finds it worth it."""
    site = _Site(program, ctx)
    return rewrite_blocks(program, site.block)


def batch_recurrences(program: TileProgram, ctx, loop: Loop, path: Path) -> list:
    """`loop` (standing at `path` in `program`) with what hoisting leaves to the wavefront pass
    batched too: recurrent statements, wherever legal and otherwise worth it (the schedule the
    wavefront pass weighs against skewing the whole nest)."""
    site = _Site(program, ctx, batch_recurrent=True)
    return rewrite_stmts([loop], site.block, path=path)


@dataclass
class _Site:
    """What the pass knows of the program: shapes, sizes, tables, ranges, the target."""

    program: TileProgram
    ctx: object
    batch_recurrent: bool = False  # batch statements that read an enclosing loop's recurrence

    def __post_init__(self):
        p = self.program
        self.shapes = {b.name: b.shape for b in p.buffers}
        self.itemsizes = {b.name: b.dtype.itemsize for b in p.buffers}
        self.buffer_bytes = {b.name: int(np.prod(b.shape, dtype=np.int64)) * b.dtype.itemsize for b in p.buffers}
        self.tables = tables_of(p)
        self.ranges = var_ranges(p.body)

    def block(self, stmts, path: Path) -> list:
        out = []
        for s in stmts:
            if isinstance(s, Loop) and s.kind == "sequential":
                moved, s = self.hoist_from(s, path)
                out.extend(moved)
                if not s.body:  # everything moved out: no loop is left
                    continue
            out.append(s)
        return out

    def accesses(self, stmts, scope) -> list[Access]:
        return accesses(stmts, scope, self.shapes, self.tables)

    def hoist_from(self, loop: Loop, path: Path):
        """(statements moved out of `loop`, the rest of it)."""
        scope = path.scope()
        inner = scope.inner(loop.var, loop.start, loop.stop, loop.step)
        body = list(loop.body)
        # the differences of the loop variable between the statements' meeting instances
        found = pairwise(body, inner, (loop.var,), scope.vars, self.shapes, self.tables)
        moved, kept = [], list(range(len(body)))
        while True:
            pick = None
            for at, k in enumerate(kept):
                s, rest = body[k], [body[j] for j in kept]
                if self.invariant(s, at, rest, loop, scope, inner):
                    pick = (at, s)
                    break
                if self.batchable(k, kept, found, loop, s) and self.worth(s, rest, loop, path, inner):
                    pick = (at, Loop(loop.var, loop.start, loop.stop, loop.step, "parallel", loop.placement,
                                     (self.live(s, loop),)))
                    break
            if pick is None:
                return moved, replace(loop, body=tuple(body[j] for j in kept))
            moved.append(pick[1])
            del kept[pick[0]]

    # --- legality (the dependence engine) -------------------------------------------------

    def invariant(self, s, k: int, kept, loop: Loop, scope, inner) -> bool:
        """Does `s` do the same work at every step of a loop known to run (no index of it reads
        the loop variable, it reads nothing the loop writes, no other statement writes what it
        writes, none before it reads that)?  Then once, before the loop, does the same."""
        if not (loop.start.is_const and loop.stop.is_const and loop.start.const < loop.stop.const) or \
                not _invariant_bounds(s, loop.var):
            return False
        regions = [r for op in ops_of(s) for r in op.reads + op.writes]
        if not regions or any(loop.var in r.vars() for r in regions):
            return False
        xs = self.accesses([s], inner)
        reads, writes = [a for a in xs if not a.write], [a for a in xs if a.write]
        others = [t for j, t in enumerate(kept) if j != k]
        loop_writes = [a for a in self.accesses(kept, inner) if a.write]
        before_reads = [a for a in self.accesses(kept[:k], inner) if not a.write]
        other_writes = [a for a in self.accesses(others, inner) if a.write]
        fixed = scope.vars
        return not (_meet(reads, loop_writes, fixed) or _meet(other_writes, writes, fixed) or
                    _meet(before_reads, writes, fixed))

    @staticmethod
    def batchable(k: int, kept, found: dict, loop: Loop, s) -> bool:
        """May statement `k` run before the loop, batched over its steps?  Its instances at
        different steps never meet; statements before it never meet it at the same or an
        earlier step, statements after it never at an earlier step (the move puts all of it
        first).  (`found`: the `pairwise` differences of the loop variable.)"""
        if not _invariant_bounds(s, loop.var) or not any(loop.var in r.vars() for op in ops_of(s)
                                                         for r in op.reads + op.writes):
            return False  # (a statement ignoring the steps would only repeat its work: `invariant`)
        own = between(found, k, k, 1)
        if own is not None and not _only_zero_or_empty(own):
            return False
        for j in kept:
            d = between(found, j, k, 1) if j != k else None
            if d is not None and not _none_at_least(d, 0 if j < k else 1):
                return False
        return True

    def recurrent(self, s, kept, path: Path, inner) -> bool:
        """Does `s` read what the loop writes in an earlier iteration of a sequential loop around
        it (a stacked RNN's projection of the layer below)?  Then batching it across this loop
        gives up a wavefront over that nest."""
        seq = [st.var for st, _ in path.around if isinstance(st, Loop) and st.kind == "sequential"]
        if not seq:
            return False
        fixed = tuple(v for v in path.scope().vars if v not in seq)
        reads = [a for a in self.accesses([s], inner) if not a.write]
        writes = [a for a in self.accesses(kept, inner) if a.write]
        return not _only_zero_or_empty(deltas(writes, reads, tuple(seq), fixed), len(seq))

    def live(self, s, loop: Loop):
        """`s` batched over `loop`'s steps: cut to the live points of its hint where the policy
        finds it worth it (the hint holds of the batched steps too: dead points stay dead)."""
        if loop.active is None or self.ctx is None:
            return s
        cut = live_nest(s, loop.active, self.ranges)
        if cut == s:
            return s
        lo, hi = self.ranges.get(loop.var, (0, 0))
        steps = range(lo, hi + 1)
        box = len(steps) * _points(s, self.ranges)
        live = sum(_points(cut, {**self.ranges, **_ranges_at(cut, loop.var, v, self.ranges)}) for v in steps)
        flops, moved, _ = point_costs(list(ops_of(s)), _nest_vars(s) | {loop.var}, self.itemsizes)
        # (the shared weights' packing per step is left out here: hoist's cuts were weighed and
        # tested without it; `cut_dead` counts it)
        facts = LiveFacts(box, live, flops, moved, len(steps))
        return cut if self.ctx.target.policy.cut_to_live(facts, self.ctx.target.hardware) else s

    # --- is it worth it (the target's policy) ----------------------------------------------

    def worth(self, s, kept, loop: Loop, path: Path, inner) -> bool:
        if self.ctx is None:
            return True
        lo, hi = self.ranges.get(loop.var, (0, 0))
        pts = _points(s, self.ranges)
        step_bytes = pts * sum(_written_bytes(op, self.itemsizes) for op in ops_of(s))
        shares = any(isinstance(op, Gemm) and loop.var not in op.b.vars() for op in ops_of(s))
        recurrent = self.recurrent(s, kept, path, inner)
        enclosing = {st.var for st, _ in path.around if isinstance(st, Loop) and st.kind == "sequential"}
        layer = {op.b.buffer for t in (s, *kept) for op in ops_of(t)
                 if isinstance(op, Gemm) and enclosing & op.b.vars()} if recurrent else set()
        facts = BatchFacts(hi - lo + 1, pts, step_bytes, shares, recurrent and not self.batch_recurrent,
                           sum(self.buffer_bytes.get(n, 0) for n in layer))
        return self.ctx.target.policy.batch_across(facts, self.ctx.target.hardware)


def _written_bytes(op, itemsizes) -> int:
    """Bytes one point of `op` writes: a scatter's, the rows it puts (its source), not the
    region its index counts in."""
    regions = (op.src,) if isinstance(op, Scatter) else op.writes
    return sum(int(np.prod(r.shape, dtype=np.int64)) * itemsizes[r.buffer] for r in regions)


def _meet(xs, ys, fixed) -> bool:
    """Do instances of `xs` and `ys` (with equal `fixed` variables) touch a common element?"""
    return bool(xs) and bool(ys) and not deltas(xs, ys, (), fixed).is_empty()


def _only_zero_or_empty(d: isl.Set, n: int = 1) -> bool:
    return only_zero(d) if n != 1 else d.is_subset(isl.Set("{ [d] : d = 0 }"))


def _none_at_least(d: isl.Set, k: int) -> bool:
    """No difference in the 1-d set `d` is `k` or more."""
    return d.intersect(isl.Set(f"{{ [d] : d >= {k} }}")).is_empty()


def _nest_vars(stmt) -> set[str]:
    """The variables of a nest of parallel loops and of the stages inside."""
    if isinstance(stmt, Loop):
        return {stmt.var}.union(*(_nest_vars(s) for s in stmt.body))
    return {d.var for d in stmt.dims} if isinstance(stmt, Stage) else set()


def _ranges_at(stmt, var: str, value: int, ranges) -> dict:
    """The ranges of `stmt`'s nest variables with `var` (an enclosing loop's) at `value`."""
    return var_ranges([stmt], {**ranges, var: (value, value)})


def _invariant_bounds(stmt, var: str) -> bool:
    """Only parallel loops and stages whose bounds do not read `var` can become batches over it."""
    if isinstance(stmt, Stage):
        return all(var not in d.start.vars() | d.stop.vars() for d in stmt.dims)
    if isinstance(stmt, Loop) and stmt.kind == "parallel":
        return var not in stmt.start.vars() | stmt.stop.vars() and all(_invariant_bounds(s, var) for s in stmt.body)
    return False
