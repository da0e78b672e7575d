"""A naive reference executor for tile programs: every stage point in turn (dims nested like
loops, so boxes and polygons alike), every op on plain NumPy basic slices.  Slow and
obviously right; the oracle of the CPU backend's tests."""

from __future__ import annotations

import numpy as np

from fractal.lang.tensor_ops import BINARY, UNARY
from fractal.lower.tile_ir import (Binary, Const, Convert, Copy, Elementwise, Gather, Gemm, If, Load, Loop, Reduce,
                                   Scatter, Stage, TileProgram, Unary, Where)

BOOL_OPS = {"eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_not"}
COMBINE = {"add": np.add, "max": np.maximum, "min": np.minimum}
COMPARE = {"<": np.less, "<=": np.less_equal, "==": np.equal, "!=": np.not_equal, ">=": np.greater_equal,
           ">": np.greater}


def run_naive(p: TileProgram, inputs, temps=None) -> dict:
    """The output buffers after running `p`; `temps` (a dict) keeps temp buffers across calls."""
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
    for s in stmts:
        if isinstance(s, Loop):
            for value in range(s.start.evaluate(env), s.stop.evaluate(env), s.step):
                yield from op_instances(s.body, {**env, s.var: value}, order)
        elif isinstance(s, If):
            a, op, b = s.cond
            yield from op_instances(s.then if COMPARE[op](a.evaluate(env), b.evaluate(env)) else s.orelse, env, order)
        else:
            assert isinstance(s, Stage) and order in ("point", "op")
            points = list(stage_points(s.dims, env))
            ops = range(len(s.body))
            pairs = ((k, e) for e in points for k in ops) if order == "point" else ((k, e) for k in ops for e in points)
            for k, inner in pairs:
                yield s, k, inner


def stage_points(dims, env):
    """Every point of a stage's space as an env, in loop order: the dims nest like loops
    (a dim's bounds may read earlier dims)."""
    if not dims:
        yield env
        return
    d = dims[0]
    for x in range(d.start.evaluate(env), d.stop.evaluate(env)):
        yield from stage_points(dims[1:], {**env, d.var: x})


def region(r, env, arrays) -> np.ndarray:
    """The region as a basic-slicing view: index axes drop, range axes stay."""
    key = []
    for start, size, stride in zip(r.start, r.size, r.stride):
        i = start.evaluate(env)
        assert i >= 0
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


def run_op(op, env, arrays) -> None:
    get = lambda r: region(r, env, arrays)  # noqa: E731
    if isinstance(op, Copy):
        src, dst = get(op.src), get(op.dst)
        dst[...] = np.reshape(np.transpose(src, op.perm) if op.perm else src, dst.shape)
    elif isinstance(op, Convert):
        dst = get(op.dst)
        dst[...] = get(op.src).astype(dst.dtype)
    elif isinstance(op, Elementwise):
        dst = get(op.dst)
        dst[...] = evaluate(op.expr, env, arrays, dst.dtype)
    elif isinstance(op, Reduce):
        src, dst = get(op.src), get(op.dst)
        dst[...] = COMBINE[op.combiner].reduce(src, axis=op.axes, dtype=dst.dtype, keepdims=dst.ndim == src.ndim)
    elif isinstance(op, Gather):
        dst = get(op.dst)
        index, size = get(op.index), op.src.shape[op.axis]
        pad = index == size  # one past the end: padding, which reads zeros
        value = np.take(get(op.src), np.where(pad, 0, index), axis=op.axis)
        np.copyto(value, 0, where=pad.reshape(pad.shape + (1,) * (value.ndim - op.axis - pad.ndim)))
        dst[...] = value
    elif isinstance(op, Scatter):
        dst, index = get(op.dst), get(op.index)
        keep = index != dst.shape[op.axis]  # one past the end: padding, written nowhere
        dst[(slice(None),) * op.axis + (index[keep],)] = np.compress(keep, get(op.src), axis=op.axis)
    else:
        assert isinstance(op, Gemm)
        a, b, c = get(op.a), get(op.b), get(op.c)
        product = (a.T if op.trans_a else a) @ (b.T if op.trans_b else b)
        c[...] = c + product if op.accumulate else product
