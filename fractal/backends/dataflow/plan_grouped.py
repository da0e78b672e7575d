"""Grouped products: a stage that is one gemm whose right operand changes with some of its dims.

A stacked RNN's step multiplies every layer's rows by that layer's weights, points `(f, m)`:

    t12[256*f + m, 0:1, 0:1024] = gemm(h[16384*f + 256*s + m, 0:1, 0:256], w[f, 0:256, 0:1024])

The dims the right operand reads (`f`: the *group dims*) split the points into groups, each
one stacked product `(M_g x K) @ (K x N)` with its own `B` (M_g: the group's points times their
rows).  The plan gives every group a block of PEs for the whole program (`Layout`: the mesh cut
into as many equal rectangles as the group dims have values over the program) and, in its
block, a grid of `gr x gc` PEs: PE (i, j) holds B's columns j (`K x N/gc`), fetches rows i of
the group's A (`M_g/gr x K`) from their homes, computes its `M_g/gr x N/gc` tile of C and
writes it back.  When nothing writes B from the stage's statement on (an input, a const, or
a weight an earlier statement laid out: `Planner.read_only`) its tiles stay on their PEs
from the first run to the end (a layer's weights move once: the paper's reuse, WaferLLM's
stationary weights); otherwise they are fetched at every run.  `gc` is fixed per stage (the
resident tiles' shape); the rows are cut in bands of one size, so groups of different sizes
(a wavefront's triangle of cells) get as many grid rows as their bands, and a group with more
bands than its block has grid rows runs them in rounds (band i on grid row i mod rows: the
same PEs, so resident tiles still load once).

Messages are built for all PEs at once: consecutive points whose rows lie next to each other
in their buffer move as one box (`operand.moves`), so a run costs a few messages per PE, not one per
point.  The stage's points stay independent, so fetching everything first and writing back
after is the stage's own semantics.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fractal.backends.pointwise import region_starts, stage_point_values
from fractal.lower.tile_ir import Gemm, Region, Stage

from .mesh_ir import Alloc, Compute, Free, Superstep, covering
from .operand import gemm_operands, moves


@dataclass
class Layout:
    """A grouped stage's PEs for the whole program: group key -> block, the grid's columns."""

    blocks: tuple[tuple[int, int], ...]     # every block's top-left PE
    block: tuple[int, int]                  # PEs per block (rows, cols)
    gc: int
    keys: dict = field(default_factory=dict)   # group key -> block index
    loaded: set = field(default_factory=set)   # PE ids holding their group's B tile (resident)

    def block_of(self, key) -> int | None:
        if key not in self.keys:
            if len(self.keys) == len(self.blocks):
                return None
            self.keys[key] = len(self.keys)
        return self.keys[key]

    def pes(self, block, i, j, gc: int) -> np.ndarray:
        """The (row, col) of PE (i, j) of the grid of `gc` columns in each block (arrays)."""
        q, corner = i * gc + j, np.array(self.blocks, np.int64).reshape(-1, 2)[block]
        return np.stack([corner[:, 0] + q // self.block[1], corner[:, 1] + q % self.block[1]], 1)


def qualifies(planner, stage: Stage) -> bool:
    """One gemm, unit strides, a right operand that reads some (not all) of the stage's dims."""
    if len(stage.body) != 1 or not isinstance(stage.body[0], Gemm):
        return False
    op: Gemm = stage.body[0]
    dims = {d.var for d in stage.dims}
    return bool(op.b.vars() & dims) and all(s == 1 for r in (op.a, op.b, op.c) for s in r.stride) \
        and all(planner.home(r.buffer) is not None for r in (op.a, op.b, op.c))


def _group_extent(planner, stage: Stage, group_dims) -> int:
    extent = 1
    for v in group_dims:
        lo, hi = planner.ranges.get(v, (0, 0))
        extent *= hi - lo + 1
    return extent


def _layout(planner, extent: int, K: int, N: int, itemsize: int) -> Layout | None:
    """Blocks: the largest equal rectangles of which the mesh holds `extent`; gc: the fewest
    columns of B per PE whose resident tile takes at most a quarter of what a PE has left
    (the block's PEs hold every layer's tiles of the step's products, and the bands), else
    the smallest tiles if they take at most half."""
    spec = planner.spec
    shapes = [(br, bc) for br in range(1, spec.rows + 1) if spec.rows % br == 0
              for bc in range(1, spec.cols + 1) if spec.cols % bc == 0
              if (spec.rows // br) * (spec.cols // bc) >= extent]
    if not shapes:
        return None
    br, bc = max(shapes, key=lambda s: (s[0] * s[1], -abs(s[0] - s[1])))
    room = int(planner.free().min())
    divisors = [g for g in range(1, min(N, br * bc) + 1) if N % g == 0]
    options = [g for g in divisors if K * (N // g) * itemsize <= room // 4] or \
        [g for g in divisors[::-1] if K * (N // g) * itemsize <= room // 2]   # (tight: the smallest tiles)
    if not options:
        return None
    blocks = tuple((r, c) for r in range(0, spec.rows, br) for c in range(0, spec.cols, bc))[:extent]
    return Layout(blocks, (br, bc), options[0])


class GroupedPlan:
    """The plan of one run of a grouped stage (module docstring); `steps()` or None."""

    def __init__(self, planner, stage: Stage, env: dict, label: str):
        self.p, self.stage, self.label = planner, stage, label
        self.op: Gemm = stage.body[0]
        dims = {d.var for d in stage.dims}
        self.group_dims = sorted(self.op.b.vars() & dims)
        self.values, self.n = stage_point_values(stage.dims, env)

    def steps(self) -> list[Superstep] | None:
        if not self.n:
            return []
        p, op = self.p, self.op
        keys = np.stack([self.values[v] for v in self.group_dims], 1)
        order = np.lexsort((np.arange(self.n),) + tuple(keys.T[::-1]))   # by group, then point order
        group_keys, first, counts = np.unique(keys[order], axis=0, return_index=True, return_counts=True)
        a, b, c, m, K, N = gemm_operands(op, lambda r: region_starts(r, self.values, self.n)[order], stacked_b=True)
        itemsize = p.itemsize(op.b.buffer)
        layouts = p.grouped_layouts
        if self.stage.name not in layouts:
            extent = _group_extent(p, self.stage, self.group_dims)
            if extent > p.spec.pes:
                return None
            layouts[self.stage.name] = _layout(p, extent, K, N, itemsize)
        layout = layouts[self.stage.name]
        if layout is None:
            return None
        # every group's rows cut in bands of one size (the tiles of one SPMD compute): the
        # smallest band that divides every group's rows and leaves each group PEs enough; with
        # none, bands of the largest such size, a group's grid rows taking them in rounds
        gc, Mg = layout.gc, counts * m
        rows = layout.block[0] * layout.block[1] // gc      # grid rows in a block
        common = int(np.gcd.reduce(Mg))
        fits = [d for d in range(1, common + 1) if common % d == 0 and int(Mg.max()) // d <= rows]
        band = fits[0] if fits else common
        bands = Mg // band                                  # per group
        blocks = [layout.block_of(tuple(int(x) for x in k)) for k in group_keys]
        if any(blk is None for blk in blocks):
            return None
        self.layout, self.blocks, self.first, self.operands = layout, blocks, first, (a, b, c, K, N)
        self.resident = p.read_only(op.b.buffer)
        out = []
        for t in range(-(-int(bands.max()) // rows)):
            step = self._round(t, rows, band, np.clip(bands - t * rows, 0, rows))
            if step is None:
                return None
            out += step
        return out

    def _round(self, t: int, rows: int, band: int, gr) -> list[Superstep] | None:
        """Round t: the bands t*rows .. (t+1)*rows - 1 of every group, `gr[g]` of them, band i on
        the grid's row i - t*rows."""
        p, op, layout, resident = self.p, self.op, self.layout, self.resident
        a, b, c, K, N = self.operands
        itemsize, gc = p.itemsize(op.b.buffer), layout.gc
        nt = N // gc
        sa, sb, sc = a.tile_shape(band, K), b.tile_shape(K, nt), c.tile_shape(band, nt)
        transient = band * K * itemsize + band * nt * p.itemsize(op.c.buffer) + (0 if resident else K * nt * itemsize)
        res_bytes = K * nt * itemsize if resident else 0
        # every (group, i, j) PE of the round, row-major over groups
        per = gr * gc
        gi = np.repeat(np.arange(len(gr)), per)
        k = np.arange(len(gi)) - np.repeat(np.cumsum(per) - per, per)
        ii, jj = k // gc, k % gc
        pes = layout.pes(np.array(self.blocks, np.int64)[gi], ii, jj, gc)
        row0 = (ii + t * rows) * band     # the band's first row in its group's matrix
        cols = p.spec.cols
        ids = pes[:, 0] * cols + pes[:, 1]
        # B's tile j of a group goes to every PE of its block that does not hold it yet: all of
        # them when B is not resident, else those new to the group (it grows along a wavefront)
        load = ~np.isin(ids, np.fromiter(layout.loaded, np.int64, len(layout.loaded))) if resident \
            else np.ones(len(ids), bool)
        free = p.free().reshape(p.spec.rows, p.spec.cols)[pes[:, 0], pes[:, 1]]
        if (free - np.where(load, res_bytes, 0) < transient).any():
            return None
        name = f"grouped_{self.stage.name}"
        ta = p.declare(f"{name}_a_{band}x{K}", sa, p.buffers[op.a.buffer].dtype)
        tc = p.declare(f"{name}_c_{band}x{nt}", sc, p.buffers[op.c.buffer].dtype)
        tb = p.declare(f"{name}_b_{K}x{nt}" if resident else f"{name}_bt_{K}x{nt}", sb, p.buffers[op.b.buffer].dtype)
        base = self.first[gi]     # each PE's group's first point (in `order`)
        fetch = moves(p, a, ta, pes, base, row0, row0 + band, np.zeros_like(jj), np.full_like(jj, K), True)
        if op.accumulate:
            fetch += moves(p, c, tc, pes, base, row0, row0 + band, jj * nt, (jj + 1) * nt, True)
        back = moves(p, c, tc, pes, base, row0, row0 + band, jj * nt, (jj + 1) * nt, False)
        if load.any():
            bsel = np.flatnonzero(load)
            fetch += moves(p, b, tb, pes[bsel], base[bsel], np.zeros(len(bsel), np.int64),
                            np.full(len(bsel), K, np.int64), jj[bsel] * nt, (jj[bsel] + 1) * nt, True)
        rects = covering(ids, cols)
        allocs = [Alloc((ta, tc) + (() if resident else (tb,)), rect) for rect in rects]
        if resident and load.any():
            loading = sorted(set(ids[load].tolist()))
            allocs += [Alloc((tb,), rect) for rect in covering(loading, cols)]
            for q in loading:
                p.resident_live[q // cols, q % cols] += res_bytes
            layout.loaded |= set(loading)
        gemm = Gemm(Region(ta, (0, 0), sa), Region(tb, (0, 0), sb), Region(tc, (0, 0), sc),
                    accumulate=op.accumulate, trans_a=a.transposed, trans_b=b.transposed)
        computes = [Compute(rect, (gemm,), (), self.stage.name) for rect in rects]
        frees = [Free((ta, tc) + (() if resident else (tb,)), rect) for rect in rects]
        shape = f"{int(gr.max())}x{gc}" + ("" if (gr == gr[0]).all() else f" (bands of {band})") + \
            (f" round {t}" if t else "")
        return [Superstep(f"{self.label} grouped {shape}: fetch", allocs=tuple(allocs), transfers=tuple(fetch)),
                Superstep(f"{self.label} grouped {shape}", computes=tuple(computes), transfers=tuple(back),
                          frees=tuple(frees))]
