"""Cutting a product too big for one PE into pieces that fit: rows and columns of its result.

A stage whose one op is a `gemm` computes `c = op(a) @ op(b)`; its result's rows depend only on
the same rows of `op(a)`, and its columns only on the same columns of `op(b)`, so the stage
over `rows/mc x cols/nc` more points, each a `mc x nc` block of `c`, computes the same thing
(and its points stay independent).  `split_gemm` gives that stage: two new dims, the regions
moved by them.  The planner uses it when one point's windows do not fit a PE's SRAM.

    c[m, 0:64, 0:1024] = gemm(a[m, 0:64, 0:256], w[0:256, 0:1024])
    # split 2 x 8: points (m, gm in 0:2, gn in 0:8)
    c[m, 32*gm:32*gm + 32, 128*gn:128*gn + 128] = gemm(a[m, 32*gm:32*gm + 32, 0:256], w[0:256, 128*gn:128*gn + 128])
"""

from __future__ import annotations

from dataclasses import replace

from fractal.lower.tile_affine import aff
from fractal.lower.tile_ir import Dim, Gemm, Region, Stage


def _cut(r: Region, axis: int, var: str, size: int) -> Region:
    """`r` with its `axis`-th range axis cut to `size` elements starting `size * var` further."""
    a = r.range_axes[axis]
    start, sizes = list(r.start), list(r.size)
    start[a] = start[a] + aff(var) * (size * r.stride[a])
    sizes[a] = size
    return replace(r, start=tuple(start), size=tuple(sizes))


def gemm_shape(op: Gemm) -> tuple[int, int, int]:
    """(M, N, K) of a gemm op's product."""
    m = op.a.shape[1] if op.trans_a else op.a.shape[0]
    k = op.a.shape[0] if op.trans_a else op.a.shape[1]
    return m, op.c.shape[1], k


def split_gemm(stage: Stage, mc: int, nc: int) -> Stage:
    """The one-gemm `stage` over blocks of mc x nc of its result (module docstring); mc divides M
    and nc divides N."""
    (op,) = stage.body
    m, n, _ = gemm_shape(op)
    gm, gn = f"{stage.name}_gm", f"{stage.name}_gn"
    a = _cut(op.a, 1 if op.trans_a else 0, gm, mc)
    b = _cut(op.b, 0 if op.trans_b else 1, gn, nc)
    c = _cut(_cut(op.c, 0, gm, mc), 1, gn, nc)
    dims = stage.dims + (Dim(gm, aff(0), aff(m // mc)), Dim(gn, aff(0), aff(n // nc)))
    return Stage(stage.name, dims, (replace(op, a=a, b=b, c=c),), stage.placement)


def blocks(stage: Stage, fits) -> Stage | None:
    """The split of a one-gemm stage with the fewest blocks whose point `fits(bytes)`, or None."""
    if len(stage.body) != 1 or not isinstance(stage.body[0], Gemm):
        return None
    op = stage.body[0]
    m, n, k = gemm_shape(op)
    options = sorted(((m // mc) * (n // nc), mc, nc) for mc in range(1, m + 1) if m % mc == 0
                     for nc in range(1, n + 1) if n % nc == 0)
    for _, mc, nc in options:
        if (mc, nc) != (m, n) and fits(mc * k + k * nc + mc * nc):
            return split_gemm(stage, mc, nc)
    return None
