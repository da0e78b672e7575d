"""An operand of a product plan, and the messages that move its tiles between homes and PEs.

A product plan (`plan_gemm`, `plan_grouped`) sees each gemm operand as one big matrix: the
points' regions stacked row after row (`stacked`: A and C, `m` rows per point) or one region
all points share (B).  A PE's tile is a box of that matrix (rows [r0, r1), columns [c0, c1)),
which meets the points' regions in boxes of the buffer; the homes (`home.Home`) hold those
in blocks.  `moves` builds the messages of every PE's tile at once, with NumPy: a run of
points whose rows follow one another in the buffer moves as one box, so a tile costs a few
messages per home block it meets, not one per point.

    a = Operand(region, starts, rows_axis=0, cols_axis=2, m=1, stacked=True)
    moves(planner, a, "ta", pes, base, r0, r1, c0, c1, into_tile=True)   # -> Sends tables
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fractal.lower.tile_ir import Gemm, Region

from .mesh_ir import sends_table


@dataclass
class Operand:
    """One operand of a product: its tile region, starts per point and axes."""

    region: Region
    starts: np.ndarray        # (points, ndim); one row for a shared operand
    rows_axis: int            # the buffer axis of the big matrix's rows (op applied)
    cols_axis: int
    m: int                    # rows per point (a stacked operand), or all rows (shared)
    stacked: bool
    _whole_breaks_by_width: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def transposed(self) -> bool:
        """The buffer stores the big matrix's columns before its rows: tiles keep buffer order."""
        return self.rows_axis > self.cols_axis

    def tile_shape(self, rows: int, cols: int) -> tuple[int, int]:
        return (cols, rows) if self.transposed else (rows, cols)

    def boxes(self, base, r0, r1, c0, c1):
        """The buffer boxes holding rows [r0, r1) and columns [c0, c1) of each tile (arrays
        over tiles; `base`: the first point of the tile's matrix, for a grouped product), one
        box per run of points whose rows lie next to each other in the buffer: (which tile,
        box lo, box hi, the box's first row in the tile, the axis the box grows along)."""
        base, r0, r1, c0, c1 = self._tiles(base, r0, r1, c0, c1)
        if len(base) and (r0 >= 0).all() and (r1 > r0).all() and (c1 > c0).all():
            return self._boxes_by_run(base, r0, r1, c0, c1)
        return self._boxes_per_point(base, r0, r1, c0, c1)   # (no tiles, or empty ones)

    def _tiles(self, base, r0, r1, c0, c1):
        """The tiles as int64 arrays; a shared operand's tiles all start at its one point."""
        base, r0, r1, c0, c1 = (np.asarray(x, np.int64) for x in (base, r0, r1, c0, c1))
        return (base if self.stacked else np.zeros_like(base)), r0, r1, c0, c1

    def _boxes_per_point(self, base, r0, r1, c0, c1):
        """`boxes` the plain way: a box per (tile, point), then merged (`_runs`)."""
        base, r0, r1, c0, c1 = self._tiles(base, r0, r1, c0, c1)
        m = self.m
        first_pt, count = base + r0 // m, (r1 - 1) // m - r0 // m + 1
        tile = np.repeat(np.arange(len(base)), count)
        pt = np.repeat(first_pt, count) + np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
        lo, hi, offset = self._point_boxes(tile, pt, base, r0, r1, c0, c1)
        return _runs(tile, lo, hi, offset, self.rows_axis, self.cols_axis)

    def _boxes_by_run(self, base, r0, r1, c0, c1):
        """`boxes` without a box per (tile, point): a tile's runs are its point range cut where
        a point does not continue the one before.  Only a tile's first and last points can be
        partial (r0, r1 inside a point), so only its breaks at points 1, 2 and k - 1 (which
        see them) are found box by box; the others are the operand's breaks between whole
        points (`_whole_breaks`), the same in every tile."""
        base, r0, r1, c0, c1 = self._tiles(base, r0, r1, c0, c1)
        m, ra = self.m, self.rows_axis
        first, count = base + r0 // m, (r1 - 1) // m - r0 // m + 1
        tiles = np.arange(len(base))

        def box(t, i):   # the box of tile t's i-th point
            return self._point_boxes(t, first[t] + i, base, r0, r1, c0, c1)

        def pair(t, i):  # does tile t's point i (>= 1) continue point i - 1, and along which axis
            return _continues(t, *box(t, i - 1), t, *box(t, i), ra, self.cols_axis)

        # breaks at the tile's points 1, 2 and k - 1 (those at 3 .. k - 2 see whole points only)
        t_edge = np.repeat(tiles, 3)
        i_edge = np.stack([np.ones_like(count), np.full_like(count, 2), count - 1], 1).ravel()
        lowest = np.tile([1, 2, 3], len(tiles))      # (point k - 1 when it is not point 1 or 2)
        keep = (i_edge >= lowest) & (i_edge < count[t_edge])
        t_edge, i_edge = t_edge[keep], i_edge[keep]
        joins, along = pair(t_edge, i_edge)
        joins_before, along_before = pair(t_edge, np.maximum(i_edge - 1, 1))
        breaks = ~joins | ((i_edge >= 2) & joins_before & (along_before != along))
        run_t, run_i = [tiles, t_edge[breaks]], [np.zeros_like(tiles), i_edge[breaks]]
        # breaks at points 3 .. k - 2, width by width (a join along the columns axis needs it)
        width = c1 - c0
        for w in np.unique(width):
            sel = np.flatnonzero(width == w)
            at = self._whole_breaks(int(w))
            start = np.searchsorted(at, first[sel] + 3)
            n = np.maximum(np.searchsorted(at, first[sel] + count[sel] - 1) - start, 0)
            t = np.repeat(sel, n)
            k = np.repeat(start - (np.cumsum(n) - n), n) + np.arange(n.sum())
            run_t.append(t)
            run_i.append(at[k] - first[t])
        run_t, run_i = np.concatenate(run_t), np.concatenate(run_i)
        order = np.lexsort((run_i, run_t))
        run_t, run_i = run_t[order], run_i[order]
        next_same = np.append(run_t[1:] == run_t[:-1], False)
        run_last = np.where(next_same, np.append(run_i[1:], 0) - 1, count[run_t] - 1)
        lo, hi, offset = box(run_t, run_i)
        _, hi_last, _ = box(run_t, run_last)
        grows = np.full(len(run_t), ra, np.int64)
        long = np.flatnonzero(run_last > run_i)      # the axis its first join went along
        grows[long] = pair(run_t[long], run_i[long] + 1)[1]
        hi[np.arange(len(run_t)), grows] = hi_last[np.arange(len(run_t)), grows]
        return run_t, lo, hi, offset, grows

    def _whole_breaks(self, width: int) -> np.ndarray:
        """The points q (sorted) where a run would break inside a tile whose points q - 2, q - 1
        and q are whole (m rows each) and `width` columns wide: q does not continue q - 1, or
        it does along another axis than q - 1 continued q - 2.  Cached per width."""
        cache = self._whole_breaks_by_width
        if width not in cache:
            starts, m, ra, ca = self.starts, self.m, self.rows_axis, self.cols_axis
            n = len(starts)
            lo = starts.astype(np.int64)
            hi = lo + 1
            hi[:, ra], hi[:, ca] = lo[:, ra] + m, lo[:, ca] + width
            row, same = np.arange(n, dtype=np.int64) * m, np.zeros(n, np.int64)
            breaks = np.zeros(n, bool)
            if n > 2:
                joins, along = _continues(same[:-1], lo[:-1], hi[:-1], row[:-1], same[1:], lo[1:], hi[1:], row[1:],
                                          ra, ca)
                breaks[2:] = ~joins[1:] | (joins[:-1] & (along[:-1] != along[1:]))
            cache[width] = np.flatnonzero(breaks)
        return cache[width]

    def _point_boxes(self, tile, pt, base, r0, r1, c0, c1):
        """The box of point `pt`'s part of tile `tile` (arrays) and its first row in the tile."""
        m, starts, ra, ca = self.m, self.starts, self.rows_axis, self.cols_axis
        pt_row = (pt - base[tile]) * m                     # the point's first row in the matrix
        row_lo, row_hi = np.maximum(r0[tile], pt_row), np.minimum(r1[tile], pt_row + m)
        lo = starts[pt].copy()
        hi = lo + 1
        lo[:, ra], hi[:, ra] = starts[pt, ra] + row_lo - pt_row, starts[pt, ra] + row_hi - pt_row
        lo[:, ca], hi[:, ca] = starts[pt, ca] + c0[tile], starts[pt, ca] + c1[tile]
        return lo, hi, row_lo - r0[tile]


def _continues(tile_a, lo_a, hi_a, offset_a, tile_b, lo_b, hi_b, offset_b, ra: int, ca: int):
    """Does box b continue box a (arrays over pairs) in the buffer and in the tile (same tile,
    the next rows): along the rows axis, or along another axis when each box is one row (the
    points of a list stacked on an index axis) on the same side of the columns axis as the rows
    axis, so that both sides keep row-major order.  Returns (continues, along which axis)."""
    meets = lo_b == hi_a                                            # (n, d): continues along that axis
    same = (lo_b == lo_a) & (hi_b == hi_a)
    along = np.argmax(meets, 1)
    rest_same = (same | meets).all(1) & (meets.sum(1) == 1)
    rows_a, rows_b = (hi_a - lo_a)[:, ra], (hi_b - lo_b)[:, ra]
    ok = np.where(along == ra, True, (rows_b == 1) & (rows_a == 1) & ((along < ca) == (ra < ca)))
    return (tile_b == tile_a) & rest_same & ok & (offset_b == offset_a + np.where(along == ra, rows_a, 1)), along


def _runs(tile, lo, hi, offset, ra: int, ca: int):
    """Boxes merged with the one before when they continue it (`_continues`).  Returns (which
    tile, lo, hi, first row in the tile, the axis each merged box grows along)."""
    n, d = lo.shape
    axis = np.full(n, ra, np.int64)
    joins = np.zeros(n, bool)
    if n > 1:
        joins[1:], along = _continues(tile[:-1], lo[:-1], hi[:-1], offset[:-1], tile[1:], lo[1:], hi[1:], offset[1:],
                                      ra, ca)
        axis[1:] = np.where(joins[1:], along, ra)
        # a run grows along one axis: a join along another axis than the previous join starts a new run
        change = joins[1:] & joins[:-1] & (axis[1:] != axis[:-1])
        joins[1:] &= ~change
    first = np.flatnonzero(~joins)
    last = np.append(first[1:], n) - 1
    grows = np.where(last > first, axis[np.minimum(first + 1, n - 1)], ra)
    hi_run = hi[first].copy()
    hi_run[np.arange(len(first)), grows] = hi[last, grows]
    return tile[first], lo[first], hi_run, offset[first], grows


def gemm_operands(op: Gemm, starts, stacked_b: bool):
    """A gemm op's three operands (op applied) and its sizes (a, b, c, m, K, N): `starts(region)`
    gives a region's starts per point; B is one shared region or, `stacked_b`, one per point."""
    (a0, a1), (b0, b1), (c0, c1) = op.a.range_axes, op.b.range_axes, op.c.range_axes
    m, k = (op.a.size[a1], op.a.size[a0]) if op.trans_a else (op.a.size[a0], op.a.size[a1])
    n = op.c.size[c1]
    a = Operand(op.a, starts(op.a), a1 if op.trans_a else a0, a0 if op.trans_a else a1, m, True)
    b = Operand(op.b, starts(op.b) if stacked_b else starts(op.b)[:1], b1 if op.trans_b else b0,
                b0 if op.trans_b else b1, k, stacked_b)
    c = Operand(op.c, starts(op.c), c0, c1, m, True)
    return a, b, c, m, k, n


def messages(planner, operand: Operand, base, r0, r1, c0, c1):
    """Every piece of the tiles' boxes in a home block, as arrays over the pieces: (which
    tile, owner PE (k, 2), start and sizes in the home block, start and sizes in the tile)."""
    which, lo, hi, offset, grows = operand.boxes(base, r0, r1, c0, c1)
    home = planner.home(operand.region.buffer)
    box, owner, part_lo, part_hi, block_lo = home.pieces_many(lo, hi)
    ra, ca = operand.rows_axis, operand.cols_axis
    size = part_hi - part_lo
    row, rows = (offset - lo[:, ra])[box] + part_lo[:, ra], size[:, ra]
    if (grows != ra).any():
        g, k = grows[box], np.arange(len(box))
        other = g != ra          # merged along an index axis: each of its elements is one row
        row, rows = row + np.where(other, part_lo[k, g] - lo[box, g], 0), rows * np.where(other, size[k, g], 1)
    at_tile = np.stack([row, part_lo[:, ca] - lo[:, ca][box]], 1)
    tile_size = np.stack([rows, size[:, ca]], 1)
    if operand.transposed:
        at_tile, tile_size = at_tile[:, ::-1], tile_size[:, ::-1]
    cols = planner.spec.cols
    return which[box], np.stack([owner // cols, owner % cols], 1), part_lo - block_lo, size, at_tile, tile_size


def moves(planner, operand: Operand, tile: str, pes, base, r0, r1, c0, c1, into_tile: bool) -> tuple:
    """The messages between `operand`'s homes and tile `tile` on PE `pes[t]` (rows, cols) holding
    rows [r0[t], r1[t]) and columns [c0[t], c1[t]) of its matrix, as `Sends` tables."""
    pes = np.asarray(pes, np.int64).reshape(-1, 2)
    which, owner, at_home, home_size, at_tile, tile_size = messages(planner, operand, base, r0, r1, c0, c1)
    if not len(which):
        return ()
    local = planner.home(operand.region.buffer).local
    here = pes[which]
    if into_tile:
        return sends_table(local, tile, np.concatenate([owner, here], 1), at_home, at_tile, home_size, tile_size)
    return sends_table(tile, local, np.concatenate([here, owner], 1), at_tile, at_home, tile_size, home_size)


def box_moves(home, local: str, lo, hi, pes, cols: int, into_local: bool) -> tuple:
    """The messages of buffer boxes `[lo[j], hi[j])` between their home blocks and local buffer
    `local` on PE id `pes[j]` (the box at 0 there: no slot axis), as `Sends` tables."""
    box, owner, part_lo, part_hi, block_lo = home.pieces_many(lo, hi)
    there = np.stack([owner // cols, owner % cols], 1)
    here = np.stack([pes[box] // cols, pes[box] % cols], 1)
    at_home, at_local, sizes = part_lo - block_lo, part_lo - lo[box], part_hi - part_lo
    if into_local:
        return sends_table(home.local, local, np.concatenate([there, here], 1), at_home, at_local, sizes)
    return sends_table(local, home.local, np.concatenate([here, there], 1), at_local, at_home, sizes)
