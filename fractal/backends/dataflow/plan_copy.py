"""The plan of a stage that only copies: its regions move home to home, no PE computes.

A stage whose ops are all plain copies (`copy` without a permutation, equal shapes, unit
strides) and that reads no buffer it writes is a redistribution: each copied element goes
from the home block that holds it to the home block that will (`home.Home`), in one
superstep of messages between homes, with no window and no compute.  This is how the
planner re-lays data between two consecutive products (T10's re-layout): the message count
is the number of (source block, destination block) pairs the regions meet, not the points'.
"""

from __future__ import annotations

import numpy as np

from fractal.backends.pointwise import stage_points
from fractal.lower.tile_affine import evaluate_many
from fractal.lower.tile_ir import Copy, Stage

from .home import Box
from .mesh_ir import Superstep, sends


def qualifies(planner, stage: Stage) -> bool:
    ops = stage.body
    if not ops or not all(isinstance(op, Copy) and not op.perm and op.src.shape == op.dst.shape for op in ops):
        return False
    if any(s != 1 for op in ops for r in (op.src, op.dst) for s in r.stride):
        return False
    written = {op.dst.buffer for op in ops}
    return not written & {op.src.buffer for op in ops} and all(
        planner.home(r.buffer) is not None for op in ops for r in (op.src, op.dst))


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
    points = list(stage_points(stage.dims, env))
    if not points:
        return []
    values = {v: np.array([p[v] for p in points], np.int64) for v in points[0]}
    rows = []
    for op in stage.body:
        src_home, dst_home = planner.home(op.src.buffer), planner.home(op.dst.buffer)
        at = lambda r: np.stack([np.broadcast_to(evaluate_many(a, values), (len(points),))  # noqa: E731
                                 for a in r.start], 1)
        src_starts, dst_starts = at(op.src), at(op.dst)
        whole = tuple((0, s) for s in op.dst.shape)
        for i in range(len(points)):
            for dst_owner, dst_piece, dst_block in dst_home.pieces(_buffer_box(op.dst, dst_starts[i], whole)):
                q = _region_box(op.dst, dst_starts[i], dst_piece)
                for src_owner, src_piece, src_block in src_home.pieces(_buffer_box(op.src, src_starts[i], q)):
                    q2 = _region_box(op.src, src_starts[i], src_piece)
                    to = _buffer_box(op.dst, dst_starts[i], q2)
                    rows.append((src_owner, dst_owner, _part(src_home, src_piece, src_block), _part(dst_home, to, dst_block)))
    return [Superstep(f"{label} copy", transfers=sends(rows))]
