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
    # per buffer and depth: a read of an enclosing level of the nest (e.g. a state copied after
    # the inner loops) has fewer than n dims and is compared with reads of its own depth
    reads: dict[tuple[str, int], isl.Map] = {}
    for a in etdg.block_accesses(block, subtree=True):
        if a.kind == "read" and etdg.buffer(a.buffer).kind in kinds:
            m = isl.Map(a.map)
            key = (a.buffer, min(m.dim(isl.dim_type.in_), n))
            m = projected(m, key[1], a.buffer)
            reads[key] = m if key not in reads else reads[key].union(m)
    found: dict[str, set] = {}
    for (name, d), m in reads.items():
        same = m.apply_range(m.reverse())  # pairs of iterations reading a common element
        found.setdefault(name, set()).update(k for k in range(d) if not same.intersect(_step(d, k)).is_empty())
    return {name: tuple(sorted(along)) for name, along in found.items() if along}


def _step(n: int, k: int) -> isl.Map:
    xs = [f"x{j}" for j in range(n)]
    ys = [f"x{j} + 1" if j == k else f"x{j}" for j in range(n)]
    return isl.Map(f"{{ [{', '.join(xs)}] -> [{', '.join(ys)}] }}")
