"""Stages over polygons: dims nested like loops, run as one flat axis of points.

A stage whose dims' bounds read earlier dims (an n-d wavefront's hyperplane
`f + i + j = w`) has no box to view regions over.  It runs over its points as one flat
axis instead: every op gets `box = (P,)` and arrays of shape `(P, *region shape)`, so
the op rules of a box (`ops.RULES`, `elementwise`) run unchanged on them, except GEMM,
gather and scatter (`polygon_ops`).  A run costs a few NumPy calls per op:

* the points (index arrays of the stage variables, in loop order) and, per region, where
  each point's tile lies are computed once per value of the enclosing variables the
  bounds and regions read (a `PointPlan`), and kept: a wavefront loop runs the same few
  steps on every program run.  At most `MAX_PLANS` per stage (the oldest goes first).
* a region that reads no stage variable is one tile every point shares: a view with
  stride 0 over the points (`SharedAccess`), as in a box.
* any other region is gathered (reads) or assigned (writes) with one fancy index
  (`PointAccess`): a tile of up to `FLAT_TILE` elements by an index array of its
  elements over a flat element view of the buffer (NumPy's fastest fancy index: one
  1-d array); a larger one by its points' tile origins over a *window* view, whose row
  `r` is the tile starting at element `r` (`np.ndarray` with stride one element on axis
  0 and the tile's strides after), so the index is P entries whatever the tile size.
  Measured (f32): a tile of 4 elements over 256 points, 1.1 us flat and 3.7 us by
  windows; of 64, 118 us flat and 4.8 us by windows.

Views of a buffer's bytes are built once per bound array (`Memory.derived`).  Buffers
whose byte strides are not whole elements (foreign inputs) are windowed by bytes.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from fractal.lower.tile_ir import Region, Stage

from .indices import compile_lambda, index_source
from .views import Memory, RegionAccess

MAX_PLANS = 512  # point plans kept per stage: a wavefront's steps, with room for other lengths
FLAT_TILE = 16  # tiles up to this many elements are gathered by an element index (see above)
_INTP = np.intp


class PointPlan:
    """The points of one run of a polygon stage, and what accesses and ops derive from them
    (`derived`: under keys their derivers hold, each with the buffer strides it assumed)."""

    __slots__ = ("size", "box", "points", "derived")

    def __init__(self, points: dict[str, np.ndarray], size: int):
        self.size, self.box, self.points, self.derived = size, (size,), points, {}

    def env(self, env) -> dict:
        """`env` with the stage variables as index arrays over the points."""
        return {**env, **self.points}


def compile_points(dims) -> Callable:
    """`f(env) -> PointPlan` of nested dims (points in loop order), or None when empty."""
    bounds = [(d.var, compile_lambda("e", index_source(d.start, vector=True)),
               compile_lambda("e", index_source(d.stop, vector=True))) for d in dims]

    def points(env):
        e, cols, size = dict(env), {}, 1
        for var, start, stop in bounds:
            lo = np.broadcast_to(np.asarray(start(e), _INTP), (size,))
            n = np.broadcast_to(np.maximum(np.asarray(stop(e), _INTP) - lo, 0), (size,))
            total = int(n.sum())
            if total == 0:
                return None
            owner = np.repeat(np.arange(size, dtype=_INTP), n)  # the outer point each new one extends
            first = np.cumsum(n) - n  # where each outer point's run of new points begins
            cols = {k: x[owner] for k, x in cols.items()}
            cols[var] = lo[owner] + np.arange(total, dtype=_INTP) - first[owner]
            e.update(cols)
            size = total
        return PointPlan(cols, size)
    return points


class PointPlans:
    """`plans(env) -> PointPlan or None` of a polygon stage, cached per value of the
    enclosing variables its dims' bounds and regions read (`key(env)`; at most `MAX_PLANS`
    in `cache`, the oldest dropped first)."""

    def __init__(self, stage: Stage):
        names, outer = {d.var for d in stage.dims}, set()
        for d in stage.dims:
            outer |= d.start.vars() | d.stop.vars()
        for op in stage.body:
            for r in op.reads + op.writes:
                for x in r.start:
                    outer |= x.vars()
        self.key = compile_lambda("e", "(" + "".join(f"e[{v!r}], " for v in sorted(outer - names)) + ")")
        self.points = compile_points(stage.dims)
        self.cache: dict = {}

    def __call__(self, env) -> PointPlan | None:
        key = self.key(env)
        found = self.cache.get(key, self)  # (self: not planned yet; None: no point)
        if found is self:
            if self.cache and len(self.cache) >= MAX_PLANS:
                del self.cache[next(iter(self.cache))]
            found = self.cache[key] = self.points(env)
        return found


class PolygonScope:
    """What compiling a polygon stage's ops needs (as `executor._Scope` for a box): accesses
    over the flat point axis, buffer dtypes and the stage variables."""

    def __init__(self, memory, stage_vars: tuple[str, ...]):
        self.memory, self.stage_vars = memory, stage_vars
        self.dtypes = {name: m.buffer.dtype for name, m in memory.items()}
        self.keys: dict = {}  # what accesses derive from a plan -> its key in `PointPlan.derived`

    def access(self, region: Region, pads: int = 0):
        names = set(self.stage_vars)
        if any(x.vars() & names for x in region.start):
            return PointAccess(region, self.memory[region.buffer], pads, self.keys)
        return SharedAccess(region, self.memory[region.buffer], (_NO_VAR,), pads)


_NO_VAR = "<points>"  # a box dim no region reads: SharedAccess views have stride 0 over it


class SharedAccess(RegionAccess):
    """A region every point shares: a view with stride 0 over the points (`get(env, plan,
    (P,))`), its byte offset in the buffer's raw bytes by `origins`."""

    def origins(self, env, plan) -> int:
        m = self.memory
        return m.origin + self._offset(env, m.strides, ())


def _element_unit(m: Memory) -> int:
    """Bytes per step of a flat or window view of `m`: an element where the buffer's byte
    strides and origin are whole elements (always, for buffers this executor allocates)."""
    item = m.buffer.dtype.itemsize
    return item if m.origin % item == 0 and all(s % item == 0 for s in m.strides) else 1


def window(m: Memory, shape: tuple, strides: tuple) -> tuple[int, int, np.ndarray]:
    """`(first, unit, view)`: `view[r]` is the tile of `shape` (byte `strides`) whose origin
    lies `first + r * unit` bytes into the buffer's raw bytes, for every origin that keeps
    the tile inside them.  Built once per bound array."""
    key = ("window", shape, strides)
    found = m.derived.get(key)
    if found is None:
        unit = _element_unit(m)
        spans = [(n - 1) * s for n, s in zip(shape, strides)]
        first = -sum(s for s in spans if s < 0)  # a negative stride reaches below the origin
        last = m.raw.size - m.buffer.dtype.itemsize - sum(s for s in spans if s > 0)
        rows = max(0, (last - first) // unit + 1)
        view = np.ndarray((rows,) + shape, m.buffer.dtype, m.raw, first, (unit,) + strides)
        found = m.derived[key] = (first, unit, view)
    return found


def elements(m: Memory) -> np.ndarray:
    """The buffer's raw bytes as a flat array of its elements (`_element_unit` must be one
    element)."""
    found = m.derived.get("elements")
    if found is None:
        found = m.derived["elements"] = m.raw.view(m.buffer.dtype)
    return found


class PointAccess:
    """A region that moves with the points: `get(env, plan, box)` gathers `(P, *pads,
    *shape)` (`pads` size-1 axes for broadcasting in an elementwise expression), `put`
    assigns such an array (broadcast, cast unsafely like `np.copyto`).  `index` is the fancy
    index into `storage()` that `get` and `put` use; a caller may permute it along the points."""

    is_view = False

    def __init__(self, region: Region, memory: Memory, pads: int, keys: dict):
        self.region, self.memory, self.pads = region, memory, pads
        self.dtype, self.shape = memory.buffer.dtype, region.shape
        self._starts = compile_lambda("e", "(" + "".join(f"{index_source(x, vector=True)}, "
                                                         for x in region.start) + ")")
        self._ranges = [(k, n, st) for k, (n, st) in enumerate(zip(region.size, region.stride)) if n is not None]
        self._small = math.prod(self.shape) <= FLAT_TILE
        self._bound_to = None  # the buffer strides the layout below was worked out for
        # a plan's entries are shared by accesses of equal regions (an op may load one several
        # times), under small ints: hashing a region on every run would cost more than the gather
        self._origins_key = keys.setdefault(("origins", region.buffer, region.start), len(keys))
        self._index_key = keys.setdefault(("index", region, pads), len(keys))

    def _layout(self):
        """(by elements?, window shape, window byte strides) for the bound buffer's strides."""
        m = self.memory
        if m.strides != self._bound_to:
            self._bound_to = m.strides
            self._by_elements = self._small and _element_unit(m) == self.dtype.itemsize
            self._window = ((1,) * self.pads + self.shape,
                            (0,) * self.pads + tuple(st * m.strides[k] for k, _, st in self._ranges))
            self._storage_key = "elements" if self._by_elements else ("window",) + self._window
        return self._by_elements, self._window

    def origins(self, env, plan: PointPlan) -> np.ndarray:
        """Byte offsets of each point's tile origin in the buffer's raw bytes, `(P,)`."""
        m = self.memory
        found = plan.derived.get(self._origins_key)
        if found is None or found[0] != m.strides:
            total = m.origin
            for x, stride in zip(self._starts(plan.env(env)), m.strides):
                total = total + np.asarray(x, _INTP) * stride
            found = plan.derived[self._origins_key] = (m.strides, np.broadcast_to(total, (plan.size,)).astype(_INTP))
        return found[1]

    def index(self, env, plan: PointPlan) -> np.ndarray:
        """Flat element indices `(P, *pads, *shape)`, or window rows `(P,)` (see the module)."""
        m = self.memory
        found = plan.derived.get(self._index_key)
        if found is None or found[0] != m.strides:
            by_elements, (shape, strides) = self._layout()
            origins = self.origins(env, plan)
            if by_elements:
                item, tile = self.dtype.itemsize, np.zeros(shape, _INTP)
                for axis, (n, stride) in enumerate(zip(shape, strides)):
                    tile = tile + (np.arange(n, dtype=_INTP) * (stride // item)).reshape(
                        (n,) + (1,) * (len(shape) - axis - 1))
                rows = (origins // item).reshape((-1,) + (1,) * len(shape)) + tile
            else:
                first, unit, _ = window(m, shape, strides)
                rows = (origins - first) // unit
            found = plan.derived[self._index_key] = (m.strides, rows)
        return found[1]

    def storage(self) -> np.ndarray:
        """The array `index` indexes: the buffer's elements, or its window view."""
        m = self.memory
        if m.strides == self._bound_to:  # the common case first: a dict lookup
            found = m.derived.get(self._storage_key)
            if found is not None:
                return found if self._by_elements else found[2]
        by_elements, (shape, strides) = self._layout()
        return elements(m) if by_elements else window(m, shape, strides)[2]

    def get(self, env, plan: PointPlan, box) -> np.ndarray:
        return self.storage()[self.index(env, plan)]

    def put(self, env, plan: PointPlan, box, value) -> None:
        self.storage()[self.index(env, plan)] = value


def compile_polygon(stage: Stage, memory, rules) -> Callable:
    """`run(env) -> bool` for a polygon stage (False where no point runs); `rules` maps
    op types to compilers of `run(env, plan, box)` (`polygon_ops.RULES`)."""
    scope = PolygonScope(memory, tuple(d.var for d in stage.dims))
    ops = [rules[type(op)](op, scope) for op in stage.body]
    plan_of = PointPlans(stage)

    def run(env) -> bool:
        plan = plan_of(env)
        if plan is None:
            return False
        box = plan.box
        for op in ops:
            op(env, plan, box)
        return True
    return run
