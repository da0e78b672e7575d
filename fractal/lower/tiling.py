"""Pass 15, tiling by construction (Roller style): tile shapes from the hardware record, no search.

A stage runs its ops one after the other over its whole box; when the box's working set
(every region an op touches, summed over the points) is larger than the cache level the
hardware record names for tiles (`tile_level`: L2 on a CPU, shared memory on a GPU, a PE's
SRAM on a mesh), each op streams its operands through DRAM and the next op reads them back
from there.  Splitting the stage's first dim into tiles whose working set fits that level
keeps one tile's intermediates in cache across the ops.  The tile size is the largest
multiple of the record's alignment that fits (regions every point shares count once, not
per point); single-op stages and stages with a GEMM are left whole (BLAS tiles its own
loops for the cache, and cutting M only adds calls).

Before (working set 96 MiB, L2 2 MiB)::        After::

    stage cell(m in 0:4096) device {            for m0 in 0:4096:64 parallel host {
      ...                                          stage cell(m in m0:min(4096, m0 + 64)) device {
    }                                                ...
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .tile_affine import amin, aff
from .policy import TileFacts
from .rewrite import rewrite_blocks
from .tile_ir import Gemm, Loop, Stage, TileProgram


def tile(program: TileProgram, ctx) -> TileProgram:
    """Pass 15, tile: a multi-op stage whose working set overflows the target's tile level
    runs in tiles of its first dim (the target's policy sizes them)."""
    itemsize = {b.name: b.dtype.itemsize for b in program.buffers}
    target = ctx.target

    def block(stmts, path):
        return [_tiled(s, target, itemsize, ctx) if isinstance(s, Stage) else s for s in stmts]

    return rewrite_blocks(program, block)


def _tiled(st: Stage, target, itemsize, ctx):
    if len(st.body) < 2 or not st.dims or not (st.dims[0].start.is_const and st.dims[0].stop.is_const):
        return st
    first = st.dims[0]
    n = first.stop.const - first.start.const
    names = {d.var for d in st.dims}
    # what each point touches on its own (regions shared by all points are read once)
    per_point = sum(int(np.prod(r.shape, dtype=np.int64)) * itemsize[r.buffer]
                    for op in st.body for r in op.reads + op.writes
                    if any(names & s.vars() for s in r.start))
    rest = 1
    for d in st.dims[1:]:
        if not (d.start.is_const and d.stop.is_const):
            return st
        rest *= d.stop.const - d.start.const
    facts = TileFacts(n, per_point * rest, any(isinstance(op, Gemm) for op in st.body))
    size = target.policy.tile_rows(facts, target.hardware)
    if size is None:
        return st
    var = f"{first.var}_tile"
    ctx.notes.append(f"tile: {st.name} {first.var} in tiles of {size} ({facts.row_bytes * size} bytes per tile)")
    inner = replace(st, dims=((first.var, aff(var), amin(first.stop, aff(var) + size)),) + st.dims[1:])
    return Loop(var, first.start, first.stop, size, "parallel", "host", (inner,))
