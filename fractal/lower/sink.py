"""Pass 1d, sink: a parallel nest that reads each step's result of a sequential loop runs inside it.

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

Legal when the nest reads, of what the loop writes, only the rows written at the same step
for the same point (exact row distances, all zero): so a point of the nest is live in a
step of a sorted ragged batch exactly when the loop's point it reads is, and the bucket pass
may shrink it with the loop's `active` hint; when the nest writes nothing the loop or the
statements it moves past touch, and reads nothing those statements write.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .dependence import row_distances
from .rewrite import accesses as _accesses, ops_of, points, stages_of, substitute, var_ranges
from .tile_affine import aff
from .tile_ir import Gemm, If, Loop, Stage, TileProgram

# A run of a stage costs the host about this long (a few NumPy calls): sinking adds one per
# step, and pays only where it saves more than that of streaming the step's results from DRAM.
STAGE_RUN_SECONDS = 5e-6


@dataclass(frozen=True)
class _Policy:
    """Sink when the results the nest reads, over all steps, do not stay in the last cache
    level (`cache_bytes`: half of it) and one step's take DRAM longer than a stage run
    (`step_bytes`: the DRAM bandwidth times `STAGE_RUN_SECONDS`, 50 KB at 10 GB/s)."""

    cache_bytes: int
    step_bytes: int
    itemsizes: dict


def sink(program: TileProgram, ctx=None) -> TileProgram:
    if ctx is None:
        return program  # a cost decision: without a hardware record, leave the batch as it is
    hw = ctx.hardware
    last_cache = hw.levels[-2] if len(hw.levels) > 1 else hw.levels[-1]
    policy = _Policy(last_cache.size_bytes // 2, int(hw.levels[-1].bandwidth_gbs * 1e9 * STAGE_RUN_SECONDS),
                     {b.name: b.dtype.itemsize for b in program.buffers})
    ranges = var_ranges(program.body)
    return replace(program, body=tuple(_block(program.body, ranges, policy, ctx)))


def _block(stmts, ranges, policy, ctx) -> list:
    out = []
    for s in stmts:
        if isinstance(s, Loop):
            s = replace(s, body=tuple(_block(s.body, ranges, policy, ctx)))
        elif isinstance(s, If):
            s = replace(s, then=tuple(_block(s.then, ranges, policy, ctx)),
                        orelse=tuple(_block(s.orelse, ranges, policy, ctx)))
        out.append(s)
    i = 0
    while i < len(out):
        loop = out[i]
        if isinstance(loop, Loop) and loop.kind == "sequential" and loop.step == 1:
            j = i + 1
            while j < len(out):
                moved = _sunk(loop, out[j], out[i + 1:j], ranges, policy)
                if moved is None:
                    j += 1
                    continue
                ctx.notes.append(f"sink: {', '.join(st.name for st in stages_of(out[j]))} into the loop over {loop.var}")
                loop = out[i] = replace(loop, body=loop.body + moved)
                del out[j]
        i += 1
    return out


def _sunk(loop: Loop, nest, between, ranges, policy):
    """`nest` rewritten to run inside `loop` (its loop over the same steps dropped, that
    variable replaced by the loop's), or None where that is not legal or not worth it."""
    chain = _parallel_chain(nest)
    if chain is None:
        return None
    for lp in chain:  # the nest's loop over the same steps (tried in turn where several could be)
        if (lp.start, lp.stop, lp.step) == (loop.start, loop.stop, 1):
            moved = _sunk_over(lp.var, loop, nest, chain, between, ranges, policy)
            if moved is not None:
                return moved
    return None


def _sunk_over(var: str, loop: Loop, nest, chain, between, ranges, policy):
    """`nest` inside `loop` with its loop over `var` taking the loop's place, or None."""
    if any(var in lp.start.vars() | lp.stop.vars() for lp in chain) or \
            any(var in d.start.vars() | d.stop.vars() for st in stages_of(nest) for d in st.dims):
        return None  # bounds over the steps: not one nest per step
    moved = tuple(substitute(t, {var: aff(loop.var)}) for t in _without(nest, var))
    reads, writes = _accesses_all(moved)
    loop_reads, loop_writes = _accesses(loop)
    if writes & (loop_reads | loop_writes) or not reads & loop_writes:
        return None
    for t in between:
        t_reads, t_writes = _accesses(t)
        if reads & t_writes or writes & (t_reads | t_writes):
            return None
    written = [r for op in ops_of(loop) for r in op.writes]
    step_bytes = 0
    ops = [op for t in moved for op in ops_of(t)]
    for op in ops:
        for r in op.reads:
            if r.buffer not in loop_writes:
                continue
            for w in written:
                if w.buffer == r.buffer:
                    sols = row_distances(w, r, ranges)
                    if sols is None or any(any(d != 0 for d in s.values() if d is not None) for s in sols):
                        return None  # rows of another step or point: not provably the same live point
            step_bytes += int(np.prod(r.shape, dtype=np.int64)) * policy.itemsizes[r.buffer]
    if any(isinstance(op, Gemm) and not all(loop.var in _vars(x) for x in (op.a, op.b)) for op in ops):
        return None  # an operand shared by the steps: batched, their rows make one bigger GEMM
    step_bytes *= points(moved[0], ranges)
    lo, hi = ranges.get(loop.var, (0, 0))
    if step_bytes < policy.step_bytes or step_bytes * (hi - lo + 1) <= policy.cache_bytes:
        return None
    return moved


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


def _vars(region) -> set:
    return set().union(*(s.vars() for s in region.start))


def _accesses_all(stmts) -> tuple[set, set]:
    both = [_accesses(t) for t in stmts]
    return set().union(*(r for r, _ in both)), set().union(*(w for _, w in both))
