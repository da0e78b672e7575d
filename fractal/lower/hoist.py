"""Pass 1b, hoist: batch across a sequential loop what does not depend on its recurrence.

(And move out what does not depend on the loop at all: a statement that does the same
work at every step, reading nothing the loop writes, runs once before it.)

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

from dataclasses import dataclass, replace

import numpy as np

from .dependence import row_distances
from .rewrite import accesses as _accesses, ops_of, points as _points, var_ranges
from .tile_ir import Gemm, If, Loop, Stage, TileProgram


@dataclass(frozen=True)
class _Policy:
    """When reading rows of a buffer the loop also writes (a stacked RNN's previous layer) is
    worth batching across time, giving up the wavefront over (layer, step): when a step has
    at least `min_rows` rows (GEMMs that big run near the BLAS peak: 8 aligned tiles of the
    hardware record), or when the per-layer weights of the nest exceed `cache_bytes` (half the
    last cache level: a wavefront step reads every layer's weights, layer by layer only one
    layer's stay cached: on a CPU that re-streaming costs more than the wavefront saves)."""

    min_rows: int
    cache_bytes: int
    buffer_bytes: dict  # whole buffers
    step_bytes: int  # the results of one step that fill a cache tile (see `_worth_batching`)
    itemsizes: dict  # bytes per element of each buffer


def hoist(program: TileProgram, ctx=None) -> TileProgram:
    policy = None
    if ctx is not None:
        hw = ctx.hardware
        last_cache = hw.levels[-2] if len(hw.levels) > 1 else hw.levels[-1]
        policy = _Policy(8 * hw.tile_align, last_cache.size_bytes // 2,
                         {b.name: int(np.prod(b.shape, dtype=np.int64)) * b.dtype.itemsize for b in program.buffers},
                         hw.level(hw.tile_level).size_bytes // 2, {b.name: b.dtype.itemsize for b in program.buffers})
    ranges = var_ranges(program.body)
    return replace(program, body=tuple(_block(program.body, (), ranges, policy)))


def _block(stmts, enclosing, ranges, policy) -> list:
    out = []
    for s in stmts:
        if isinstance(s, Loop):
            inner = enclosing + ((s.var,) if s.kind == "sequential" else ())
            s = replace(s, body=tuple(_block(s.body, inner, ranges, policy)))
            if s.kind == "sequential":
                moved, s = _hoist_from(s, enclosing, ranges, policy)
                out.extend(moved)
            out.append(s)
        elif isinstance(s, If):
            out.append(replace(s, then=tuple(_block(s.then, enclosing, ranges, policy)),
                               orelse=tuple(_block(s.orelse, enclosing, ranges, policy))))
        else:
            out.append(s)
    return out


def _hoist_from(loop: Loop, enclosing, ranges, policy):
    """(statements moved out of `loop` as parallel loops over its variable, the rest of it)."""
    moved, kept = [], list(loop.body)
    changed = True
    while changed:
        changed = False
        written = set().union(*(_accesses(s)[1] for s in kept)) if kept else set()
        for k, s in enumerate(kept):
            reads, writes = _accesses(s)
            if _loop_invariant(s, k, kept, loop, written):
                moved.append(s)  # the same work every step: once, before the loop
                del kept[k]
                changed = True
                break
            if not _invariant_bounds(s, loop.var) or not _writes_per_step(s, loop.var):
                continue
            if reads & written and not _reads_other_rows(s, kept, enclosing, ranges, policy):
                continue
            if any(_accesses(t)[0] & writes for t in kept[:k]):
                continue  # an earlier statement reads what it writes: keep the order
            if not _worth_batching(s, loop, ranges, policy):
                continue
            moved.append(Loop(loop.var, loop.start, loop.stop, loop.step, "parallel", loop.placement, (s,)))
            del kept[k]
            changed = True
            break
    return moved, replace(loop, body=tuple(kept))


def _loop_invariant(stmt, k: int, kept, loop: Loop, written: set) -> bool:
    """Does `stmt` do the same thing every step (no index, bound or region reads the loop
    variable, it reads nothing the loop writes, no other statement writes what it writes and
    none before it reads that), in a loop known to run?  E.g. a gather of the queries inside
    attention's loop over key blocks."""
    if not (loop.start.is_const and loop.stop.is_const and loop.start.const < loop.stop.const) or \
            not _invariant_bounds(stmt, loop.var):
        return False
    regions = [r for op in ops_of(stmt) for r in op.reads + op.writes]
    if not regions or any(loop.var in a.vars() for r in regions for a in r.start):
        return False
    reads, writes = _accesses(stmt)
    others = [t for j, t in enumerate(kept) if j != k]
    return not (reads & written) and not any(_accesses(t)[1] & writes for t in others) and \
        not any(_accesses(t)[0] & writes for t in kept[:k])


def _reads_other_rows(stmt, kept, enclosing, ranges, policy) -> bool:
    """Does `stmt` read only rows that no statement of the loop writes in the same iteration
    of the enclosing loops (exact row distances), and is batching it worth it (`_Policy`)?"""
    writes = [r for t in kept for op in ops_of(t) for r in op.writes]
    if policy is None or (_points(stmt, ranges) < policy.min_rows and
                          _layer_weights(stmt, kept, enclosing, policy) <= policy.cache_bytes and
                          not _carried_further_out(stmt, kept, writes, enclosing, ranges)):
        return False
    for op in ops_of(stmt):
        for r in op.reads:
            for w in writes:
                if w.buffer == r.buffer:
                    sols = row_distances(w, r, ranges, fixed=set(enclosing))
                    if sols is None or sols:
                        return False
    return True


def _carried_further_out(stmt, kept, writes, enclosing, ranges) -> bool:
    """Does batching `stmt` across this loop leave a two-loop nest for the wavefront anyway?
    The wavefront skews the innermost pair of sequential loops; `stmt` (whose reads the exact
    check in `_reads_other_rows` shows are written in other iterations of enclosing loops)
    only stands in its way inside that pair.  So: when the loop's body keeps a sequential loop
    (the pair is this loop and that one: `stmt` leaving makes the nest perfect), or when
    `stmt` reads nothing written within one iteration of the grandparent loop (a grid RNN's
    layer below, read inside its row and column loops: it leaves the parent loop next)."""
    if any(isinstance(t, Loop) and t.kind == "sequential" for t in kept):
        return True
    if len(enclosing) < 2:
        return False
    for op in ops_of(stmt):
        for r in op.reads:
            for w in writes:
                if w.buffer == r.buffer and row_distances(w, r, ranges, fixed=set(enclosing[:-1])) != []:
                    return False
    return True


def _worth_batching(stmt, loop: Loop, ranges, policy) -> bool:
    """Batching across time pays where it makes GEMMs bigger (a weight shared by the steps:
    their rows fold into one GEMM's M) or steps fewer and larger.  A step whose results
    already fill a tile of the cache (`policy.step_bytes`) gains neither when its GEMMs
    multiply per-step operands (attention's score blocks): batched, its results for all
    steps (beyond `policy.cache_bytes`) only go through memory instead of staying in cache."""
    if policy is None:
        return True
    if any(isinstance(op, Gemm) and loop.var not in op.b.vars() for op in ops_of(stmt)):
        return True  # a weight shared by the steps: their rows become one bigger GEMM
    per_step = _points(stmt, ranges) * sum(int(np.prod(r.shape, dtype=np.int64)) * policy.itemsizes[r.buffer]
                                           for op in ops_of(stmt) for r in op.writes)
    lo, hi = ranges.get(loop.var, (0, 0))
    return per_step < policy.step_bytes or per_step * (hi - lo + 1) <= policy.cache_bytes


def _layer_weights(stmt, kept, enclosing, policy) -> int:
    """Bytes of the GEMM right operands that differ from one enclosing step to the next
    (per-layer weights), whole buffers."""
    names = {op.b.buffer for t in (stmt, *kept) for op in ops_of(t)
             if isinstance(op, Gemm) and any(set(enclosing) & a.vars() for a in op.b.start)}
    return sum(policy.buffer_bytes.get(n, 0) for n in names)


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
