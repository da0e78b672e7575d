"""The tile IR: the one IR every backend consumes (cpu now; CUDA and dataflow later).

A `TileProgram` declares `Buffer`s (shape, dtype, layout, memory level, role) and runs
statements: `Loop`s (sequential or parallel, placed on the host or the device), `If`s,
and `Stage`s.  A stage is a kernel over a parallel iteration space (CPU batch axes, a
CUDA grid, dataflow PEs); its body is a list of tile operations over affine `Region`s of
buffers, run once per point of the space: `Copy`, `Gemm`, `Elementwise` (an expression
tree of `Load`, `Const`, `Unary`, `Binary`, `Where`), `Reduce`, `Gather`, `Scatter` and
`Convert`.  Indices are `Aff`s (`fractal.lower.tile_affine`) over the enclosing loop and
stage variables.  A stage's dims nest like loops: a dim's bounds read the enclosing
variables and the stage's earlier dims, so the space is a box or, where a bound reads an
earlier dim, a polygon (a wavefront's hyperplane `f + i + j = w`).  Nodes are frozen
dataclasses; constructors normalise (lists to tuples, ints and text to `Aff`s, dtypes to
`np.dtype`, default layouts and strides) so equal programs compare equal; `verify()`
checks everything else (`fractal.lower.tile_verify`).
Regions and element expressions live in `fractal.lower.tile_expr` (re-exported here).

A region has one entry per buffer axis: an *index* axis (size `None`, printed as its
index `i`) is dropped from the region's shape like NumPy's `x[i]`; a *range* axis (an
int size, printed `lo:hi` or `lo:hi:stride` with `hi = lo + size*stride`) is kept, even
of size 1 (`i:i + 1`), like `x[i:i+1]`.  Ops apply their shape rules to these shapes.

A wavefront-scheduled two-layer LSTM (6 steps, batch 4, hidden 8) prints as below
(`fractal.lower.tile_printer`; `fractal.lower.tile_parser` reads it back).  `h[l + 1, t + 1]`
is layer `l`'s output at step `t`, `h[0]` holds the input; the loop runs the `2 + 6 - 1`
wavefront steps `s = l + t`, each one stage of gate GEMMs and one of fused cell updates
over the layers `l` active at that step::

    tile @lstm_wavefront {
      buffer x: f32[6,4,8] global input
      buffer w: f32[2,8,32] global const
      buffer u: f32[2,8,32] global const layout(0,2,1)
      buffer h: f32[3,7,4,8] global output
      buffer c: f32[2,7,4,8] global temp
      buffer g: f32[2,4,32] shared temp
      stage init(l in 0:2) device {
        h[l + 1, 0, 0:4, 0:8] = 0.0
        c[l, 0, 0:4, 0:8] = 0.0
      }
      stage load_x(t in 0:6) device {
        h[0, t + 1, 0:4, 0:8] = copy(x[t, 0:4, 0:8])
      }
      for s in 0:7 sequential host {
        stage gates(l in max(0, s - 5):min(2, s + 1)) device {
          g[l, 0:4, 0:32] = gemm(h[l, s - l + 1, 0:4, 0:8], w[l, 0:8, 0:32])
          g[l, 0:4, 0:32] += gemm(h[l + 1, s - l, 0:4, 0:8], u[l, 0:8, 0:32])
        }
        stage cell(l in max(0, s - 5):min(2, s + 1)) device {
          c[l, s - l + 1, 0:4, 0:8] = add(mul(sigmoid(g[l, 0:4, 8:16]), c[l, s - l, 0:4, 0:8]), mul(sigmoid(g[l, 0:4, 0:8]), tanh(g[l, 0:4, 24:32])))
          h[l + 1, s - l + 1, 0:4, 0:8] = mul(sigmoid(g[l, 0:4, 16:24]), tanh(c[l, s - l + 1, 0:4, 0:8]))
        }
      }
    }
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Union

import numpy as np

from .tile_affine import Aff, aff
from .tile_expr import Binary, Const, Expr, Load, Region, Unary, Where, expr_loads  # noqa: F401 (re-exported)

LEVELS = ("global", "shared", "register", "remote")
ROLES = ("input", "output", "temp", "const")
LOOP_KINDS = ("sequential", "parallel")
PLACEMENTS = ("host", "device")
COMBINERS = ("add", "max", "min")
COMPARISONS = ("<", "<=", "==", "!=", ">=", ">")


def _set(obj, name, value) -> None:
    object.__setattr__(obj, name, value)


def _str(node, fn: str) -> str:
    from . import tile_printer
    return getattr(tile_printer, fn)(node)


@dataclass(frozen=True)
class Buffer:
    """Storage: `layout` lists the axes from outermost (slowest) to innermost (contiguous)."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    layout: tuple[int, ...] = ()  # () means the identity (row-major)
    level: str = "global"  # global | shared | register | remote
    role: str = "temp"  # input | output | temp | const (inputs and consts are read-only)

    def __post_init__(self):
        _set(self, "shape", tuple(int(d) for d in self.shape))
        _set(self, "dtype", np.dtype(self.dtype))
        _set(self, "layout", tuple(int(a) for a in self.layout) or tuple(range(len(self.shape))))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def strides(self) -> tuple[int, ...]:
        """Element strides per axis implied by the layout."""
        out, step = [0] * self.ndim, 1
        for axis in reversed(self.layout):
            out[axis], step = step, step * self.shape[axis]
        return tuple(out)

    def __str__(self) -> str:
        return _str(self, "print_buffer")


# --- tile operations -----------------------------------------------------------------

class _Op:
    reads: tuple[Region, ...]
    writes: tuple[Region, ...]

    def __str__(self) -> str:
        return _str(self, "print_op")


@dataclass(frozen=True)
class Copy(_Op):
    """`dst = reshape(transpose(src, perm), dst.shape)`: a plain copy when `perm` is empty and
    the shapes agree; sizes must always agree (a reshape keeps row-major element order)."""

    src: Region
    dst: Region
    perm: tuple[int, ...] = ()

    def __post_init__(self):
        _set(self, "perm", tuple(int(a) for a in self.perm))

    reads = property(lambda s: (s.src,))
    writes = property(lambda s: (s.dst,))


@dataclass(frozen=True)
class Gemm(_Op):
    """`c = op(a) @ op(b)` (`+ c` when accumulating); a, b, c are 2-d regions."""

    a: Region
    b: Region
    c: Region
    accumulate: bool = False
    trans_a: bool = False
    trans_b: bool = False
    reads = property(lambda s: (s.a, s.b) + ((s.c,) if s.accumulate else ()))
    writes = property(lambda s: (s.c,))


@dataclass(frozen=True)
class Elementwise(_Op):
    """`dst = expr`, every load broadcast (NumPy rules) to the dst shape, computed in dst's dtype.

    A constant takes the dtype of its sibling operand, else dst's; the operands of a
    comparison with no typed operand (constants only) compare as float64 numbers."""

    dst: Region
    expr: Expr
    reads = property(lambda s: expr_loads(s.expr))
    writes = property(lambda s: (s.dst,))


@dataclass(frozen=True)
class Reduce(_Op):
    """`dst = combiner-reduce(src, axes)`; `axes` index src's region shape; dst drops or keeps them."""

    src: Region
    dst: Region
    axes: tuple[int, ...]
    combiner: str = "add"

    def __post_init__(self):
        _set(self, "axes", tuple(int(a) for a in self.axes))

    reads = property(lambda s: (s.src,))
    writes = property(lambda s: (s.dst,))


@dataclass(frozen=True)
class Gather(_Op):
    """`dst = take(src, index, axis)`: index values count from the region's start along `axis`
    (negative ones from its end, as in NumPy); one past either end is an error of the program's
    data (`LengthError` at run time: a traced `gather` index out of range)."""

    src: Region
    index: Region
    dst: Region
    axis: int = 0
    reads = property(lambda s: (s.src, s.index))
    writes = property(lambda s: (s.dst,))


@dataclass(frozen=True)
class Scatter(_Op):
    """`dst[.., index[j], ..] = src[.., j, ..]` along `axis`; other dst elements are kept."""

    src: Region
    index: Region
    dst: Region
    axis: int = 0
    reads = property(lambda s: (s.src, s.index))
    writes = property(lambda s: (s.dst,))


@dataclass(frozen=True)
class Convert(_Op):
    """`dst = src` converted to dst's (different) dtype."""

    src: Region
    dst: Region
    reads = property(lambda s: (s.src,))
    writes = property(lambda s: (s.dst,))


TileOp = Union[Copy, Gemm, Elementwise, Reduce, Gather, Scatter, Convert]
TILE_OPS = (Copy, Gemm, Elementwise, Reduce, Gather, Scatter, Convert)


# --- control -----------------------------------------------------------------------------

class Dim(NamedTuple):
    var: str
    start: Aff
    stop: Aff


class Active(NamedTuple):
    """A sequential loop's live points: in each step only the points whose `point` (a sum of
    parallel variables with positive coefficients: their position in the batch's row order,
    e.g. `j + 2*m`) is below `bound` (an index over the loop and enclosing variables) compute
    results anyone reads; the others may be skipped or computed."""

    point: Aff
    bound: Aff


@dataclass(frozen=True)
class Loop:
    """`for var in range(start, stop, step)`; bounds read enclosing variables only.

    `active` (sequential loops; None: every point is live) is what the lowering knows of a
    sorted ragged batch: in each step only the points with `active.point < active.bound`
    (over parallel dims enclosing the loop, or inside it once scheduling moved them in) are
    live.  A pass may shrink stages to them; any pass may drop the hint (computing dead
    points is what a masked schedule does, and is always correct).  Printed
    `... host active m < e {` or `... host active j + 2*m < e {`."""

    var: str
    start: Aff
    stop: Aff
    step: int = 1
    kind: str = "sequential"  # sequential | parallel
    placement: str = "host"  # host | device: where the loop control runs
    body: tuple["Stmt", ...] = ()
    active: Active | None = None

    def __post_init__(self):
        _set(self, "start", aff(self.start))
        _set(self, "stop", aff(self.stop))
        _set(self, "step", int(self.step))
        _set(self, "body", tuple(self.body))
        if self.active is not None:
            _set(self, "active", Active(aff(self.active[0]), aff(self.active[1])))

    def __str__(self) -> str:
        return _str(self, "print_stmt")


@dataclass(frozen=True)
class Stage:
    """A kernel: `body` runs once per point of the space `dims` (all parallel).  The dims
    nest like loops, outermost first: a dim's bounds read enclosing variables and the
    stage's earlier dims, never a later one (nor its own variable).  With no bound reading
    a dim the space is a box; else a polygon, e.g. the points of one wavefront step
    `f + i + j = w` (with `j = w - f - i` in the regions)::

        stage cell(f in max(0, w - 5):min(2, w + 1), i in max(0, w - f - 3):min(3, w - f + 1), m in 0:3)
    """

    name: str
    dims: tuple[Dim, ...]
    body: tuple[TileOp, ...]
    placement: str = "device"

    def __post_init__(self):
        _set(self, "dims", tuple(Dim(v, aff(a), aff(b)) for v, a, b in self.dims))
        _set(self, "body", tuple(self.body))

    @property
    def rectangular(self) -> bool:
        """Whether the space is a box: no dim's bounds read a dim of the stage."""
        names = {d.var for d in self.dims}
        return not any((d.start.vars() | d.stop.vars()) & names for d in self.dims)

    def __str__(self) -> str:
        return _str(self, "print_stmt")


@dataclass(frozen=True)
class If:
    """`if lhs op rhs` (op one of COMPARISONS) run `then`, else `orelse`."""

    cond: tuple[Aff, str, Aff]
    then: tuple["Stmt", ...]
    orelse: tuple["Stmt", ...] = ()

    def __post_init__(self):
        a, op, b = self.cond
        _set(self, "cond", (aff(a), op, aff(b)))
        _set(self, "then", tuple(self.then))
        _set(self, "orelse", tuple(self.orelse))

    def __str__(self) -> str:
        return _str(self, "print_stmt")


Stmt = Union[Loop, Stage, If]


@dataclass(frozen=True)
class TileProgram:
    name: str
    buffers: tuple[Buffer, ...]
    body: tuple[Stmt, ...]

    def __post_init__(self):
        _set(self, "buffers", tuple(self.buffers))
        _set(self, "body", tuple(self.body))

    def buffer(self, name: str) -> Buffer:
        for b in self.buffers:
            if b.name == name:
                return b
        raise KeyError(f"no buffer {name!r} in tile program {self.name}")

    def stages(self):
        """Every stage, in program order."""
        def walk(stmts):
            for s in stmts:
                if isinstance(s, Stage):
                    yield s
                elif isinstance(s, Loop):
                    yield from walk(s.body)
                elif isinstance(s, If):
                    yield from walk(s.then)
                    yield from walk(s.orelse)
        return walk(self.body)

    def __str__(self) -> str:
        return _str(self, "print_tile_program")

    def _repr_html_(self) -> str:
        import html
        return f"<pre>{html.escape(str(self))}</pre>"

    def verify(self) -> "TileProgram":
        from .tile_verify import verify_tile_program
        verify_tile_program(self)
        return self
