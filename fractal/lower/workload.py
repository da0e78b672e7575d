"""What a schedule costs to run, as the facts a cost policy prices (`fractal.lower.policy`).

`stage_runs(stmts, env, itemsizes)` walks a block as the backends run it once coarsening has
made each stage's enclosing parallel loops its batch: every stage runs once per iteration of
the sequential loops around it, over all its points at once.  Sequential loops are walked
iteration by iteration (their bounds may read outer variables, as a wavefront's do), parallel
loops and stage dims counted; each run is summarised as a `StageRun` (its ops, points, the
BLAS calls of its GEMMs and the bytes its other ops touch), equal runs counted together.

    runs = stage_runs(nest, {}, {"h": 4, "w": 4})
    seconds = target.policy.seconds(runs, target.hardware)
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from .policy import GemmRun, StageRun
from .tile_ir import Gemm, If, Loop, Stage
from .tile_isl import Scope

_MAX_POINTS = 1 << 24

def stage_runs(stmts, env: dict, itemsizes: dict, limit: int = 200_000) -> list[StageRun] | None:
    """The stage runs of `stmts` with the variables of `env` bound; None past `limit` runs.
    Consecutive stages over the same points count as one run of all their ops, as the merge
    pass makes them (an estimate: that pass also checks they meet only point-wise)."""
    found: Counter = Counter()
    memo: dict = {}  # (stage, the values of the variables its box reads) -> its run
    shapes: dict = {}  # stage -> (its dims, the outer variables they read, its ops' fixed facts)
    points: dict = {}  # (dims, those variables' values) -> the points (every stage over them shares)

    def run_of(st: Stage, env, batch):
        if id(st) not in shapes:  # (a stage always sits in the same parallel loops)
            dims = batch + tuple((d.var, d.start, d.stop, 1) for d in st.dims)
            read = sorted(set().union(*(a.vars() | b.vars() for _, a, b, _ in dims)) - {d[0] for d in dims})
            shapes[id(st)] = dims, read, _op_facts(st, [d[0] for d in dims], itemsizes)
        dims, read, facts = shapes[id(st)]
        values = tuple(env[v] for v in read)
        key = (id(st), values)
        if key not in memo:
            where = (dims, values)
            if where not in points:
                points[where] = _points(dims, env)
            memo[key] = _run(facts, points[where], [d[0] for d in dims], _polygon(dims))
        return memo[key], dims

    def block(ss, env, batch, times: int = 1) -> list:
        """The runs of one execution of a block, (points, run) in order, consecutive runs over
        the same points merged; sequential loops inside are counted in `found` as they go (the
        block runs `times` times alike)."""
        out: list = []
        for s in ss:
            if isinstance(s, Loop) and s.kind == "sequential":
                values = range(s.start.evaluate(env), s.stop.evaluate(env), s.step)
                if values and not _bounds_read(s.body, s.var):  # every step runs the same stages
                    for _, run in block(s.body, {**env, s.var: values[0]}, batch, times * len(values)):
                        found[run] += times * len(values)
                    values = ()
                for value in values:
                    for _, run in block(s.body, {**env, s.var: value}, batch, times):
                        found[run] += times
                    if len(memo) > limit:
                        raise _TooMany
                out.append((None, None))  # nothing merges across a loop
            elif isinstance(s, Loop):
                pieces = block(s.body, env, batch + ((s.var, s.start, s.stop, s.step),), times)
            elif isinstance(s, If):
                pieces = block(s.then if s.holds(env) else s.orelse, env, batch, times)
            elif isinstance(s, Stage):
                run, dims = run_of(s, env, batch)
                pieces = [(dims, run)] if run is not None else []
            if not isinstance(s, Loop) or s.kind != "sequential":
                for dims, run in pieces:
                    if out and dims is not None and out[-1][0] == dims:
                        out[-1] = (dims, _merged(out[-1][1], run))
                    else:
                        out.append((dims, run))
        return [(dims, run) for dims, run in out if run is not None]

    try:
        for _, run in block(stmts, dict(env), ()):
            found[run] += 1
    except _TooMany:
        return None
    return [StageRun(count, *run) for run, count in found.items()]


def _bounds_read(stmts, var: str) -> bool:
    """Whether a loop, stage or condition inside `stmts` has bounds reading `var`."""
    for s in stmts:
        if isinstance(s, Loop):
            if var in s.start.vars() | s.stop.vars() or _bounds_read(s.body, var):
                return True
        elif isinstance(s, If):
            if var in s.cond[0].vars() | s.cond[2].vars() or _bounds_read(s.then + s.orelse, var):
                return True
        elif any(var in d.start.vars() | d.stop.vars() for d in s.dims):
            return True
    return False


def _merged(a: tuple, b: tuple) -> tuple:
    """One run of two stages' ops over the same points."""
    return a[0] + b[0], a[1], a[2], a[3] + b[3], a[4] + b[4], a[5] + b[5]


class _TooMany(Exception):
    pass


def _points(dims, env) -> dict | None:
    scope = Scope()
    for var, start, stop, step in dims:
        scope = scope.inner(var, start, stop, step)
    return scope.points(_MAX_POINTS, env)


def _polygon(dims) -> bool:
    names = [d[0] for d in dims]
    return any(set(names[:k]) & (start.vars() | stop.vars()) for k, (_, start, stop, _) in enumerate(dims))


def _op_facts(st: Stage, names, itemsizes) -> tuple:
    """Per op of a stage, what its runs cost does not depend on: (moved bytes per point, GEMM
    (m, n, k, itemsize, the dims its right operand reads) or None, other bytes per point)."""
    out = []
    for op in st.body:
        nbytes = lambda regions: sum(int(np.prod(r.shape, dtype=np.int64)) * itemsizes[r.buffer]  # noqa: E731
                                     for r in regions)
        moved = nbytes([r for r in op.reads + op.writes if r.vars() & set(names)])
        if isinstance(op, Gemm):
            (m, k), (_, n_cols) = _oriented(op)
            out.append((moved, (m, n_cols, k, itemsizes[op.c.buffer], [v for v in names if v in op.b.vars()]), 0))
        else:
            out.append((moved, None, nbytes(op.reads + op.writes)))
    return tuple(out)


def _run(facts, points, names, polygon: bool) -> tuple | None:
    """(ops, points, polygon, gemms, other bytes, moved bytes) of one run of a stage (its
    `_op_facts`) over `points`."""
    n = len(next(iter(points.values()))) if points else (0 if points is None else 1)
    if n == 0:
        return None
    gemms, other, moved = [], 0, 0
    for per_point, gemm, other_per_point in facts:
        moved += n * per_point
        other += n * other_per_point
        if gemm is not None:
            m, n_cols, k, itemsize, used = gemm
            calls = len(np.unique(np.stack([points[v] for v in used], axis=1), axis=0)) if used else 1
            gemms.append(GemmRun(calls, m * n // calls, n_cols, k, itemsize))
    return len(facts), n, polygon, tuple(gemms), other, moved


def _oriented(op: Gemm):
    a, b = op.a.shape, op.b.shape
    return (a[::-1] if op.trans_a else a), (b[::-1] if op.trans_b else b)


def point_costs(ops, point_vars, itemsizes: dict) -> tuple[int, int, int]:
    """What one point of a statement costs (a `LiveFacts`' point figures): the flops of its
    products (2 per multiply-add), the bytes of the regions that move with the point (read or
    written, reading one of `point_vars`), and the bytes of the products' right operands the
    points share (a weight: packed again by each call when the points are cut into calls)."""
    flops = sum(2 * op.c.shape[0] * op.c.shape[1] * (op.a.shape[0] if op.trans_a else op.a.shape[1])
                for op in ops if isinstance(op, Gemm))
    moved = sum(int(np.prod(r.shape, dtype=np.int64)) * itemsizes[r.buffer]
                for op in ops for r in op.reads + op.writes if r.vars() & point_vars)
    shared = sum(int(np.prod(op.b.shape, dtype=np.int64)) * itemsizes[op.b.buffer]
                 for op in ops if isinstance(op, Gemm) and not op.b.vars() & point_vars)
    return flops, moved, shared
