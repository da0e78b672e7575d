"""The nodes of the tile IR below the program: buffers, tile operations and statements.

`fractal.lower.tile_ir` describes the IR and re-exports these with `TileProgram`; import
them from there.  They live apart because the printer and the verifier read them, and
`TileProgram` prints and verifies itself with those: so the printer and the verifier
build on this module, and `tile_ir` on them.  Every node's `str()` is its text form,
given to the classes by `tile_printer`.  Constructors normalise (lists to tuples, ints
and variable names to `Aff`s, dtypes to `np.dtype`, default layouts and strides) so
equal programs compare equal; they never parse.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import NamedTuple, Union

import numpy as np

from fractal.lang.ir_nodes import Const as ArrayConst  # (the program IR's constant array; `Const` here is a scalar)

from .tile_affine import Aff, aff
from .tile_expr import Expr, Region, expr_loads

LEVELS = ("global", "shared", "register", "remote")
ROLES = ("input", "output", "temp", "const")
LOOP_KINDS = ("sequential", "parallel")
PLACEMENTS = ("host", "device")
COMBINERS = ("add", "max", "min")
COMBINER_OF = {"add": "add", "maximum": "max", "minimum": "min"}  # an element-wise op -> the combiner it folds with
COMPARISONS = ("<", "<=", "==", "!=", ">=", ">")
COMPARE = dict(zip(COMPARISONS, (operator.lt, operator.le, operator.eq, operator.ne, operator.ge, operator.gt)))


def _set(obj, name, value) -> None:
    object.__setattr__(obj, name, value)


@dataclass(frozen=True)
class Buffer:
    """Storage: `layout` lists the axes from outermost (slowest) to innermost (contiguous).

    A const buffer's `data` is its contents, an `ArrayConst` (`fractal.lang.ir.Const`: a
    read-only copy compared by dtype, shape and bytes, cheaply when it is the same object,
    as after `dataclasses.replace`) of the buffer's logical shape and dtype; the constructor
    wraps any array.  Other buffers have none (`verify` checks both)."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    layout: tuple[int, ...] = ()  # () means the identity (row-major)
    level: str = "global"  # global | shared | register | remote
    role: str = "temp"  # input | output | temp | const (inputs and consts are read-only)
    data: ArrayConst | None = None  # a const buffer's contents

    def __post_init__(self):
        _set(self, "shape", tuple(int(d) for d in self.shape))
        _set(self, "dtype", np.dtype(self.dtype))
        _set(self, "layout", tuple(int(a) for a in self.layout) or tuple(range(len(self.shape))))
        if self.data is not None and not isinstance(self.data, ArrayConst):
            _set(self, "data", ArrayConst(self.data))

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


# --- tile operations -----------------------------------------------------------------

class _Op:
    """A tile operation: the regions it reads and writes, per point of its stage."""

    reads: tuple[Region, ...]
    writes: tuple[Region, ...]


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
class SegmentReduce(_Op):
    """`dst[r] = combiner-reduce(src[segments[r]:segments[r + 1]])` over src's first axis, for
    each of dst's `n` rows: `segments` (1-d, integer, `n + 1` non-decreasing offsets into src's
    rows, a const table in practice) cuts src's rows into consecutive runs, one per dst row
    (the rows a ragged list's points gathered: a node's neighbours).  An empty run gives the
    combiner's identity (0, -inf, inf; the dtype's extremes for integers)."""

    src: Region
    segments: Region
    dst: Region
    combiner: str = "add"
    reads = property(lambda s: (s.src, s.segments))
    writes = property(lambda s: (s.dst,))


@dataclass(frozen=True)
class Gather(_Op):
    """`dst = take(src, index, axis)`: index values count from the region's start along `axis`
    (negative ones from its end, as in NumPy).  A value one past the end (the region's size
    there) reads nothing and gives zeros: the padding of a list shorter than its batch's
    longest (a padded point then touches no row another point writes).  Past that, or before
    the start, is an error of the program's data (`LengthError` at run time: a traced `gather`
    index out of range)."""

    src: Region
    index: Region
    dst: Region
    axis: int = 0
    reads = property(lambda s: (s.src, s.index))
    writes = property(lambda s: (s.dst,))


@dataclass(frozen=True)
class Scatter(_Op):
    """`dst[.., index[j], ..] = src[.., j, ..]` along `axis`; other dst elements are kept.

    Index values count from the region's start along `axis` (negative ones from its end); a
    value one past the end (the region's size there) writes nothing: the padding of a list
    shorter than its batch's longest.  Within one point no row is named twice (the contract:
    a backend writes them all at once)."""

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


TileOp = Union[Copy, Gemm, Elementwise, Reduce, SegmentReduce, Gather, Scatter, Convert]
TILE_OPS = (Copy, Gemm, Elementwise, Reduce, SegmentReduce, Gather, Scatter, Convert)


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
    `... host active m < e {` or `... host active j + 2*m < e {`.

    `associative` (sequential loops) marks a `reduce`'s loop: its steps fold one more value
    into the state with a combiner the program declared associative, so a backend may
    re-associate them (partial sums, then a tree) where the steps' intermediate states are
    read by no one.  A pass may drop the flag (running the steps in order is always
    correct), never add it.  Printed `... sequential associative host {`."""

    var: str
    start: Aff
    stop: Aff
    step: int = 1
    kind: str = "sequential"  # sequential | parallel
    placement: str = "host"  # host | device: where the loop control runs
    body: tuple["Stmt", ...] = ()
    active: Active | None = None
    associative: bool = False

    def __post_init__(self):
        _set(self, "start", aff(self.start))
        _set(self, "stop", aff(self.stop))
        _set(self, "step", int(self.step))
        _set(self, "body", tuple(self.body))
        if self.active is not None:
            _set(self, "active", Active(aff(self.active[0]), aff(self.active[1])))


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

    def holds(self, env) -> bool:
        """Whether the condition holds with the variables of `env` bound (`then` runs)."""
        a, op, b = self.cond
        return COMPARE[op](a.evaluate(env), b.evaluate(env))


Stmt = Union[Loop, Stage, If]
