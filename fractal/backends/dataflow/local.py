"""What one PE does: the semantics every executor shares, one PE at a time.

A PE's memory is a dict of its allocated buffers (name -> array).  A compute runs the tile
ops (`fractal.backends.pointwise`'s rules: the tile IR's reference semantics) at each point
of its local loop nest, with `pr` and `pc` bound to the PE's row and column; a transfer
reads a region of the sender's memory as a flat row-major run and writes it into the
receiver's region.  The BSP engine runs the same rules on all PEs at once where it can
(`fractal.backends.dataflow.bsp`); the event engine and the MPI executor call these.
"""

from __future__ import annotations

import numpy as np

from fractal.backends.pointwise import region, run_op, stage_points

from .mesh_ir import Compute


def pe_env(pe: tuple[int, int]) -> dict[str, int]:
    return {"pr": int(pe[0]), "pc": int(pe[1])}


def run_compute(compute: Compute, pe: tuple[int, int], memory: dict[str, np.ndarray]) -> None:
    """Run `compute` on the PE at `pe` whose buffers are `memory` (in place)."""
    for env in stage_points(compute.dims, pe_env(pe)):
        for op in compute.ops:
            run_op(op, env, memory)


def read(r, pe: tuple[int, int], memory: dict[str, np.ndarray]) -> np.ndarray:
    """A copy of the region `r` of a PE's memory, flattened in row-major order."""
    return np.array(region(r, pe_env(pe), memory), copy=True).reshape(-1)


def write(r, pe: tuple[int, int], memory: dict[str, np.ndarray], values: np.ndarray) -> None:
    """Store `values` (a flat run of the region's size) into the region `r` of a PE's memory."""
    view = region(r, pe_env(pe), memory)
    view[...] = np.asarray(values).reshape(view.shape)


def region_elements(r) -> int:
    return int(np.prod(r.shape, dtype=np.int64))
