"""Hypothesis strategies for dependence testing: small, valid, runnable random tile programs.

`tile_programs()` draws a `DrawnProgram`: a `TileProgram` that passes `verify(contract=False)`
(it may well break the contract: stages whose points meet, scatters naming a row twice; that
is what the oracle and the engine must see) plus the data of its inputs (`inputs`: {buffer
name: array}); const index tables carry theirs (`Buffer.data`).  The shape of a program:

* statements nested in up to 3 loops (drawn twice as often as a stage, so most programs
  have 1-3; sequential or parallel; bounds constant, shifted by `c*v` of an enclosing
  variable `v`, or clipped `0:min(v - lo + 1, n)`; step 2 now and then) with at most one
  `if` (an enclosing variable against a constant, maybe with an else), holding 1-3
  stages of 0-2 dims (bounds of the same forms, over the loops) with 1-4 ops each;
* ops: copies, elementwise adds (of two regions, a region and a constant, or a broadcast
  scalar; sometimes updating their own destination), gemms (plain, transposed,
  accumulating), add/max reductions, and gathers and scatters through 1-d index tables of
  their own (const or input data; values drawn freely, so repeated, or as a permutation
  tiled to the table length; negative values count from the end; padding, one past the
  end, reads zeros or writes nothing);
* regions of the data buffers `x` (an input), `y` and `z` (written: temp or output, rank 2
  or 3): one start per axis, an affine combination of up to three terms over the
  variables in scope with small coefficients (negative or non-unit; a variable drawn
  twice may cancel to zero), now and then wrapped in max/min/floor/mod, range axes of
  size 1-3 and stride 1 or 2.

Every start is shifted to be non-negative over the interval bounds of its variables and
every buffer is sized to the largest extent its regions reach, so programs are valid by
construction (no filtering).  Trip counts are capped (`MAX_POINTS` per stage, loops
included) so that a program runs in milliseconds.  Hypothesis shrinks every choice toward
its first option: one stage of one copy, no loops, constant starts, no quasi-affine
wrappers, unit strides, all-zero index tables.
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

import numpy as np
from hypothesis import strategies as st

from fractal.lower.tile_affine import Aff, aff, amax, amin, floordiv, mod
from fractal.lower.tile_ir import (COMPARISONS, Binary, Buffer, Const, Copy, Dim, Elementwise, Gather, Gemm, If,
                                   Load, Loop, Reduce, Region, Scatter, Stage, TileProgram)

INPUT, WRITTEN = "x", ("y", "z")  # the data buffers: x is read only, y and z are read and written
LOOP_VARS, DIM_VARS = ("i", "j", "k"), ("p", "q")
MAX_STAGES, MAX_LOOPS, MAX_OPS = 3, 3, 4
MAX_POINTS = 24  # the most points one stage runs over its enclosing loops and its dims together
COEFF = st.sampled_from([1, -1, 2, -2, 3])
QUASI = st.sampled_from(["", "", "", "", "", "max", "min", "floor", "mod"])
SIZE = st.integers(1, 3)
DATA_DTYPE = np.dtype("float64")


class DrawnProgram(NamedTuple):
    program: TileProgram
    inputs: dict[str, np.ndarray]

    def __repr__(self) -> str:  # a falsifying example, readable (the text form shows const data)
        return f"DrawnProgram(\n{self.program}\ninputs={self.inputs!r})"


@st.composite
def tile_programs(draw) -> DrawnProgram:
    return _Builder(draw).program()


class _Builder:
    """Draws one program top-down; scopes are tuples of (variable, inclusive interval)."""

    def __init__(self, draw):
        self.draw = draw
        self.rank = {name: draw(st.integers(2, 3)) for name in (INPUT, *WRITTEN)}
        self.need: dict[str, list[int]] = {}  # data buffer -> the extent each axis must have
        self.tables: list[tuple[Buffer, np.ndarray]] = []
        self.loops = self.stages = self.ifs = 0

    def program(self) -> DrawnProgram:
        body = self.block((), 1)
        buffers, inputs = [], {}
        for name in (INPUT, *WRITTEN):
            if name in self.need:
                role = "input" if name == INPUT else self.draw(st.sampled_from(["temp", "output"]))
                buffers.append(Buffer(name, tuple(max(1, n) for n in self.need[name]), DATA_DTYPE, role=role))
        size = int(np.prod(buffers[0].shape)) if buffers[0].name == INPUT else 0
        if size:  # distinct values, so that running ops in another order shows in the results
            inputs[INPUT] = np.arange(1, size + 1, dtype=DATA_DTYPE).reshape(buffers[0].shape) / 8
        for table, values in self.tables:
            if table.role == "input":
                inputs[table.name] = values
            buffers.append(table if table.role == "input" else replace(table, data=values))
        return DrawnProgram(TileProgram("drawn", buffers, body), inputs)

    # --- statements ------------------------------------------------------------------------

    def block(self, scope, points: int) -> list:
        stmts = []
        for _ in range(self.draw(st.integers(1, 2))):
            if self.stages == MAX_STAGES:
                break
            kinds = ["stage"] + ["loop"] * 2 * (self.loops < MAX_LOOPS) + ["if_"] * (bool(scope) and not self.ifs)
            stmts.append(getattr(self, self.draw(st.sampled_from(kinds)))(scope, points))
        return stmts

    def bounds(self, scope, points: int, step: int = 1):
        """(start, stop, the variable's interval, its most iterations) over the enclosing variables."""
        draw, ranges = self.draw, dict(scope)
        n = draw(st.integers(1, max(1, min(3, MAX_POINTS // points))))
        form = draw(st.sampled_from(["const", "shift", "clip"] if scope else ["const"]))
        var, (lo, _) = draw(st.sampled_from(scope)) if scope else (None, (0, 0))
        if form == "const":
            start = aff(draw(st.integers(0, 1)))
        elif form == "shift":
            start = draw(st.sampled_from([1, -1, 2])) * aff(var) + draw(st.integers(-1, 1))
        else:
            start = aff(0)
        stop = amin(aff(var) - lo + 1, n) if form == "clip" else start + n
        first, last = start.bounds(ranges)[0], stop.bounds(ranges)[1] - 1
        return start, stop, (first, max(first, last)), -(-n // step)

    def loop(self, scope, points: int) -> Loop:
        self.loops += 1
        var, step = LOOP_VARS[len(scope)], self.draw(st.sampled_from([1, 1, 1, 2]))
        start, stop, interval, trips = self.bounds(scope, points, step)
        kind = self.draw(st.sampled_from(["sequential", "parallel"]))
        return Loop(var, start, stop, step, kind, body=self.block(scope + ((var, interval),), points * trips))

    def if_(self, scope, points: int) -> If:
        self.ifs += 1
        var, (lo, hi) = self.draw(st.sampled_from(scope))
        cond = (aff(var), self.draw(st.sampled_from(COMPARISONS)), aff(self.draw(st.integers(lo, hi))))
        then = self.block(scope, points)
        return If(cond, then, self.block(scope, points) if self.draw(st.booleans()) else [])

    def stage(self, scope, points: int) -> Stage:
        name, self.stages = f"s{self.stages}", self.stages + 1
        dims, inner = [], scope
        for var in DIM_VARS[:self.draw(st.integers(0, 2))]:
            start, stop, interval, trips = self.bounds(scope, points)  # dims read the loops only
            dims.append(Dim(var, start, stop))
            inner, points = inner + ((var, interval),), points * trips
        return Stage(name, dims, [self.op(inner) for _ in range(self.draw(st.integers(1, MAX_OPS)))])

    # --- ops ---------------------------------------------------------------------------------

    def op(self, scope):
        draw = self.draw
        kind = draw(st.sampled_from(["copy", "add", "gemm", "reduce", "gather", "scatter"]))
        source = lambda shape: self.region(draw(st.sampled_from((INPUT, *WRITTEN))), shape, scope)  # noqa: E731
        target = lambda shape: self.region(draw(st.sampled_from(WRITTEN)), shape, scope)  # noqa: E731
        if kind == "copy":
            shape = self.shape()
            return Copy(source(shape), target(shape))
        if kind == "add":
            shape = self.shape()
            dst = target(shape)
            first = dst if draw(st.integers(0, 3)) == 0 else source(shape)  # an update: dst = dst + ...
            second = draw(st.sampled_from(["region", "const", "scalar"]))
            other = Const(1.0) if second == "const" else Load(source(shape if second == "region" else ()))
            return Elementwise(dst, Binary("add", Load(first), other))
        if kind == "gemm":
            (m, k, n), ta, tb = (draw(SIZE) for _ in range(3)), draw(st.booleans()), draw(st.booleans())
            return Gemm(source((k, m) if ta else (m, k)), source((n, k) if tb else (k, n)), target((m, n)),
                        draw(st.booleans()), ta, tb)
        if kind == "reduce":
            src, axis, keep = (draw(SIZE), draw(SIZE)), draw(st.integers(0, 1)), draw(st.booleans())
            dst = tuple(1 if a == axis else d for a, d in enumerate(src) if keep or a != axis)
            return Reduce(source(src), target(dst), (axis,), draw(st.sampled_from(["add", "max"])))
        rows, length, axis = draw(st.integers(1, 4)), draw(st.integers(1, 4)), 0
        table = (rows,) if draw(st.booleans()) else (rows, draw(SIZE))
        if len(table) == 2 and draw(st.booleans()):
            table, axis = table[::-1], 1
        picked = table[:axis] + (length,) + table[axis + 1:]
        index = self.index_table(scope, length, rows)
        if kind == "gather":
            return Gather(source(table), index, target(picked), axis)
        return Scatter(source(picked), index, target(table), axis)

    def shape(self) -> tuple[int, ...]:
        return tuple(self.draw(st.lists(SIZE, max_size=2)))

    def index(self, scope) -> Aff:
        """A start before shifting: up to three variables in scope with small coefficients (a
        variable drawn twice may cancel), maybe wrapped."""
        draw, names = self.draw, [var for var, _ in scope]
        terms = draw(st.lists(st.tuples(st.sampled_from(names), COEFF), max_size=3)) if names else []
        e = sum((c * aff(var) for var, c in terms), aff(0))
        quasi = draw(QUASI)
        if quasi in ("max", "min"):
            e = (amax if quasi == "max" else amin)(e, draw(st.integers(-2, 2)))
        elif quasi:
            e = (floordiv if quasi == "floor" else mod)(e, draw(st.integers(2, 3)))
        return e

    def region(self, name: str, shape, scope) -> Region:
        """A region of `shape` in data buffer `name`, growing the buffer to hold it everywhere."""
        draw, ranges, rank = self.draw, dict(scope), self.rank[name]
        kept = sorted(draw(st.permutations(range(rank)))[:len(shape)])
        sizes, starts, size, stride = iter(shape), [], [], []
        need = self.need.setdefault(name, [0] * rank)
        for axis in range(rank):
            e = self.index(scope)
            lo, hi = e.bounds(ranges)
            shift = draw(st.integers(0, 1))
            n = next(sizes) if axis in kept else None
            s = draw(st.sampled_from([1, 1, 1, 2])) if n and n > 1 else 1
            starts.append(e - lo + shift)
            size.append(n)
            stride.append(s)
            need[axis] = max(need[axis], hi - lo + shift + ((n or 1) - 1) * s + 1)
        return Region(name, starts, size, stride)

    def index_table(self, scope, length: int, rows: int) -> Region:
        """`length` entries of a fresh 1-d index table, every value a row of a `rows`-row region
        (negative ones counted from its end) or padding (`rows`: one past the end)."""
        draw = self.draw
        e = self.index(scope)
        lo, hi = e.bounds(dict(scope))
        entries = hi - lo + length
        if draw(st.booleans()):  # free values, tiled: repeats guaranteed once the table is longer
            pattern = draw(st.lists(st.integers(-rows, rows), min_size=1, max_size=6))
        else:  # the rows in some order, now and then padding among them
            pads = draw(st.sampled_from([0, 0, 1, 2]))
            pattern = draw(st.permutations(list(range(rows)) + [rows] * pads))
        values = (pattern * -(-entries // len(pattern)))[:entries]
        table = Buffer(f"idx{len(self.tables)}", (entries,), draw(st.sampled_from(["int64", "int32"])),
                       role=draw(st.sampled_from(["const", "const", "input"])))
        self.tables.append((table, np.array(values, table.dtype)))
        return Region(table.name, [e - lo], [length])
