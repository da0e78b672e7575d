"""Random tile programs whose stages are parallel-safe (hypothesis), and data for them.

Every buffer has two *leading* axes and two *tile* axes.  A stage writes only buffers it
*owns*, each through one fixed leading index per stage that is injective in the stage
variables (`d`, `-d`, `2*d`, `d mod M` with M above d's range, `floor((2*d + 1) / 2)`,
`max(d, lo)`, plus loop-variable terms; the quasi-affine ones take the fancy-indexing
path), so no two points write the same element; it reads its owned buffers only through
that same leading index (each point its own slice), and any other buffer anywhere.
Loops (steps 1, 2, -1; drawn parallel, kept so where no two iterations meet), `if`s and
stage boxes read loop variables through affine and max/min indices; with `nested`, a stage's second dim is mostly bounded by its first too
(a polygon; such bounds may leave rows empty).  Writes stay injective: one lead index
per dim.  Starts are shifted non-negative by their interval bounds and buffers
sized to the largest extent reached, so every region is in bounds.

Data are small integers (in float buffers too) and elementwise results are clamped to
[-100, 100], so comparisons see the same values in any summation order.  Const buffers
hold theirs (`program_data`, attached by `with_data`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import strategies as st

from fractal.lower import parse_tile_program
from fractal.lower.dependences import accesses, deltas, only_zero, tables_of
from fractal.lower.rewrite import Path, rewrite_blocks
from fractal.lower.tile_affine import Aff, FloorDiv, Max, Mod, aff, amax, amin
from fractal.lower.tile_ir import (Binary, Buffer, Const, Convert, Copy, Elementwise, Gather, Gemm, If, Load,
                                   Loop, Reduce, Region, Scatter, Stage, TileProgram, Unary, Where)

FLOATS = [np.dtype(np.float32), np.dtype(np.float64)]
VALUES = FLOATS + [np.dtype(np.int32)]
ARITH = ["add", "sub", "mul", "maximum", "minimum"]
COMPARE = ["eq", "ne", "lt", "le", "gt", "ge"]


def v(name: str) -> Aff:
    return Aff(((name, 1),))


class ParallelGen:
    def __init__(self, draw, nested: bool = False):
        self.draw, self.nested = draw, nested  # nested: a stage's second dim may be bounded by its first
        self.count = 0
        self.bufs: dict[str, dict] = {}  # name -> dtype, need (per axis), state
        self.owned: dict[str, tuple] = {}  # in the current stage: buffer -> (dtype, leading index)
        self.read_anywhere: set[str] = set()  # in the current stage: state buffers read at any index
        self.index_info: dict[str, tuple] = {}  # index buffer -> (axis, stride, limit)

    def fresh(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    # --- indices -------------------------------------------------------------------------

    def loop_index(self, ctx, quasi=True) -> Aff:
        """An index over the loop variables `ctx` (name -> inclusive interval)."""
        e = aff(self.draw(st.integers(-2, 2)))
        for n in list(ctx)[-2:]:
            e = e + self.draw(st.sampled_from([0, 1, -1, 2])) * v(n)
        if quasi and ctx and self.draw(st.integers(0, 3)) == 0:
            e = (amax if self.draw(st.booleans()) else amin)(e, self.loop_index(ctx, False))
        return e

    def any_index(self, ctx, dims) -> Aff:
        """An index over loop and stage variables, sometimes quasi-affine in a stage variable."""
        e = self.loop_index(ctx)
        for d in dims:
            e = e + self.draw(st.sampled_from([0, 0, 1, -1, 2])) * v(d)
        if dims and self.draw(st.integers(0, 4)) == 0:
            d = v(self.draw(st.sampled_from(dims)))
            e = e + aff(self.draw(st.sampled_from([FloorDiv(d, 2), Mod(d, 2), Max((d, aff(1)))])))
        return e

    def injective(self, d: str, rng) -> Aff:
        lo, hi = rng
        kind = self.draw(st.sampled_from(["d", "-d", "2d", "mod", "floor", "max"]))
        x = v(d)
        return {"d": x, "-d": -x, "2d": 2 * x, "mod": aff(Mod(x, hi - lo + 1 + self.draw(st.integers(0, 2)))),
                "floor": aff(FloorDiv(2 * x + 1, 2)), "max": aff(Max((x, aff(lo))))}[kind]

    # --- regions ----------------------------------------------------------------------------

    def region(self, name, dtype, lead, shape, ctx, dims, state=False) -> Region:
        """A region of `name` with leading indices `lead` and tile shape `shape` (rank <= 2)."""
        ranges = {**ctx, **dims}
        rank_axes = sorted(self.draw(st.permutations([0, 1]))[:len(shape)])
        sizes = iter(shape)
        starts, size, stride = list(lead), [None, None], [1, 1]
        for axis in (0, 1):
            n = next(sizes) if axis in rank_axes else None
            starts.append(self.any_index(ctx, list(dims)))
            size.append(n)
            stride.append(self.draw(st.sampled_from([1, 1, 2])) if n else 1)
        info = self.bufs.setdefault(name, {"dtype": dtype, "need": [1] * 4, "state": state})
        shifted = []
        for k, (e, n, s) in enumerate(zip(starts, size, stride)):
            lo, hi = e.bounds(ranges)
            shifted.append(e - lo)
            info["need"][k] = max(info["need"][k], hi - lo + ((n or 1) - 1) * s + 1)
        return Region(name, shifted, size, stride)

    def read(self, dtype, shape, ctx, dims) -> Region:
        """A region to read: an owned buffer's own slice, another state buffer or read-only data."""
        owned = [b for b, (dt, _) in self.owned.items() if dt == dtype]
        others = [b for b, i in self.bufs.items() if i["dtype"] == dtype and i["state"] and b not in self.owned]
        kinds = ["data", "data"] + (["owned"] if owned else []) + (["other"] if others else [])
        kind = self.draw(st.sampled_from(kinds))
        if kind == "owned":
            name = self.draw(st.sampled_from(owned))
            return self.region(name, dtype, self.owned[name][1], shape, ctx, dims, state=True)
        name = self.draw(st.sampled_from(others)) if kind == "other" else self.fresh("x")
        if kind == "other":  # not to be written later in this stage (another point may read it)
            self.read_anywhere.add(name)
        lead = [self.any_index(ctx, list(dims)) for _ in range(2)]
        return self.region(name, dtype, lead, shape, ctx, dims, state=kind == "other")

    def write(self, dtype, shape, ctx, dims) -> Region:
        owned = [b for b, (dt, _) in self.owned.items() if dt == dtype]
        name = self.draw(st.sampled_from(owned)) if owned and self.draw(st.booleans()) else None
        if name is None:
            state = [b for b, i in self.bufs.items() if i["state"] and i["dtype"] == dtype
                     and b not in self.owned and b not in self.read_anywhere]
            name = self.draw(st.sampled_from(state)) if state and self.draw(st.booleans()) else self.fresh("y")
            lead = []
            for k in range(2):
                e = self.loop_index(ctx)
                if k < len(dims):
                    d = list(dims)[k]
                    e = e + self.injective(d, dims[d])
                lead.append(e)
            self.owned[name] = (dtype, lead)
        return self.region(name, dtype, self.owned[name][1], shape, ctx, dims, state=True)

    # --- statements -----------------------------------------------------------------------------

    def program(self) -> TileProgram:
        body = self.block({}, 0)
        buffers = []
        for name, info in self.bufs.items():
            role = self.draw(st.sampled_from(["output", "temp"] if info["state"] else ["input", "const"]))
            layout = tuple(self.draw(st.permutations(range(4))))
            buffers.append(Buffer(name, tuple(info["need"]), info["dtype"], layout, role=role))
        return TileProgram("parallel", buffers, body)

    def block(self, ctx, depth):
        kinds = ["stage", "stage", "loop", "if_"] if depth < 2 else ["stage"]
        count = self.draw(st.integers(1, 2))
        return [getattr(self, self.draw(st.sampled_from(kinds)))(ctx, depth) for _ in range(count)]

    def bounds(self, ctx, steps=(1,)):
        start = self.loop_index(ctx)
        stop = start + self.draw(st.sampled_from([0, 1, 2, 3, 3, 4]))
        if ctx and self.draw(st.integers(0, 2)) == 0:
            stop = amin(stop, self.loop_index(ctx, False) + 2)
        step = self.draw(st.sampled_from(steps))
        if step < 0:
            start, stop = stop - 1, start - 1
        (s0, s1), (t0, t1) = start.bounds(ctx), stop.bounds(ctx)
        lo, hi = (s0, t1 - 1) if step > 0 else (t0 + 1, s1)
        return start, stop, step, (lo, max(lo, hi))

    def loop(self, ctx, depth):
        var = self.fresh("i")
        start, stop, step, rng = self.bounds(ctx, (1, 1, 2, -1))
        return Loop(var, start, stop, step, self.draw(st.sampled_from(["sequential", "parallel"])),
                    body=self.block({**ctx, var: rng}, depth + 1))

    def if_(self, ctx, depth):
        cond = (self.loop_index(ctx), self.draw(st.sampled_from(["<", "<=", "==", "!=", ">=", ">"])),
                self.loop_index(ctx))
        orelse = self.block(ctx, depth + 1) if self.draw(st.booleans()) else []
        return If(cond, self.block(ctx, depth + 1), orelse)

    def stage(self, ctx, depth):
        dims = {}
        for _ in range(self.draw(st.integers(1 if self.nested else 0, 2))):
            earlier = {d: r for d, (_, _, r) in dims.items()}
            nest = self.nested and earlier and self.draw(st.integers(0, 3)) > 0  # a polygon, rows maybe empty
            start, stop, _, rng = self.bounds({**ctx, **earlier} if nest else ctx)
            dims[self.fresh("d")] = (start, stop, rng)
        ranges = {d: r for d, (_, _, r) in dims.items()}
        self.owned, self.read_anywhere = {}, set()
        ops = [self.op(ctx, ranges) for _ in range(self.draw(st.integers(1, 3)))]
        return Stage(self.fresh("k"), [(d, a, b) for d, (a, b, _) in dims.items()], ops)

    # --- ops -----------------------------------------------------------------------------------

    def shape(self, lo=0):
        return tuple(self.draw(st.lists(st.integers(1, 3), min_size=lo, max_size=2)))

    def op(self, ctx, dims):
        draw = self.draw
        kind = draw(st.sampled_from(["elementwise", "elementwise", "gemm", "reduce", "copy", "convert",
                                     "gather", "scatter"]))
        if kind == "elementwise":
            shape, dt = self.shape(), draw(st.sampled_from(VALUES))
            expr = self.expr(shape, dt, ctx, dims, 2)
            clamped = Binary("minimum", Binary("maximum", expr, Const(-100)), Const(100))
            return Elementwise(self.write(dt, shape, ctx, dims), clamped)
        if kind == "gemm":
            (m, k, n), ta, tb = [draw(st.integers(1, 3)) for _ in range(3)], draw(st.booleans()), draw(st.booleans())
            dt = draw(st.sampled_from(FLOATS))
            c_dt = draw(st.sampled_from([d for d in FLOATS if np.can_cast(dt, d)]))
            a = self.read(dt, (k, m) if ta else (m, k), ctx, dims)
            b = self.read(dt, (n, k) if tb else (k, n), ctx, dims)
            return Gemm(a, b, self.write(c_dt, (m, n), ctx, dims), draw(st.booleans()), ta, tb)
        if kind == "reduce":
            src, dt = self.shape(1), draw(st.sampled_from(VALUES))
            axes = tuple(sorted(set(draw(st.lists(st.integers(0, len(src) - 1), min_size=1, max_size=2)))))
            keep = draw(st.booleans())
            dst = tuple(1 if a in axes else d for a, d in enumerate(src) if keep or a not in axes)
            return Reduce(self.read(dt, src, ctx, dims), self.write(dt, dst, ctx, dims), axes,
                          draw(st.sampled_from(["add", "max", "min"])))
        if kind in ("copy", "convert"):
            src, a = self.shape(), draw(st.sampled_from(VALUES))
            perm, dst = (), src
            if kind == "copy" and len(src) == 2:
                perm = draw(st.sampled_from([(), (1, 0)]))
                dst = (src[1], src[0]) if perm else src
                if draw(st.booleans()):
                    dst = (src[0] * src[1],)
            b = a if kind == "copy" else draw(st.sampled_from([d for d in VALUES if d != a]))
            source = self.read(a, src, ctx, dims)
            target = self.write(b, dst, ctx, dims)
            return Copy(source, target, perm) if kind == "copy" else Convert(source, target)
        table, dt = self.shape(1), draw(st.sampled_from(VALUES))
        axis = draw(st.integers(0, len(table) - 1))
        n = draw(st.integers(1, table[axis]))  # scatter: distinct indices fit
        rows = table[:axis] + (n,) + table[axis + 1:]
        index_dt = draw(st.sampled_from([np.dtype(np.int32), np.dtype(np.int64)]))
        index = self.region(self.fresh("idx"), index_dt, [self.any_index(ctx, list(dims)) for _ in range(2)], (n,),
                            ctx, dims)
        along = next(k for k, size in enumerate(index.size) if size is not None)
        self.index_info[index.buffer] = (along, index.stride[along], table[axis])
        if kind == "gather":
            return Gather(self.read(dt, table, ctx, dims), index, self.write(dt, rows, ctx, dims), axis)
        return Scatter(self.read(dt, rows, ctx, dims), index, self.write(dt, table, ctx, dims), axis)

    def expr(self, shape, dt, ctx, dims, depth):
        draw = self.draw
        kind = draw(st.sampled_from(["load", "load", "const"] + (["unary", "binary", "where"] if depth else [])))
        if kind == "load":
            tail = shape[len(shape) - draw(st.integers(0, len(shape))):]
            return Load(self.read(dt, tuple(d if draw(st.booleans()) else 1 for d in tail), ctx, dims))
        if kind == "const":
            return Const(draw(st.integers(-3, 3)))
        if kind == "unary":
            return Unary(draw(st.sampled_from(["neg", "abs", "relu"])), self.expr(shape, dt, ctx, dims, depth - 1))
        if kind == "binary":
            return Binary(draw(st.sampled_from(ARITH)), self.expr(shape, dt, ctx, dims, depth - 1),
                          self.expr(shape, dt, ctx, dims, depth - 1))
        cdt = draw(st.sampled_from(VALUES))
        cond = Binary(draw(st.sampled_from(COMPARE)), self.expr(shape, cdt, ctx, dims, depth - 1),
                      self.expr(shape, cdt, ctx, dims, depth - 1))
        return Where(cond, self.expr(shape, dt, ctx, dims, depth - 1), self.expr(shape, dt, ctx, dims, depth - 1))


@st.composite
def parallel_programs(draw, nested: bool = False):
    """A parallel-safe program (its consts holding `program_data`) and, per index buffer,
    (axis, stride, limit) of its one region; `nested`: stages' second dims mostly bounded by
    their first (polygons)."""
    gen = ParallelGen(draw, nested)
    p = gen.program()
    p = with_data(p, program_data(p, gen.index_info, 2, "const"))
    return sequential_where_iterations_meet(p), gen.index_info


def sequential_where_iterations_meet(p: TileProgram) -> TileProgram:
    """`p` with each parallel loop whose iterations may touch one element (one writing; for
    any data of its input index tables) made sequential: a drawn loop is parallel only where
    the tile IR's contract lets a backend run its iterations at once."""
    shapes, tables = {b.name: b.shape for b in p.buffers}, tables_of(p)

    def block(stmts, path: Path):
        scope = path.scope()
        out = []
        for s in stmts:
            if isinstance(s, Loop) and s.kind == "parallel":
                xs = accesses(s.body, scope.inner(s.var, s.start, s.stop, s.step), shapes, tables)
                if not only_zero(deltas(xs, xs, (s.var,), scope.vars)):
                    s = dataclasses.replace(s, kind="sequential")
            out.append(s)
        return out
    return rewrite_blocks(p, block, order="pre")


def with_data(p: TileProgram, arrays: dict) -> TileProgram:
    """`p` with `arrays[name]` as the data of its const buffer `name` (for tables too big
    to read well in a test's program text)."""
    names = {b.name for b in p.buffers if b.role == "const"}
    assert set(arrays) <= names, f"no const buffers {sorted(set(arrays) - names)} in {p.name}"
    return dataclasses.replace(p, buffers=tuple(dataclasses.replace(b, data=arrays[b.name]) if b.name in arrays else b
                                                for b in p.buffers))


def program(text: str, **consts) -> TileProgram:
    """The program of `text`, its const buffers holding `consts` (`with_data`), verified."""
    return with_data(parse_tile_program(text), consts).verify()


def tile(buffers: str, body: str) -> str:
    """The text of a tile program `@t` of these buffer declarations and statements."""
    return "tile @t {\n" + buffers + "\n" + body + "\n}"


def program_data(p: TileProgram, index_info, seed: int, role: str) -> dict:
    """Small-integer arrays for the buffers of `role`.  An index buffer's vector (along `axis`
    with `stride`) holds distinct indices below `limit`, so a scatter writes each row once."""
    rng = np.random.default_rng(seed)
    out = {}
    for b in p.buffers:
        if b.role != role:
            continue
        if b.name in index_info:
            axis, stride, limit = index_info[b.name]
            position = np.arange(b.shape[axis]).reshape((-1,) + (1,) * (3 - axis)) // stride
            offset = rng.integers(0, limit, tuple(1 if k == axis else n for k, n in enumerate(b.shape)))
            out[b.name] = ((position + offset) % limit).astype(b.dtype)
        else:
            out[b.name] = rng.integers(-3, 4, b.shape).astype(b.dtype)
    return out
