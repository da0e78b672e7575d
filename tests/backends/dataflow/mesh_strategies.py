"""Hypothesis strategies: small, valid mesh programs holding every kind of node.

`mesh_programs()` draws a `MeshProgram` on a mesh of 1-3 x 1-3 PEs of a drawn preset (`tiny`,
`wse2`, `wormhole`, `ipu_mk2`: crossbars, tori, float rates, channel limits; now and then a
number given by the user), with three host arrays (input `x`, const `w` with data, output `y`)
and four local buffers (`a`, `b`: k x k tiles; `v`: the same elements flat; `t`: a scratch
tile).  `a`, `b` and `v` are allocated on the whole mesh from the start; loads fill `a` from
`x` (each PE its own tile, through `pr` and `pc`) and `b` from `w`; 0-3 supersteps may allocate
`t` on a rectangle (computes there use it; it is freed at the end of the step) and hold
computes (copies, reshaping copies, elementwise ops, gemms, loops over dims whose bounds read
`pr`, labels with quotes) and transfers (shifts along rows and columns by -2..2 on both rings,
multicasts from any root, sends between any two PEs, between tiles or a tile and its flat
form); stores write `a` into `y`; a final free sometimes releases everything.  Every program
is valid by construction (`verify_mesh` passes).  Hypothesis shrinks towards one PE, no
supersteps, copies, and the first choice of every list.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from fractal.backends.dataflow.mesh_ir import (Alloc, Compute, Free, HostArray, Load, LocalBuffer, MeshProgram,
                                               Multicast, Pes, Send, Shift, Store, Superstep)
from fractal.backends.dataflow.spec import mesh_spec
from fractal.lower.tile_affine import aff, amin
from fractal.lower.tile_ir import Binary, Const, Copy, Dim, Elementwise, Gemm, Load as LoadExpr, Region

PRESETS = ("tiny", "wse2", "wormhole", "ipu_mk2")
DTYPES = (np.dtype("float32"), np.dtype("float64"), np.dtype("int32"))
LABELS = ("", "gates", 'say "hi"\\now')


def tile(name: str, k: int, rows=None) -> Region:
    """`name[0:k, 0:k]`, or `name[i, 0:k]` for a row `i`."""
    if rows is not None:
        return Region(name, (aff(rows), 0), (None, k))
    return Region(name, (0, 0), (k, k))


def flat(k: int) -> Region:
    return Region("v", (0,), (k * k,))


@st.composite
def rects(draw, rows: int, cols: int) -> Pes:
    r0, c0 = draw(st.integers(0, rows - 1)), draw(st.integers(0, cols - 1))
    return Pes(r0, draw(st.integers(r0 + 1, rows)), c0, draw(st.integers(c0 + 1, cols)))


@st.composite
def mesh_programs(draw) -> MeshProgram:
    rows, cols, k = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
    dtype = draw(st.sampled_from(DTYPES))
    user = draw(st.sampled_from([{}, {"hop_latency_cycles": 3}, {"link_bytes_per_cycle": 2.5}]))
    spec = mesh_spec(rows, cols, preset=draw(st.sampled_from(PRESETS)), **user)
    whole = Pes(0, rows, 0, cols)
    data = np.array(draw(st.lists(st.integers(-3, 3), min_size=k * k, max_size=k * k)), dtype).reshape(k, k)
    arrays = (HostArray("x", (rows * k, cols * k), dtype), HostArray("w", (k, k), dtype, "const", data),
              HostArray("y", (rows * k, cols * k), dtype, "output"))
    buffers = tuple(LocalBuffer(n, (k, k), dtype) for n in ("a", "b", "t")) + (LocalBuffer("v", (k * k,), dtype),)
    own = Region("x", (aff("pr") * k, aff("pc") * k), (k, k))
    allocs = (Alloc(("a", "b", "v"), whole),) if draw(st.booleans()) else \
        (Alloc(("a",), whole), Alloc(("b", "v"), whole))
    loads = (Load(draw(rects(rows, cols)), tile("a", k), own),
             Load(draw(rects(rows, cols)), tile("b", k), tile("w", k)))
    steps = tuple(draw(supersteps(rows, cols, k, dtype)) for _ in range(draw(st.integers(0, 3))))
    stores = (Store(draw(rects(rows, cols)), Region("y", own.start, own.size), tile("a", k)),)
    frees = (Free(("a", "b", "v"), whole),) if draw(st.booleans()) else ()
    return MeshProgram(draw(st.sampled_from(["prog", "model.layer_0"])), spec, arrays, buffers, allocs, loads, steps,
                       stores, frees)


@st.composite
def supersteps(draw, rows: int, cols: int, k: int, dtype) -> Superstep:
    scratch = draw(st.one_of(st.none(), rects(rows, cols)))
    allocs = () if scratch is None else (Alloc(("t",), scratch),)
    frees = () if scratch is None else (Free(("t",), scratch),)
    computes = []
    for _ in range(draw(st.integers(0, 2))):
        pes = draw(rects(rows, cols))
        ops = draw(st.lists(ops_on(k, dtype), min_size=1, max_size=3))
        dims = ()
        if draw(st.booleans()):  # a loop over the tile's rows, as many as the PE's row allows
            dims = (Dim("i", aff(0), amin(k, aff("pr") + 1)),)
            ops = [Copy(tile("b", k, "i"), tile("a", k, "i"))]
        computes.append(Compute(pes, tuple(ops), dims, draw(st.sampled_from(LABELS))))
    if scratch is not None:
        computes.append(Compute(scratch, (Copy(tile("a", k), tile("t", k)),)))
    transfers = tuple(draw(st.lists(transfers_on(rows, cols, k), max_size=3)))
    return Superstep(draw(st.sampled_from(LABELS)), allocs, tuple(computes), transfers, frees)


def ops_on(k: int, dtype):
    a, b = tile("a", k), tile("b", k)
    choices = [st.just(Copy(b, a)), st.just(Copy(a, flat(k))),
               st.just(Elementwise(a, Binary("add", LoadExpr(a), LoadExpr(b)))),
               st.just(Elementwise(b, Binary("mul", LoadExpr(b), Const(2.0)))),
               st.builds(lambda acc, ta: Gemm(b, a, Region("a", (0, 0), (k, k)), acc, ta),
                         st.booleans(), st.booleans())]
    return st.one_of(choices)


@st.composite
def transfers_on(draw, rows: int, cols: int, k: int):
    src, dst = draw(st.sampled_from([(tile("a", k), tile("b", k)), (tile("a", k), tile("a", k)),
                                     (tile("b", k), flat(k)), (flat(k), tile("a", k))]))
    channel = draw(st.integers(0, 3))
    kind = draw(st.sampled_from(["shift", "multicast", "send"]))
    if kind == "send":
        pe = lambda: (draw(st.integers(0, rows - 1)), draw(st.integers(0, cols - 1)))  # noqa: E731
        return Send(pe(), pe(), src, dst, channel)
    pes, axis = draw(rects(rows, cols)), draw(st.sampled_from(["row", "col"]))
    if kind == "shift":
        return Shift(pes, src, dst, axis, draw(st.integers(-2, 2)), draw(st.sampled_from(["wrap", "interleaved"])),
                     channel)
    line = pes.shape[1] if axis == "row" else pes.shape[0]
    return Multicast(pes, src, dst, axis, draw(st.integers(0, line - 1)), channel)
