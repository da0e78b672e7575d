"""The `pointwise` backend: the tile IR's reference executor.

Every stage point in turn (dims nested like loops, so boxes and polygons alike), every op on
plain NumPy basic slices of that one point, in the order the program states.  Slow and
obviously right: the oracle the cpu backend's tests check it against, the executor to
compare a new backend with (README: "Writing a backend"), and a worked example of the
`Backend` protocol.  It compiles for the `cpu-generic` target's hardware and policy, so its
tile IR is the cpu backend's at that target.

    >>> f(*args, backend="pointwise")          # the same results as backend="cpu", slowly

Semantics per op are `fractal.lower.tile_ir`'s: one `RULES[type(op)](op, env, arrays)` per
op kind.  A gather's index one past the end reads zeros and a scatter's writes nothing (the
padding of ragged lists); further out is an error of the program's data.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from fractal.lang.tensor_ops import BINARY, UNARY
from fractal.lower.target import Target
from fractal.lower.tile_affine import evaluate_many
from fractal.lower.tile_ir import (Binary, Const, Convert, Copy, Elementwise, Gather, Gemm, If, Load, Loop, Reduce,
                                   Scatter, SegmentReduce, Stage, TileProgram, Unary, Where)

from .cpu.machines import cpu_target
from .cpu.rows import check_index, identity

BOOL_OPS = {"eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_not"}
COMBINE = {"add": np.add, "max": np.maximum, "min": np.minimum}
EMPTY = {"max": lambda dt: -np.inf if dt.kind == "f" else np.iinfo(dt).min if dt.kind in "iu" else False,
         "min": lambda dt: np.inf if dt.kind == "f" else np.iinfo(dt).max if dt.kind in "iu" else True}  # of nothing
COMPARE = {"<": np.less, "<=": np.less_equal, "==": np.equal, "!=": np.not_equal, ">=": np.greater_equal,
           ">": np.greater}


def run_pointwise(p: TileProgram, inputs, temps=None) -> dict:
    """The output buffers after running `p` on `inputs` (input buffer name -> array);
    `temps` (a dict) keeps temp buffers across calls."""
    arrays = {}
    for b in p.buffers:
        if b.role == "input":
            arrays[b.name] = np.array(inputs[b.name], b.dtype)
        elif b.role == "const":
            arrays[b.name] = np.array(b.data.value, b.dtype)
        elif b.role == "temp" and temps is not None and b.name in temps:
            arrays[b.name] = temps[b.name]
        else:
            arrays[b.name] = np.zeros(b.shape, b.dtype)
    if temps is not None:
        temps.update({b.name: arrays[b.name] for b in p.buffers if b.role == "temp"})
    with np.errstate(all="ignore"):
        run_block(p.body, {}, arrays)
    return {b.name: arrays[b.name] for b in p.buffers if b.role == "output"}


def run_block(stmts, env, arrays, order="point") -> None:
    for stage, k, inner in op_instances(stmts, env, order):
        run_op(stage.body[k], inner, arrays)


def op_instances(stmts, env, order="point"):
    """`(stage, op index, env)` of every op that `stmts` run, in execution order (loop bounds and
    `if` conditions read loop variables only, so the order never depends on data).  A stage's
    points run in row-major order, all its ops at each point (`order="point"`) or each op at
    every point (`"op"`): the tile IR lets a backend pick either, its points being independent."""
    if order not in ("point", "op"):
        raise ValueError(f"order must be 'point' or 'op', not {order!r}")
    for s in stmts:
        if isinstance(s, Loop):
            for value in range(s.start.evaluate(env), s.stop.evaluate(env), s.step):
                yield from op_instances(s.body, {**env, s.var: value}, order)
        elif isinstance(s, If):
            a, op, b = s.cond
            yield from op_instances(s.then if COMPARE[op](a.evaluate(env), b.evaluate(env)) else s.orelse, env, order)
        elif isinstance(s, Stage):
            points = list(stage_points(s.dims, env))
            ops = range(len(s.body))
            pairs = ((k, e) for e in points for k in ops) if order == "point" else ((k, e) for k in ops for e in points)
            for k, inner in pairs:
                yield s, k, inner
        else:
            raise TypeError(f"not a tile statement: {type(s).__name__}")


def stage_points(dims, env):
    """Every point of a stage's space as an env, in loop order: the dims nest like loops
    (a dim's bounds may read earlier dims)."""
    if not dims:
        yield env
        return
    d = dims[0]
    for x in range(d.start.evaluate(env), d.stop.evaluate(env)):
        yield from stage_points(dims[1:], {**env, d.var: x})


def stage_point_values(dims, env) -> tuple[dict[str, np.ndarray], int]:
    """Every point of a stage's space at once: ({variable: its int64 values over the points},
    the number of points), in `stage_points`' order (a dim's bounds may read earlier dims);
    the variables are `env`'s and the dims."""
    values = {k: np.int64(v) for k, v in env.items()}
    out: dict[str, np.ndarray] = {}
    n = 1
    for d in dims:
        lo = np.broadcast_to(evaluate_many(d.start, values), (n,))
        hi = np.broadcast_to(evaluate_many(d.stop, values), (n,))
        count = np.maximum(hi - lo, 0)
        parent = np.repeat(np.arange(n), count)
        inner = np.arange(int(count.sum()), dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
        for v in out:
            out[v] = out[v][parent]
            values[v] = out[v]
        out[d.var] = lo[parent] + inner
        values[d.var] = out[d.var]
        n = len(parent)
    return {**{k: np.full(n, v, np.int64) for k, v in env.items()}, **out}, n


def region_starts(r, values, n: int) -> np.ndarray:
    """A region's start indices at many points at once (`values`: each variable's int64 array
    over the points, as `stage_point_values` gives): an (n, ndim) int64 array."""
    if not r.start:
        return np.zeros((n, 0), np.int64)
    return np.stack([np.broadcast_to(evaluate_many(a, values), (n,)) for a in r.start], 1).astype(np.int64)


def region(r, env, arrays) -> np.ndarray:
    """The region as a basic-slicing view: index axes drop, range axes stay."""
    key = []
    for axis, (start, size, stride) in enumerate(zip(r.start, r.size, r.stride)):
        i = start.evaluate(env)
        if i < 0:  # (verify() keeps regions in bounds: a program built without it)
            raise IndexError(f"region {r.buffer} starts at {i} on axis {axis}, before the buffer")
        key.append(i if size is None else slice(i, i + size * stride, stride))
    return arrays[r.buffer][tuple(key) + (Ellipsis,)]  # a view even when every axis is an index


def dtype_of(e, arrays):
    if isinstance(e, Load):
        return arrays[e.region.buffer].dtype
    if isinstance(e, Const):
        return None
    if isinstance(e, Unary):
        return np.dtype(bool) if e.op in BOOL_OPS else dtype_of(e.x, arrays)
    if isinstance(e, Binary) and e.op in BOOL_OPS:
        return np.dtype(bool)
    a = dtype_of(e.a, arrays)
    return a if a is not None else dtype_of(e.b, arrays)


def evaluate(e, env, arrays, want):
    """An element expression; a constant is typed like its sibling operand, else `want`."""
    if isinstance(e, Load):
        return region(e.region, env, arrays)
    if isinstance(e, Const):
        return np.asarray(e.value).astype(want)[()]
    if isinstance(e, Unary):
        return UNARY[e.op](evaluate(e.x, env, arrays, want))
    da, db = dtype_of(e.a, arrays), dtype_of(e.b, arrays)
    if isinstance(e, Binary) and e.op in BOOL_OPS:
        want = np.dtype(np.float64)  # constants compared with constants: exactly
    a = evaluate(e.a, env, arrays, db if db is not None else want)
    b = evaluate(e.b, env, arrays, da if da is not None else want)
    if isinstance(e, Where):
        return np.where(evaluate(e.cond, env, arrays, np.dtype(bool)), a, b)
    return BINARY[e.op](a, b)


# --- one rule per op kind ----------------------------------------------------------------------

def _copy(op, get, env, arrays):
    src, dst = get(op.src), get(op.dst)
    dst[...] = np.reshape(np.transpose(src, op.perm) if op.perm else src, dst.shape)


def _convert(op, get, env, arrays):
    dst = get(op.dst)
    dst[...] = get(op.src).astype(dst.dtype)


def _elementwise(op, get, env, arrays):
    dst = get(op.dst)
    dst[...] = evaluate(op.expr, env, arrays, dst.dtype)


def _reduce(op, get, env, arrays):
    src, dst = get(op.src), get(op.dst)
    empty = op.combiner != "add" and any(src.shape[a] == 0 for a in op.axes)
    dst[...] = COMBINE[op.combiner].reduce(src, axis=op.axes, dtype=dst.dtype, keepdims=dst.ndim == src.ndim,
                                           **({"initial": EMPTY[op.combiner](dst.dtype)} if empty else {}))


def _segment_reduce(op, get, env, arrays):
    src, offsets, dst = get(op.src), get(op.segments), get(op.dst)
    for r in range(dst.shape[0]):  # run by run: no reduceat (the cpu backend's way)
        run = src[int(offsets[r]):int(offsets[r + 1])]
        dst[r] = COMBINE[op.combiner].reduce(run, axis=0, dtype=dst.dtype) if len(run) else \
            identity(COMBINE[op.combiner], dst.dtype)


def _index(op, get, size: int) -> np.ndarray:
    index = get(op.index)
    check_index(op, index, size)
    return index


def _gather(op, get, env, arrays):
    size = op.src.shape[op.axis]
    index = _index(op, get, size)
    pad = index == size  # one past the end: padding, which reads zeros
    value = np.take(get(op.src), np.where(pad, 0, index), axis=op.axis)
    np.copyto(value, 0, where=pad.reshape(pad.shape + (1,) * (value.ndim - op.axis - pad.ndim)))
    get(op.dst)[...] = value


def _scatter(op, get, env, arrays):
    dst = get(op.dst)
    index = _index(op, get, dst.shape[op.axis])
    keep = index != dst.shape[op.axis]  # one past the end: padding, written nowhere
    dst[(slice(None),) * op.axis + (index[keep],)] = np.compress(keep, get(op.src), axis=op.axis)


def _gemm(op, get, env, arrays):
    a, b, c = get(op.a), get(op.b), get(op.c)
    product = (a.T if op.trans_a else a) @ (b.T if op.trans_b else b)
    c[...] = c + product if op.accumulate else product


RULES = {Copy: _copy, Convert: _convert, Elementwise: _elementwise, Reduce: _reduce, SegmentReduce: _segment_reduce,
         Gather: _gather, Scatter: _scatter, Gemm: _gemm}


def run_op(op, env, arrays) -> None:
    """One op at one point (`env`: every loop and stage variable's value)."""
    RULES[type(op)](op, lambda r: region(r, env, arrays), env, arrays)


# --- the backend ---------------------------------------------------------------------------------

class PointwiseExecutable:
    def __init__(self, program: TileProgram):
        self.program = program

    def run(self, inputs, profile: dict | None = None) -> dict:
        """The output buffers for the input buffers `inputs` (fresh arrays every call)."""
        return run_pointwise(self.program, inputs)


class PointwiseBackend:
    name = "pointwise"
    description = "the tile IR's reference executor: every stage point in turn, op by op (slow, obviously right)"
    consumes = "tile"

    def default_target(self) -> Target:
        # cpu-generic's record and policy: the tile IR the cpu backend gets at that target
        return replace(cpu_target("cpu-generic"), name="pointwise", backend=self.name,
                       source="cpu-generic's record and policy, run point by point")

    def targets(self):
        return {"pointwise": self.default_target}

    def build(self, program: TileProgram, target: Target) -> PointwiseExecutable:
        return PointwiseExecutable(program)
