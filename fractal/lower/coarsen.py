"""Passes 5-9, graph coarsening: fewer, bigger stages.

1. Batch (pass 5): the parallel loops directly around a stage become the stage's dims, so each tile
   op runs once for all points of the parallel set (one batched GEMM for a batch of cells);
   a dim that no region mentions would only repeat the same work, and is dropped.
2. Merge (pass 6): consecutive stages over the same dims become one when every buffer they share is
   accessed point-locally (the same region) or at rows no two points can share (a gcd test).
3. Fuse (pass 7), inside a stage: a copy of a temporary into its final place makes the producer write
   there directly (a cell writes the next state slot); an element-wise temporary read by one
   element-wise op only is inlined into it (one expression per cell update).  A temporary
   of constants only (a `full`) is inlined as the one constant it holds, rounded to its
   dtype: a bare constant has no dtype of its own (see `Elementwise`).
4. GEMMs of a stage sharing their left operand (passes 8 and 9) become one over side-by-side weights, and
   so does a GEMM batched over a dim only its weights and result columns name
   (`fractal.lower.merge_gemms`).

Before::                                          After::

    for m in 0:3 parallel host {                    stage cell(m in 0:3) device {
      stage sig() device { t1[m] = sigmoid(g[m]) }    h[m] = mul(sigmoid(g[m]), c[m])
    }                                               }
    for m in 0:3 parallel host {
      stage mul() device { t2[m] = mul(t1[m], c[m]) }
    }
    for m in 0:3 parallel host {
      stage next() device { h[m] = copy(t2[m]) }
    }
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np

from fractal.lang.tensor_ops import BINARY, UNARY

from .dependences import accesses, deltas, only_zero, tables_of
from .rewrite import Path, map_stages, prune_buffers, rewrite_blocks
from .schedule import parallel_nest
from .tile_expr import BOOL_OPS, Binary, Const, Load, Unary, Where, expr_loads
from .tile_ir import Copy, Elementwise, Gemm, If, Loop, Scatter, Stage, TileProgram


def batch(program: TileProgram, ctx=None) -> TileProgram:
    """Pass 5, batch: the parallel loops directly around a stage become its dims."""
    return rewrite_blocks(program, lambda stmts, path: _batch(stmts))


def merge(program: TileProgram, ctx=None) -> TileProgram:
    """Pass 6, merge: consecutive stages over the same dims that only meet point-locally
    become one (the dependence engine decides)."""
    return rewrite_blocks(program, _Merger(program, ctx).merge)


def fuse(program: TileProgram, ctx=None) -> TileProgram:
    """Pass 7, fuse: inside each stage, a temporary copied to its final place is written
    there, and an element-wise temporary read once is inlined into its reader."""
    return prune_buffers(_fuse(program))


def _batch(stmts) -> list:
    out = []
    for s in stmts:
        loops, stage = parallel_nest(s)
        if stage is not None and loops:
            dims = tuple((l.var, l.start, l.stop) for l in loops if l.step == 1)
            if len(dims) == len(loops):
                s = _drop_unused_dims(replace(stage, dims=dims + stage.dims))
        out.append(s)
    return out


def _drop_unused_dims(st: Stage) -> Stage:
    """A dim no region and no bound mentions repeats the same work at each of its points:
    keep one (unless an op reads what it writes, which is not idempotent)."""
    regions = [r for op in st.body for r in op.reads + op.writes]
    used = set().union(*(a.vars() for r in regions for a in r.start)) if regions else set()
    used |= set().union(*(d.start.vars() | d.stop.vars() for d in st.dims))
    in_place = any({r.buffer for r in op.reads} & {r.buffer for r in op.writes} for op in st.body)
    if in_place:
        return st
    dims = tuple(d for d in st.dims if d.var in used)
    return replace(st, dims=dims) if len(dims) < len(st.dims) else st


class _Merger:
    """Consecutive stages over the same dims merge when they only meet point-locally."""

    def __init__(self, program: TileProgram, ctx):
        self.shapes = {b.name: b.shape for b in program.buffers}
        self.tables = tables_of(program)

    def merge(self, stmts, path: Path) -> list:
        out = []
        for s in stmts:
            prev = out[-1] if out else None
            if isinstance(s, Stage) and isinstance(prev, Stage) and prev.dims == s.dims and \
                    self.point_local(prev, s, path):
                out[-1] = replace(prev, body=prev.body + s.body)
            else:
                out.append(s)
        return out

    def point_local(self, a: Stage, b: Stage, path: Path) -> bool:
        """May `b`'s ops run right after `a`'s at each point: do the two stages only meet at
        the same point (the dependence engine, the loops around held fixed)?"""
        scope = path.scope()
        xs = accesses([a], scope, self.shapes, self.tables)
        ys = accesses([b], scope, self.shapes, self.tables)
        return only_zero(deltas(xs, ys, tuple(d.var for d in a.dims), scope.vars))


# -- fusion inside stages -------------------------------------------------------------------

def _fuse(program: TileProgram) -> TileProgram:
    while True:
        reads = Counter(r.buffer for st in program.stages() for op in st.body for r in op.reads)
        writes = Counter(r.buffer for st in program.stages() for op in st.body for r in op.writes)
        temps = {b.name: b.dtype for b in program.buffers if b.role == "temp"}
        fused = map_stages(program, lambda st: _fuse_stage(st, reads, writes, temps))
        if fused == program:
            return program
        program = fused


def _fuse_stage(st: Stage, reads, writes, temps) -> Stage:
    ops = list(st.body)
    for j, op in enumerate(ops):
        # a temporary copied to its final place (a state slot): its producer writes there and
        # its other readers (all later in this stage, same region) read it there
        if isinstance(op, Copy) and not op.perm and op.src.shape == op.dst.shape and op.src.buffer in temps:
            k = _producer(ops, j, op.src)
            later = [r for o in ops[k + 1:] for r in o.reads if r.buffer == op.src.buffer] if k is not None else []
            if k is not None and writes[op.src.buffer] == 1 and len(later) == reads[op.src.buffer] and \
                    all(r == op.src for r in later) and _retargetable(ops[k]) and \
                    not _touched(ops[k + 1:j], op.dst.buffer):
                ops[k] = replace(ops[k], c=op.dst) if isinstance(ops[k], Gemm) else replace(ops[k], dst=op.dst)
                del ops[j]
                ops = [_rename(o, op.src, op.dst) for o in ops]
                return replace(st, body=tuple(ops))
        # an element-wise temporary read once, by an element-wise op: inline its expression
        consumer_loads = _loads(op)
        for region in consumer_loads:
            if region.buffer not in temps or reads[region.buffer] != 1 or writes[region.buffer] != 1:
                continue
            k = _producer(ops, j, region)
            if k is None or not isinstance(ops[k], Elementwise) or not isinstance(op, (Elementwise, Copy)):
                continue
            if isinstance(op, Copy) and (op.perm or op.src.shape != op.dst.shape):
                continue
            if _clobbered(ops[k + 1:j], ops[k].reads):
                continue
            expr = ops[k].expr
            if not expr_loads(expr):
                expr = Const(float(_constant_value(expr, temps[region.buffer])))
            new = Elementwise(op.dst, expr) if isinstance(op, Copy) else \
                Elementwise(op.dst, _substitute(op.expr, region, expr))
            ops[j] = new
            del ops[k]
            return replace(st, body=tuple(ops))
    return st


def _constant_value(e, dtype):
    """The value a constants-only expression gives in a buffer of `dtype` (`Elementwise`'s
    rules: constants typed like dst, compared as float64 numbers)."""
    if isinstance(e, Const):
        return np.asarray(e.value).astype(dtype)[()]
    if isinstance(e, Unary):
        return np.asarray(UNARY[e.op](_constant_value(e.x, dtype))).astype(dtype)[()]
    if isinstance(e, Where):
        cond = _constant_value(e.cond, np.dtype(bool))
        return _constant_value(e.a if cond else e.b, dtype)
    operands = np.float64 if e.op in BOOL_OPS else dtype
    value = BINARY[e.op](_constant_value(e.a, operands), _constant_value(e.b, operands))
    return np.asarray(value).astype(dtype)[()]


def _retargetable(op) -> bool:
    return not isinstance(op, Scatter) and not (isinstance(op, Gemm) and op.accumulate)


def _clobbered(between, regions) -> bool:
    """Does an op in `between` write a buffer that one of `regions` lies in?"""
    names = {r.buffer for r in regions}
    return any(w.buffer in names for op in between for w in op.writes)


def _touched(between, name: str) -> bool:
    return any(r.buffer == name for op in between for r in op.reads + op.writes)


def _rename(op, old, new):
    """`op` with reads of region `old` reading `new` instead."""
    if isinstance(op, Elementwise):
        return replace(op, expr=_substitute(op.expr, old, Load(new)))
    fields = {f: new for f in ("src", "a", "b", "index") if getattr(op, f, None) == old}
    return replace(op, **fields) if fields else op


def _loads(op):
    if isinstance(op, Elementwise):
        return op.reads
    if isinstance(op, Copy):
        return (op.src,)
    return ()


def _producer(ops, j, region):
    """The index of the op before `j` that writes exactly `region` (or None)."""
    for k in range(j - 1, -1, -1):
        if any(w == region for w in ops[k].writes):
            return k
        if any(w.buffer == region.buffer for w in ops[k].writes):
            return None
    return None


def _substitute(e, region, by):
    if isinstance(e, Load):
        return by if e.region == region else e
    if isinstance(e, Unary):
        return Unary(e.op, _substitute(e.x, region, by))
    if isinstance(e, Binary):
        return Binary(e.op, _substitute(e.a, region, by), _substitute(e.b, region, by))
    if isinstance(e, Where):
        return Where(*(_substitute(x, region, by) for x in (e.cond, e.a, e.b)))
    return e
