"""Data reuse: along which dims a block re-reads the same elements of a buffer.

A dim `k` reuses buffer `B` when two iterations that differ only in `x_k`
read a common element of `B`: `R ; R^-1` meets `{x -> x + e_k}`.  Weights
read by every cell of an RNN are reused along batch and time; a scan's input
sequence is reused along the layers only where a layer re-reads it.
"""

from __future__ import annotations

import islpy as isl

from .dependences import projected
from .etdg import ETDG


def reuse(etdg: ETDG, block: int, kinds=("input",)) -> dict[str, tuple[int, ...]]:
    dims = etdg.blocks[block].dims
    n = len(dims)
    reads: dict[str, isl.Map] = {}
    for a in etdg.block_accesses(block, subtree=True):
        if a.kind == "read" and etdg.buffer(a.buffer).kind in kinds:
            m = projected(isl.Map(a.map), n, a.buffer)
            reads[a.buffer] = m if a.buffer not in reads else reads[a.buffer].union(m)
    out = {}
    for name, m in reads.items():
        same = m.apply_range(m.reverse())  # pairs of iterations reading a common element
        along = tuple(k for k in range(n) if not same.intersect(_step(n, k)).is_empty())
        if along:
            out[name] = along
    return out


def _step(n: int, k: int) -> isl.Map:
    xs = [f"x{j}" for j in range(n)]
    ys = [f"x{j} + 1" if j == k else f"x{j}" for j in range(n)]
    return isl.Map(f"{{ [{', '.join(xs)}] -> [{', '.join(ys)}] }}")
