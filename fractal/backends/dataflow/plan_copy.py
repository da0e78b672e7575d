"""The plan of a stage that only copies: its regions move home to home, no PE computes.

A stage whose ops are all plain copies (`copy` without a permutation, equal shapes, unit
strides) or scatters through a const index table (each row a copy, the rows named at plan
time) and that reads no buffer it writes is a redistribution: each copied element goes
from the home block that holds it to the home block that will (`home.Home`), in one
superstep of messages between homes, with no window and no compute.  This is how the
planner re-lays data between two consecutive products (T10's re-layout): the message count
is the number of (source block, destination block) pairs the regions meet, not the points'.
"""

from __future__ import annotations

import numpy as np

from fractal.backends.pointwise import stage_points
from fractal.lower.rewrite import map_regions, substitute_region
from fractal.lower.tile_ir import Const, Copy, Elementwise, Gather, Region, Scatter, Stage

from .home import Box
from .mesh_ir import Compute, Pes, Superstep, sends


def _plain(op) -> bool:
    return isinstance(op, Copy) and not op.perm and op.src.shape == op.dst.shape


def _row_scatter(planner, op) -> bool:
    """A scatter or gather through a const index table: rows copied to or from rows named at
    plan time (a gather's padding rows, one past the end, are zeros: filled where they live)."""
    return isinstance(op, (Scatter, Gather)) and planner.is_const(op.index.buffer)


def qualifies(planner, stage: Stage) -> bool:
    ops = stage.body
    if not ops or not all(_plain(op) or _row_scatter(planner, op) for op in ops):
        return False
    if any(s != 1 for op in ops for r in (op.src, op.dst) for s in r.stride):
        return False
    written = {op.dst.buffer for op in ops}
    return not written & {op.src.buffer for op in ops} and all(
        planner.home(r.buffer) is not None for op in ops for r in (op.src, op.dst))


def _rows(r: Region, axis: int, at, count: int = 1) -> Region:
    """Rows `at` to `at + count` of region `r` along its `axis`-th range axis."""
    buffer_axis = [a for a, size in enumerate(r.size) if size is not None][axis]
    start = list(r.start)
    start[buffer_axis] = start[buffer_axis] + at
    size = list(r.size)
    size[buffer_axis] = count
    return Region(r.buffer, tuple(start), tuple(size), r.stride)


def _runs(index: np.ndarray, size: int) -> list[tuple[int, int, int]]:
    """A const index table as runs (first position j, first row i, length) of rows that follow
    one another (i, i + 1, ...), negative rows counted from the end; rows outside [0, size)
    are runs of their own (padding)."""
    rows = np.where(index < 0, index + size, index).astype(np.int64)
    valid = (rows >= 0) & (rows < size)
    breaks = np.ones(len(rows), bool)
    breaks[1:] = ~(valid[1:] & valid[:-1] & (rows[1:] == rows[:-1] + 1))
    first = np.flatnonzero(breaks)
    lengths = np.diff(np.append(first, len(rows)))
    return list(zip(first.tolist(), rows[first].tolist(), lengths.tolist()))


def _copies(planner, stage: Stage, env: dict) -> tuple[list[Copy], list[Region]]:
    """The stage's moves as concrete copies, point by point (a scatter's or a gather's as one
    copy per run of consecutive rows), and the rows a gather's padding sets to zero."""
    out, zeros = [], []
    for point in stage_points(stage.dims, env):
        for op in stage.body:
            op = map_regions(op, lambda r: substitute_region(r, point))
            if isinstance(op, Copy):
                out.append(op)
                continue
            size = op.src.shape[op.axis] if isinstance(op, Gather) else op.dst.shape[op.axis]
            for j, i, n in _runs(np.asarray(planner.const_region(op.index, {}), np.int64), size):
                if isinstance(op, Scatter) and 0 <= i < size:   # one past the end: padding, written nowhere
                    out.append(Copy(_rows(op.src, op.axis, j, n), _rows(op.dst, op.axis, i, n)))
                elif isinstance(op, Gather):
                    if 0 <= i < size:
                        out.append(Copy(_rows(op.src, op.axis, i, n), _rows(op.dst, op.axis, j, n)))
                    else:                                        # one past the end: a row of zeros
                        zeros.append(_rows(op.dst, op.axis, j, n))
    return out, zeros


def _buffer_box(region, starts, q: Box) -> Box:
    """The buffer box of region-shape box `q` (range axes) of a region starting at `starts`."""
    out, k = [], 0
    for start, size in zip(starts, region.size):
        if size is None:
            out.append((int(start), int(start) + 1))
        else:
            lo, hi = q[k]
            out.append((int(start) + lo, int(start) + hi))
            k += 1
    return tuple(out)


def _region_box(region, starts, box: Box) -> Box:
    """The inverse of `_buffer_box`: a buffer box inside the region, in region coordinates."""
    return tuple((lo - int(start), hi - int(start)) for (lo, hi), start, size in zip(box, starts, region.size)
                 if size is not None)


def _part(home, part: Box, block: Box) -> tuple:
    return (home.local, tuple(lo - blo for (lo, _), (blo, _) in zip(part, block)), tuple(hi - lo for lo, hi in part))


def steps(planner, stage: Stage, env: dict, label: str) -> list[Superstep]:
    rows, fills = [], []
    copies, zeros = _copies(planner, stage, env)
    for op in copies:
        src_home, dst_home = planner.home(op.src.buffer), planner.home(op.dst.buffer)
        src_at, dst_at = [a.const for a in op.src.start], [a.const for a in op.dst.start]
        whole = tuple((0, s) for s in op.dst.shape)
        for dst_owner, dst_piece, dst_block in dst_home.pieces(_buffer_box(op.dst, dst_at, whole)):
            q = _region_box(op.dst, dst_at, dst_piece)
            for src_owner, src_piece, src_block in src_home.pieces(_buffer_box(op.src, src_at, q)):
                to = _buffer_box(op.dst, dst_at, _region_box(op.src, src_at, src_piece))
                rows.append((src_owner, dst_owner, _part(src_home, src_piece, src_block), _part(dst_home, to, dst_block)))
    for r in zeros:
        home = planner.home(r.buffer)
        at = [a.const for a in r.start]
        for owner, piece, block in home.pieces(_buffer_box(r, at, tuple((0, s) for s in r.shape))):
            local, starts, sizes = _part(home, piece, block)
            fills.append(Compute(Pes.one(*owner), (Elementwise(Region(local, starts, sizes), Const(0.0)),), (), stage.name))
    if not rows and not fills:
        return []
    return [Superstep(f"{label} copy", computes=tuple(fills), transfers=sends(rows))]
