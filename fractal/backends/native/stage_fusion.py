"""Which consecutive stages the native backend runs as one point loop (`fused_run`).

The tile IR runs a stage over all its points before the next stage starts: the order that suits
a NumPy executor, and the one that lets each stage's products fold into one big BLAS call.  In
compiled code a run of stages over the same dims can instead go point by point, each point
through all the stages, so that what one stage hands the next stays in cache.  b2b_gemm is the
case in point: per block of 128 rows, `t = a @ b` (128 x 256) then `out = t @ c`; stage by
stage, `t` is 8 MiB written to memory and read back.

    stage matmul5(m in 0:64) device {                 // one loop (emitted by `source`):
      t[m, 0:128, 0:256] = gemm(a[m], b[0:64, 0:256]) //   parallel for m:
    }                                                 //     t[m] = a[m] @ b
    stage matmul8(m in 0:64) device {                 //     out[m] = t[m] @ c
      out[m, 0:128, 0:64] = gemm(t[m], c[0:256, 0:64])
    }

*Legal* (the dependence engine) when the stages have the same dims and every two of them meet
only at the same point: then each point's ops see what they saw stage by stage.  *Worth it* is
the target's cost policy (`CostPolicy.fuse_stages`, from the sizes measured here).
"""

from __future__ import annotations

import math

from fractal.lower.dependences import accesses, deltas, only_zero, tables_of
from fractal.lower.policy import StageFusionFacts
from fractal.lower.tile_ir import Stage, TileProgram
from fractal.lower.tile_isl import Scope as Where

from .point_major import shared_weight_rows


def fused_run(stmts, k: int, where: Where, program: TileProgram, target) -> int:
    """How many statements from `stmts[k]` on run as one point loop: the longest run of stages
    over `stmts[k]`'s dims that meet only point by point, when the target's policy takes it;
    else 1."""
    first = stmts[k]
    if target is None or not isinstance(first, Stage) or not first.dims:
        return 1
    shapes = {b.name: b.shape for b in program.buffers}
    tables = tables_of(program)
    names = tuple(d.var for d in first.dims)
    seen = accesses([first], where, shapes, tables)
    end = k + 1
    while end < len(stmts) and isinstance(stmts[end], Stage) and stmts[end].dims == first.dims:
        xs = accesses([stmts[end]], where, shapes, tables)
        if not only_zero(deltas(seen, xs, names, where.vars)):
            break   # (it reads what another point of an earlier stage wrote, or the other way)
        seen = seen + xs
        end += 1
    if end - k < 2:
        return 1
    facts = _facts(stmts[k:end], {b.name: b for b in program.buffers}, where)
    return end - k if facts is not None and target.policy.fuse_stages(facts, target.hardware) else 1


def _facts(stages, buffers: dict, where: Where) -> StageFusionFacts | None:
    """The sizes the policy weighs (points: of the dims' bounding box); None where the loops
    around run no iteration."""
    ranges = where.ranges()
    if ranges is None:
        return None
    points = math.prod(max(0, d.stop.bounds(ranges)[1] - d.start.bounds(ranges)[0]) for d in stages[0].dims)
    point_vars = {d.var for d in stages[0].dims}
    handed = 0
    for j, st in enumerate(stages):
        later = {r.buffer for s in stages[j + 1:] for op in s.body for r in op.reads}
        for op in st.body:
            for r in op.writes:
                if r.buffer in later and buffers[r.buffer].role == "temp" and r.vars() & point_vars:
                    handed += math.prod(r.shape) * buffers[r.buffer].dtype.itemsize
    return StageFusionFacts(points, handed, shared_weight_rows([op for st in stages for op in st.body], point_vars))
