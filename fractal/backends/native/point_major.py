"""Which sequential loops the native backend runs point-major (`point_major_box`).

The tile IR runs a sequential loop step by step, each step's stages over all their points: the
order that suits a NumPy executor (a few calls per step, however many points).  In compiled
code the other order can pay: each point runs all its steps in turn, its intermediates and
state staying in cache from step to step, while step-major sends every intermediate of every
point to memory and back each step.  FlashAttention is the case in point: per query block, a
loop over key blocks of 64 x 64 score tiles (16 KiB each); step-major, one step writes 4 MiB
of scores per intermediate.

    for r in 0:16 sequential host {            // point-major (emitted by `source`):
      stage s(b in 0:2, q in 0:16) device {    //   parallel for b, q:
        t[q + 16*b] = gemm(x[q + 16*b], k[r])  //     for r in 0:16:
        o[q + 16*b] = add(o[q + 16*b], t[...]) //       t[...] = ...; o[...] = ...
      }
    }

*Legal* (the dependence engine, `fractal.lower.dependences`) when the loop holds only stages
over the same dims and no element is touched by two points, one of them writing, at any
steps: then each point's ops see what they saw step-major (a point's own earlier steps and
earlier stages of its step, and what was there before the loop).  *Worth it* is the target's
cost policy (`CostPolicy.point_major`, from the sizes measured here).  A stage whose dims'
bounds change from step to step (a ragged batch's live sequences) runs, point-major, at the
points of the dims' bounding box its bounds admit at that step.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from fractal.lower.dependences import accesses, deltas, only_zero, tables_of
from fractal.lower.policy import PointMajorFacts
from fractal.lower.tile_affine import aff
from fractal.lower.tile_ir import Dim, Gemm, Loop, Stage, TileProgram
from fractal.lower.tile_isl import Scope as Where


class PointMajor(NamedTuple):
    box: tuple[Dim, ...]   # the points (each dim's bounds over the enclosing variables, or constants)
    block: int             # points of the innermost dim run together through the steps (1: one)


def point_major_box(loop: Loop, where: Where, program: TileProgram, target) -> PointMajor | None:
    """The box of points `loop` runs point-major over (each dim's bounds over the enclosing
    variables, or constants where a stage's bounds read the loop's variable) and the policy's
    block of them, or None where it runs step-major: not a loop of stages over the same dims,
    not legal, or not worth it."""
    if target is None or loop.kind != "sequential" or not loop.body or \
            not all(isinstance(s, Stage) and s.dims for s in loop.body):
        return None
    names = tuple(d.var for d in loop.body[0].dims)
    if any(tuple(d.var for d in s.dims) != names or not s.rectangular for s in loop.body):
        return None
    inner = where.inner(loop.var, loop.start, loop.stop, loop.step)
    ranges = inner.ranges()
    if ranges is None:
        return None
    box = _box(loop, ranges)
    shapes = {b.name: b.shape for b in program.buffers}
    xs = accesses([loop], where, shapes, tables_of(program))
    if not only_zero(deltas(xs, xs, names, where.vars)):
        return None   # (two points meet: their steps must interleave as written)
    facts = _facts(loop, box, ranges, loop_steps(loop, where), {b.name: b.dtype.itemsize for b in program.buffers})
    if not target.policy.point_major(facts, target.hardware):
        return None
    return PointMajor(box, max(1, target.policy.point_block(facts, target.hardware)))


def _box(loop: Loop, ranges: dict) -> tuple[Dim, ...]:
    """Each dim's bounds over every step: the stages' own where all agree and do not read the
    loop's variable, else the interval every stage's bounds lie in (constants)."""
    out = []
    for k, d in enumerate(loop.body[0].dims):
        bounds = {(s.dims[k].start, s.dims[k].stop) for s in loop.body}
        if len(bounds) == 1 and loop.var not in (d.start.vars() | d.stop.vars()):
            out.append(d)
            continue
        los, his = zip(*((s.dims[k].start.bounds(ranges)[0], s.dims[k].stop.bounds(ranges)[1]) for s in loop.body))
        out.append(Dim(d.var, aff(min(los)), aff(max(his))))
    return tuple(out)


def loop_steps(loop: Loop, where: Where) -> int:
    """The most steps `loop` runs (its bounds over the variables around it; at least 1)."""
    ranges = where.inner(loop.var, loop.start, loop.stop, loop.step).ranges()
    if ranges is None:
        return 1
    lo, hi = ranges[loop.var]
    return max(1, (hi - lo) // abs(loop.step) + 1)


def _facts(loop: Loop, box, ranges: dict, steps: int, itemsize: dict) -> PointMajorFacts:
    span = lambda lo, hi: max(0, hi - lo)
    points = math.prod(span(d.start.bounds(ranges)[0], d.stop.bounds(ranges)[1]) for d in box)
    point_vars = {d.var for d in box}
    ops = [op for stage in loop.body for op in stage.body]
    point_bytes = step_bytes = 0
    for r in {r for op in ops for r in op.reads + op.writes}:   # (a region several ops touch, once)
        nbytes = math.prod(r.shape) * itemsize[r.buffer]
        point_bytes += nbytes
        step_bytes += nbytes * (points if r.vars() & point_vars else 1)
    inner = box[-1].stop - box[-1].start
    return PointMajorFacts(steps, points, point_bytes, step_bytes, shared_weight_rows(ops, point_vars),
                           inner.const if inner.is_const else 0)


def shared_weight_rows(ops, point_vars) -> int | None:
    """The fewest rows of a point's products whose right operand the points share (run point
    by point, each is a product of that many rows; otherwise they stack); None: no such product."""
    rows = [op.a.shape[1] if op.trans_a else op.a.shape[0] for op in ops
            if isinstance(op, Gemm) and not point_vars <= op.b.vars()]
    return min(rows) if rows else None

