"""Pass 1b, hoist: batch across a sequential loop what does not depend on its recurrence.

A statement of a sequential loop whose reads touch nothing the loop writes (an RNN's input
projection `x[t] @ W` reads only the inputs) does not carry the loop's dependence: its
steps form a parallel set.  It moves before the loop, the loop variable becoming a parallel
loop around it (a batch dim after coarsening): one GEMM over all time steps instead of one
per step, as cuDNN and `nn.LSTM` do.  Statements that read hoisted results follow them out.
Moving a write earlier relies on the lowering's write-once buffers (no other statement of
the loop writes the rows it writes), which is why every write must name the loop variable.

Before::                                      After::

    for s in 0:5 sequential host {              for s in 0:5 parallel host {
      stage xw() { t1[s] = gemm(x[s], w) }        stage xw() { t1[s] = gemm(x[s], w) }
      stage hu() { t2[s] = gemm(h[s], u) }      }
      ...                                       for s in 0:5 sequential host {
    }                                             stage hu() { t2[s] = gemm(h[s], u) } ...
"""

from __future__ import annotations

from dataclasses import replace

from .rewrite import ops_of
from .tile_ir import If, Loop, Stage, TileProgram


def hoist(program: TileProgram, ctx=None) -> TileProgram:
    return replace(program, body=tuple(_block(program.body)))


def _block(stmts) -> list:
    out = []
    for s in stmts:
        if isinstance(s, Loop):
            s = replace(s, body=tuple(_block(s.body)))
            if s.kind == "sequential":
                moved, s = _hoist_from(s)
                out.extend(moved)
            out.append(s)
        elif isinstance(s, If):
            out.append(replace(s, then=tuple(_block(s.then)), orelse=tuple(_block(s.orelse))))
        else:
            out.append(s)
    return out


def _hoist_from(loop: Loop):
    """(statements moved out of `loop` as parallel loops over its variable, the rest of it)."""
    moved, kept = [], list(loop.body)
    changed = True
    while changed:
        changed = False
        written = set().union(*(_accesses(s)[1] for s in kept)) if kept else set()
        for k, s in enumerate(kept):
            reads, writes = _accesses(s)
            if reads & written or not _invariant_bounds(s, loop.var) or not _writes_per_step(s, loop.var):
                continue
            if any(_accesses(t)[0] & writes for t in kept[:k]):
                continue  # an earlier statement reads what it writes: keep the order
            moved.append(Loop(loop.var, loop.start, loop.stop, loop.step, "parallel", loop.placement, (s,)))
            del kept[k]
            changed = True
            break
    return moved, replace(loop, body=tuple(kept))


def _accesses(stmt) -> tuple[set, set]:
    reads, writes = set(), set()
    for op in ops_of(stmt):
        reads.update(r.buffer for r in op.reads)
        writes.update(r.buffer for r in op.writes)
    return reads, writes


def _invariant_bounds(stmt, var: str) -> bool:
    """Only parallel loops and stages whose bounds do not read `var` can become batches over it."""
    if isinstance(stmt, Stage):
        return all(var not in d.start.vars() | d.stop.vars() for d in stmt.dims)
    if isinstance(stmt, Loop) and stmt.kind == "parallel":
        return var not in stmt.start.vars() | stmt.stop.vars() and all(_invariant_bounds(s, var) for s in stmt.body)
    return False


def _writes_per_step(stmt, var: str) -> bool:
    """Every write names its step (no two steps write the same place)."""
    return all(var in r.start[0].vars() for op in ops_of(stmt) for r in op.writes)
