"""A compute run on a block of PEs at once: its ops on views of the block's buffers.

The BSP engine and a rank of the MPI executor (`blocked`) hold a buffer of a block of PEs
as one array `(rows, cols, *shape)`.  A compute whose regions do not read the PE's
coordinates (`reads_pe`) does the same on each PE, so its ops run once on `trailing` views
(the grid axes last, so that NumPy aligns the buffer axes as one PE's would) instead of PE
by PE: `batched_op` per point, the same rules as `fractal.backends.pointwise`'s.

    arrays = {name: trailing(grid[name][r0:r1, c0:c1]) for name in grid}
    for env in stage_points(cp.dims, {}):
        for op in cp.ops:
            batched_op(op, env, arrays)
"""

from __future__ import annotations

import numpy as np

from fractal.backends.pointwise import RULES, region
from fractal.lower.tile_ir import Convert, Copy, Elementwise, Gemm, Reduce

from .mesh_ir import Compute

BATCHED = (Copy, Convert, Elementwise, Gemm, Reduce)   # the ops `batched_op` runs on a block


def reads_pe(compute: Compute) -> bool:
    """Whether the compute's regions or bounds read the PE's coordinates (then it runs PE by PE)."""
    names = {"pr", "pc"}
    regions = [r for op in compute.ops for r in op.reads + op.writes]
    return any(r.vars() & names for r in regions) or any(
        (d.start.vars() | d.stop.vars()) & names for d in compute.dims)


def trailing(view: np.ndarray) -> np.ndarray:
    """A (rows, cols, *shape) view with the grid axes moved last: NumPy broadcasting then
    aligns the buffer axes as a single PE's would (loads broadcast from the right)."""
    return np.moveaxis(view, (0, 1), (-2, -1))


def batched_op(op, env, arrays) -> None:
    """Run `op` at one point (`env`) on every PE of a block at once (`arrays`: `trailing` views)."""
    get = lambda r: region(r, env, arrays)  # noqa: E731 (the rules' accessor)
    if isinstance(op, Gemm):
        lead = lambda x: np.moveaxis(x, (-2, -1), (0, 1))  # noqa: E731 (grid first for matmul)
        a, b, c = lead(get(op.a)), lead(get(op.b)), lead(get(op.c))
        product = np.matmul(np.swapaxes(a, -1, -2) if op.trans_a else a, np.swapaxes(b, -1, -2) if op.trans_b else b)
        c[...] = c + product if op.accumulate else product
    elif isinstance(op, Copy) and op.perm:
        src, dst = get(op.src), get(op.dst)
        dst[...] = np.reshape(np.transpose(src, op.perm + (src.ndim - 2, src.ndim - 1)), dst.shape)
    else:
        RULES[type(op)](op, get, env, arrays)
