"""`verify()` for the tile IR: the rules every pass must keep and every backend may assume.

* Names: identifiers that are not reserved words (see `tile_printer`); buffer and stage
  names unique; buffers have a supported dtype, non-negative dims, a permutation as
  layout, a known level and role; a const buffer declares its data, of exactly its shape
  and dtype, and no other buffer has data (a backend sees every byte the program moves).
* Structure: programs, loops and ifs hold loops, stages and ifs; stages hold tile ops.
* Scoping: an index reads only variables of enclosing loops and stages (a loop's bounds
  only those outside it; a stage dim's bounds those and the stage's earlier dims, nested
  like loops: never its own variable or a later dim's); no variable shadows an enclosing
  one.
* Regions: one start, size and stride per buffer axis; sizes non-negative (an empty range
  touches nothing), strides positive, index axes unstrided; and in bounds for every
  iteration that runs.  Interval arithmetic on
  the loop bounds settles most regions; the rest are checked exactly with isl over the
  iteration domain (loop and stage bounds with max/min/floor/mod, steps, `if`
  conditions, stage dims bounded by earlier dims: a polygon, not its bounding box), and
  an error names an iteration that goes out of bounds.
* Ops, on region shapes (range axes only): `copy` equal shapes and dtypes; `gemm`
  2-d a, b, c with `op(a): [M,K]`, `op(b): [K,N]`, `c: [M,N]`, a and b one dtype and c
  that dtype or a wider one it casts to safely; `elementwise` loads broadcast (NumPy
  rules) to the dst shape, ops from `tensor_ops.UNARY`/`BINARY`, operand dtypes agree
  (constants adapt), `where` conditions bool, and the expression has dst's dtype;
  `reduce` increasing axes of the source shape, dst shape the source's without them or
  with them as 1; `gather`/`scatter` a 1-d int32/int64 index and the data shape with the
  `axis` extent replaced by the index length; `convert` equal shapes, different dtypes.
  Inputs and consts are never written.
* The contract (`fractal.lower.tile_contract`, exact): the points of a stage are independent,
  so are the iterations of a parallel loop, and a scatter names each row at most once per
  point (checked on constant index tables).

Errors are `VerifyError`s whose message ends with `in: <the statement>`.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import islpy as isl
import numpy as np

from fractal.lang.errors import UNKNOWN_LOC, VerifyError
from fractal.lang.tensor_ops import BINARY, UNARY
from fractal.lang.types import DTYPES, dtype_name

from .tile_affine import Aff, FloorDiv, Max, Min, Mod
from .tile_expr import BOOL_OPS, Binary, Const, Load, Region, Unary, Where
from .tile_nodes import (COMBINERS, COMPARISONS, LEVELS, LOOP_KINDS, PLACEMENTS, ROLES, TILE_OPS, Convert, Copy,
                         Elementwise, Gather, Gemm, If, Loop, Reduce, SegmentReduce, Stage)
from .tile_contract import check_contract
from .tile_printer import header, name_problem, print_region

_BOOL = np.dtype(bool)
_NEGATE = {"<": ">=", "<=": ">", "==": "!=", "!=": "==", ">=": "<", ">": "<="}
_INDEX_DTYPES = (np.dtype("int32"), np.dtype("int64"))


def verify_tile_program(p, *, contract: bool = True) -> None:
    """Check `p`, a `TileProgram` (read by its fields: it is defined in `tile_ir`, which builds on
    this module): its well-formedness, then (unless `contract=False`) the contract every backend
    relies on (`fractal.lower.tile_contract`); raises `VerifyError`."""
    _Verifier(p).run()
    if contract:
        check_contract(p)


class _Ctx(NamedTuple):
    vars: tuple[str, ...]  # in scope, outermost first
    ranges: dict | None  # var -> inclusive static interval; None where no iteration runs
    constraints: tuple[str, ...]  # the iteration domain, in isl syntax over v0, v1, ...


def _fail(message: str, where) -> VerifyError:
    try:
        text = header(where)
    except (ValueError, TypeError, AttributeError):
        text = repr(where)[:300]
    return VerifyError(f"{message}\n  in: {text}", loc=UNKNOWN_LOC)


def _region_text(r: Region) -> str:
    try:
        return print_region(r)
    except (ValueError, TypeError):
        return repr(r)


def _dt(d) -> str:
    return dtype_name(d) if d in DTYPES else str(d)


def _typed(x) -> str:
    """`i64[4]`: the dtype and shape of a buffer or an array."""
    return f"{_dt(x.dtype)}[{','.join(map(str, x.shape))}]"


class _Verifier:
    def __init__(self, p):
        self.p = p
        self.buffers: dict = {}
        self.stages: set[str] = set()

    def run(self) -> None:
        if not isinstance(self.p.name, str) or not re.fullmatch(r"[A-Za-z_0-9][A-Za-z_0-9.]*", self.p.name):
            raise VerifyError(f"program name {self.p.name!r} is not a name like lstm_0 or model.layer",
                              loc=UNKNOWN_LOC)
        for b in self.p.buffers:
            self.buffer(b)
        self.block(self.p.body, _Ctx((), {}, ()))

    def buffer(self, b) -> None:
        problem = name_problem(b.name, "buffer name")
        if problem:
            raise _fail(problem, b)
        if b.name in self.buffers:
            raise _fail(f"buffer {b.name!r} is declared twice", b)
        if b.dtype not in DTYPES:
            raise _fail(f"buffer {b.name}: dtype {b.dtype} is not supported "
                        f"(use one of {', '.join(dtype_name(d) for d in DTYPES)})", b)
        if any(d < 0 for d in b.shape):
            raise _fail(f"buffer {b.name}: shape {b.shape} has a negative dimension", b)
        if sorted(b.layout) != list(range(b.ndim)):
            raise _fail(f"buffer {b.name}: layout {b.layout} is not a permutation of its {b.ndim} axes", b)
        if b.level not in LEVELS:
            raise _fail(f"buffer {b.name}: level {b.level!r} is not one of {', '.join(LEVELS)}", b)
        if b.role not in ROLES:
            raise _fail(f"buffer {b.name}: role {b.role!r} is not one of {', '.join(ROLES)}", b)
        if b.role == "const" and b.data is None:
            raise _fail(f"buffer {b.name}: a const buffer must declare its data", b)
        if b.role == "const" and (b.data.value.dtype != b.dtype or b.data.value.shape != b.shape):
            raise _fail(f"buffer {b.name}: its data is {_typed(b.data.value)}, not {_typed(b)} like the buffer", b)
        if b.role != "const" and b.data is not None:
            raise _fail(f"buffer {b.name}: a {b.role} buffer has no data (only const buffers do)", b)
        self.buffers[b.name] = b

    # --- statements -----------------------------------------------------------------------

    def block(self, stmts, ctx: _Ctx) -> None:
        for s in stmts:
            if isinstance(s, Loop):
                self.loop(s, ctx)
            elif isinstance(s, Stage):
                self.stage(s, ctx)
            elif isinstance(s, If):
                self.cond(s, ctx)
            elif isinstance(s, TILE_OPS):
                raise _fail(f"a {type(s).__name__.lower()} must be inside a stage", s)
            else:
                raise _fail(f"not a statement: {type(s).__name__}", s)

    def loop(self, s: Loop, ctx: _Ctx) -> None:
        self.binds(s.var, "loop variable", ctx, s)
        self.in_scope((s.start, s.stop), ctx, s)
        if s.step == 0:
            raise _fail("loop step must not be 0", s)
        if s.kind not in LOOP_KINDS:
            raise _fail(f"loop kind {s.kind!r} is not one of {', '.join(LOOP_KINDS)}", s)
        if s.placement not in PLACEMENTS:
            raise _fail(f"placement {s.placement!r} is not one of {', '.join(PLACEMENTS)}", s)
        if s.associative and s.kind != "sequential":
            raise _fail("only a sequential loop is associative", s)
        inner = self.bind(ctx, s.var, s.start, s.stop, s.step)
        if s.active is not None:
            point = s.active.point
            if s.kind != "sequential":
                raise _fail("only a sequential loop has active points", s)
            if point.const or not point.terms or any(not isinstance(t, str) or c <= 0 for t, c in point.terms):
                raise _fail(f"the active point {point} must be a sum of parallel variables with positive "
                            f"coefficients", s)
            for var in point.vars():
                problem = name_problem(var, "active variable")
                if problem or var == s.var:
                    raise _fail(problem or f"the active point must not use the loop's own variable {s.var}", s)
            self.in_scope((s.active.bound,), inner, s)
        self.block(s.body, inner)

    def stage(self, s: Stage, ctx: _Ctx) -> None:
        problem = name_problem(s.name, "stage name")
        if problem:
            raise _fail(problem, s)
        if s.name in self.stages:
            raise _fail(f"stage name {s.name!r} is used twice", s)
        self.stages.add(s.name)
        if s.placement not in PLACEMENTS:
            raise _fail(f"placement {s.placement!r} is not one of {', '.join(PLACEMENTS)}", s)
        inner, names = ctx, [d.var for d in s.dims]
        for k, (var, start, stop) in enumerate(s.dims):
            self.binds(var, "stage variable", inner, s)
            for e in (start, stop):  # nested like loops: earlier dims are in scope, the rest not yet
                read = e.vars()
                if var in read:
                    raise _fail(f"the bounds of stage variable {var} read {var} itself", s)
                later = [n for n in names[k + 1:] if n in read]
                if later:
                    raise _fail(f"the bounds of stage variable {var} read {later[0]}, a later dim of the stage "
                                f"(a dim's bounds read only enclosing variables and earlier dims)", s)
            self.in_scope((start, stop), inner, s)
            inner = self.bind(inner, var, start, stop, 1)
        for op in s.body:
            if not isinstance(op, TILE_OPS):
                raise _fail(f"a stage holds only tile ops, not a {type(op).__name__}", s)
            self.op(op, inner)

    def cond(self, s: If, ctx: _Ctx) -> None:
        a, op, b = s.cond
        if op not in COMPARISONS:
            raise _fail(f"comparison {op!r} is not one of {' '.join(COMPARISONS)}", s)
        self.in_scope((a, b), ctx, s)
        names = self.isl_names(ctx)
        for body, cmp in ((s.then, op), (s.orelse, _NEGATE[op])):
            text = f"{_isl(a, names)} {'=' if cmp == '==' else cmp} {_isl(b, names)}"
            self.block(body, ctx._replace(constraints=ctx.constraints + (text,)))

    def binds(self, var, what: str, ctx: _Ctx, s) -> None:
        problem = name_problem(var, what)
        if problem:
            raise _fail(problem, s)
        if var in ctx.vars:
            raise _fail(f"{what} {var} shadows an enclosing variable", s)

    def in_scope(self, indices, ctx: _Ctx, s) -> None:
        for e in indices:
            free = sorted(e.vars() - set(ctx.vars))
            if free:
                raise _fail(f"index {e} uses {free[0]}, which is not in scope", s)

    def bind(self, ctx: _Ctx, var: str, start: Aff, stop: Aff, step: int) -> _Ctx:
        ranges = None
        if ctx.ranges is not None:
            (s0, s1), (t0, t1) = start.bounds(ctx.ranges), stop.bounds(ctx.ranges)
            lo, hi = (s0, t1 - 1) if step > 0 else (t0 + 1, s1)
            ranges = {**ctx.ranges, var: (lo, hi)} if lo <= hi else None
        names = self.isl_names(ctx)
        names[var] = v = f"v{len(ctx.vars)}"
        a, b = _isl(start, names), _isl(stop, names)
        cons = [f"{a} <= {v} < {b}" if step > 0 else f"{b} < {v} <= {a}"]
        if abs(step) != 1:
            cons.append(f"exists (e{len(ctx.vars)} : {v} = {a} + {step}*e{len(ctx.vars)})")
        return _Ctx(ctx.vars + (var,), ranges, ctx.constraints + tuple(cons))

    @staticmethod
    def isl_names(ctx: _Ctx) -> dict:
        return {v: f"v{k}" for k, v in enumerate(ctx.vars)}

    # --- tile ops ---------------------------------------------------------------------------

    def op(self, op, ctx: _Ctx) -> None:
        try:
            regions = op.reads + op.writes
        except TypeError as e:  # a malformed element expression
            raise _fail(str(e), op) from None
        for r in regions:
            self.region(r, ctx, op)
        shape = lambda r: r.shape  # noqa: E731
        dtype = lambda r: self.buffers[r.buffer].dtype  # noqa: E731
        if isinstance(op, Copy) and (op.perm or shape(op.src) != shape(op.dst)):
            self.reshape_copy(op, shape(op.src), shape(op.dst))
            if dtype(op.src) != dtype(op.dst):
                raise self.dtype_error(op)
        elif isinstance(op, (Copy, Convert)):
            if shape(op.src) != shape(op.dst):
                raise _fail(f"source shape {shape(op.src)} differs from destination shape {shape(op.dst)}", op)
            if isinstance(op, Copy) and dtype(op.src) != dtype(op.dst):
                raise self.dtype_error(op)
            if isinstance(op, Convert) and dtype(op.src) == dtype(op.dst):
                raise _fail(f"convert between equal dtypes ({_dt(dtype(op.src))}): use copy", op)
        elif isinstance(op, Gemm):
            self.gemm(op, shape, dtype)
        elif isinstance(op, Elementwise):
            for r in op.reads:
                try:
                    ok = np.broadcast_shapes(shape(r), shape(op.dst)) == shape(op.dst)
                except ValueError:
                    ok = False
                if not ok:
                    raise _fail(f"operand {_region_text(r)} of shape {shape(r)} does not broadcast "
                                f"to the destination shape {shape(op.dst)}", op)
            d = self.expr_dtype(op.expr, op)
            if d is not None and d != dtype(op.dst):
                raise _fail(f"the expression has dtype {_dt(d)} but {op.dst.buffer} is "
                            f"{_dt(dtype(op.dst))} (insert a convert)", op)
        elif isinstance(op, Reduce):
            self.reduce(op, shape, dtype)
        elif isinstance(op, SegmentReduce):
            self.segment_reduce(op, shape, dtype)
        else:
            self.gather_scatter(op, shape, dtype)
        for r in op.writes:
            if self.buffers[r.buffer].role in ("input", "const"):
                raise _fail(f"writes {r.buffer}, a read-only {self.buffers[r.buffer].role} buffer", op)
        for r in regions:
            self.in_bounds(r, ctx, op)

    def reshape_copy(self, op: Copy, src, dst) -> None:
        if op.perm and sorted(op.perm) != list(range(len(src))):
            raise _fail(f"copy perm {list(op.perm)} is not a permutation of the source axes of {src}", op)
        if int(np.prod(src)) != int(np.prod(dst)):
            raise _fail(f"copy from shape {src} to shape {dst}: sizes {int(np.prod(src))} and "
                        f"{int(np.prod(dst))} differ", op)

    def dtype_error(self, op) -> VerifyError:
        src, dst = (self.buffers[r.buffer].dtype for r in (op.src, op.dst))
        return _fail(f"source dtype {_dt(src)} differs from destination dtype {_dt(dst)}", op)

    def gemm(self, op: Gemm, shape, dtype) -> None:
        for what, r in (("a", op.a), ("b", op.b), ("c", op.c)):
            if len(shape(r)) != 2:
                raise _fail(f"gemm operand {what} must be 2-d, got shape {shape(r)}", op)
        (m, k), (k2, n) = (s[::-1] if t else s for s, t in ((shape(op.a), op.trans_a), (shape(op.b), op.trans_b)))
        if k != k2:
            raise _fail(f"gemm inner dimensions differ: [{m},{k}] @ [{k2},{n}]", op)
        if shape(op.c) != (m, n):
            raise _fail(f"gemm result [{m},{n}] does not match c of shape {shape(op.c)}", op)
        if dtype(op.a) != dtype(op.b):
            raise _fail(f"gemm operands have different dtypes {_dt(dtype(op.a))} and {_dt(dtype(op.b))}", op)
        if dtype(op.a) == _BOOL or not np.can_cast(dtype(op.a), dtype(op.c), "safe"):
            raise _fail(f"gemm accumulates {_dt(dtype(op.a))} operands into {_dt(dtype(op.c))}: c must be "
                        f"the operand dtype or a wider one", op)

    def reduce(self, op: Reduce, shape, dtype) -> None:
        if op.combiner not in COMBINERS:
            raise _fail(f"reduce combiner {op.combiner!r} is not one of {', '.join(COMBINERS)}", op)
        src = shape(op.src)
        if not op.axes or list(op.axes) != sorted(set(op.axes)) or not 0 <= op.axes[0] <= op.axes[-1] < len(src):
            raise _fail(f"reduce axes {list(op.axes)} must be increasing axes of the source shape {src}", op)
        dropped = tuple(d for k, d in enumerate(src) if k not in op.axes)
        kept = tuple(1 if k in op.axes else d for k, d in enumerate(src))
        if shape(op.dst) not in (dropped, kept):
            raise _fail(f"reducing shape {src} over axes {list(op.axes)} gives {dropped} (or {kept}), "
                        f"not the destination shape {shape(op.dst)}", op)
        if dtype(op.src) != dtype(op.dst):
            raise self.dtype_error(op)

    def segment_reduce(self, op: SegmentReduce, shape, dtype) -> None:
        if op.combiner not in COMBINERS:
            raise _fail(f"segment combiner {op.combiner!r} is not one of {', '.join(COMBINERS)}", op)
        src, segments, dst = shape(op.src), shape(op.segments), shape(op.dst)
        if len(segments) != 1 or dtype(op.segments) not in _INDEX_DTYPES:
            raise _fail(f"segments {_region_text(op.segments)} must be a 1-d i32 or i64 region, got "
                        f"{_dt(dtype(op.segments))}{list(segments)}", op)
        if not src or dst != (segments[0] - 1,) + src[1:]:
            raise _fail(f"{segments[0]} segment offsets of the rows of shape {src} give the shape "
                        f"{(segments[0] - 1,) + src[1:]}, not the destination shape {dst}", op)
        if dtype(op.src) != dtype(op.dst):
            raise self.dtype_error(op)

    def gather_scatter(self, op, shape, dtype) -> None:
        name = type(op).__name__.lower()
        index = shape(op.index)
        if len(index) != 1:
            raise _fail(f"{name} index {_region_text(op.index)} must be 1-d, got shape {index}", op)
        if dtype(op.index) not in _INDEX_DTYPES:
            raise _fail(f"{name} index {op.index.buffer} has dtype {_dt(dtype(op.index))}, not i32 or i64", op)
        table, rows = (op.src, op.dst) if isinstance(op, Gather) else (op.dst, op.src)
        t = shape(table)
        if not 0 <= op.axis < len(t):
            raise _fail(f"{name} axis {op.axis} is not an axis of the shape {t}", op)
        want = t[:op.axis] + index + t[op.axis + 1:]
        if shape(rows) != want:
            raise _fail(f"{name} along axis {op.axis} of {t} with {index[0]} indices needs shape {want}, "
                        f"not {shape(rows)}", op)
        if dtype(op.src) != dtype(op.dst):
            raise self.dtype_error(op)

    def expr_dtype(self, e, op):
        """The dtype of an element expression; None for constants, which adapt."""
        if isinstance(e, Load):
            return self.buffers[e.region.buffer].dtype
        if isinstance(e, Const):
            return None
        if isinstance(e, Unary):
            if e.op not in UNARY:
                raise _fail(f"unknown unary op {e.op!r}", op)
            d = self.expr_dtype(e.x, op)
            return _BOOL if e.op in BOOL_OPS else d
        if isinstance(e, (Binary, Where)):
            if isinstance(e, Binary) and e.op not in BINARY:
                raise _fail(f"unknown binary op {e.op!r}", op)
            if isinstance(e, Where):
                c = self.expr_dtype(e.cond, op)
                if c is not None and c != _BOOL:
                    raise _fail(f"where condition has dtype {_dt(c)}, not bool", op)
            a, b = self.expr_dtype(e.a, op), self.expr_dtype(e.b, op)
            if a is not None and b is not None and a != b:
                raise _fail(f"operands of {getattr(e, 'op', 'where')} have different dtypes "
                            f"{_dt(a)} and {_dt(b)}", op)
            if isinstance(e, Binary) and e.op in BOOL_OPS:
                return _BOOL
            return a if a is not None else b
        raise _fail(f"not an element expression: {e!r}", op)  # pragma: no cover (expr_loads checks first)

    # --- regions --------------------------------------------------------------------------

    def region(self, r: Region, ctx: _Ctx, op) -> None:
        if not isinstance(r, Region):
            raise _fail(f"expected a Region, got {r!r}", op)
        b = self.buffers.get(r.buffer)
        if b is None:
            raise _fail(f"unknown buffer {r.buffer!r}", op)
        if len(r.start) != b.ndim:
            raise _fail(f"region {_region_text(r)} has {len(r.start)} indices for the {b.ndim}-d "
                        f"buffer {b.name}", op)
        if not len(r.size) == len(r.stride) == len(r.start):
            raise _fail(f"region of {b.name} has {len(r.start)} starts, {len(r.size)} sizes and "
                        f"{len(r.stride)} strides", op)
        for k, (size, stride) in enumerate(zip(r.size, r.stride)):
            if size is not None and size < 0:
                raise _fail(f"region of {b.name}: axis {k} has size {size}, sizes must not be negative", op)
            if stride <= 0:
                raise _fail(f"region of {b.name}: axis {k} has stride {stride}, strides must be positive", op)
            if size is None and stride != 1:
                raise _fail(f"region of {b.name}: index axis {k} has stride {stride} "
                            f"(only range axes are strided)", op)
        self.in_scope(r.start, ctx, op)

    def in_bounds(self, r: Region, ctx: _Ctx, op) -> None:
        if ctx.ranges is None or 0 in r.size:  # no iteration runs, or the region is empty
            return
        b = self.buffers[r.buffer]
        for k, (start, size, stride) in enumerate(zip(r.start, r.size, r.stride)):
            span, n = ((size or 1) - 1) * stride, b.shape[k]
            lo, hi = start.bounds(ctx.ranges)
            if lo >= 0 and hi + span < n:
                continue
            point = self.violation(ctx, start, span, n)
            if point is not None:
                at = start.evaluate(dict(point))
                where = "at " + ", ".join(f"{v} = {x}" for v, x in point) + ", " if point else ""
                reach = f"index {at}" if size is None else f"{at}..{at + span}"
                raise _fail(f"region {_region_text(r)} is out of bounds: {where}axis {k} reaches {reach}, "
                            f"outside 0..{n - 1} of {b.name}", op)

    def violation(self, ctx: _Ctx, start: Aff, span: int, n: int):
        """An iteration (list of (var, value)) where `start..start+span` leaves `0..n-1`, or None."""
        names = self.isl_names(ctx)
        e = _isl(start, names)
        cons = ctx.constraints + (f"({e} < 0 or {e} + {span} > {n - 1})",)
        s = isl.Set("{ [" + ", ".join(names.values()) + "] : " + " and ".join(cons) + " }")
        if s.is_empty():
            return None
        p = s.sample_point()
        return [(v, p.get_coordinate_val(isl.dim_type.set, k).to_python()) for k, v in enumerate(ctx.vars)]


def _isl(x, names: dict) -> str:
    """An index in isl's syntax, variables renamed (isl has its own keywords)."""
    if isinstance(x, str):
        return names[x]
    if isinstance(x, Aff):
        return "(" + " + ".join([f"{c}*{_isl(t, names)}" for t, c in x.terms] + [str(x.const)]) + ")"
    if isinstance(x, Max):
        return f"{'min' if isinstance(x, Min) else 'max'}({', '.join(_isl(a, names) for a in x.args)})"
    assert isinstance(x, FloorDiv)
    return f"({_isl(x.e, names)} mod {x.c})" if isinstance(x, Mod) else f"floor({_isl(x.e, names)}/{x.c})"
