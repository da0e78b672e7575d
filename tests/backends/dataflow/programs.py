"""Mesh programs written by hand, for the engines' tests: a Cannon product and friends."""

from __future__ import annotations

from fractal.backends.dataflow.mesh_ir import (Alloc, Compute, HostArray, Load, LocalBuffer, MeshProgram, Pes, Shift,
                                               Store, Superstep)
from fractal.backends.dataflow.routes import ring_order
from fractal.backends.dataflow.spec import mesh_spec
from fractal.lower.tile_affine import aff
from fractal.lower.tile_ir import Gemm, Region


def cannon(n: int, p: int, *, ring: str = "wrap", dtype="f8", spec=None, **numbers) -> MeshProgram:
    """C = A @ B for n x n matrices on p x p PEs (p divides n): pre-skewed tiles, p steps of a
    local product and a shift of A along rows and B along columns (T10's compute-shift)."""
    t = n // p
    spec = spec or mesh_spec(p, p, **numbers)
    P = Pes(0, p, 0, p)
    tile = lambda name: Region(name, (0, 0), (t, t))  # noqa: E731
    arrays = (HostArray("a", (n, n), dtype), HostArray("b", (n, n), dtype), HostArray("c", (n, n), dtype, "output"))
    buffers = tuple(LocalBuffer(name, (t, t), dtype) for name in ("ta", "tb", "tc"))
    order = ring_order(p, ring)
    loads, stores = [], []
    for i in range(p):          # logical coordinates (i, j) live on PE (order[i], order[j])
        for j in range(p):
            pe = Pes.one(order[i], order[j])
            k = (i + j) % p
            loads += [Load(pe, tile("ta"), Region("a", (t * i, t * k), (t, t))),
                      Load(pe, tile("tb"), Region("b", (t * k, t * j), (t, t)))]
            stores.append(Store(pe, Region("c", (t * i, t * j), (t, t)), tile("tc")))
    steps = []
    for step in range(p):
        last = step == p - 1
        shifts = () if last else (Shift(P, tile("ta"), tile("ta"), "row", 1, ring, 0),
                                  Shift(P, tile("tb"), tile("tb"), "col", 1, ring, 1))
        product = Gemm(tile("ta"), tile("tb"), tile("tc"), accumulate=step > 0)
        steps.append(Superstep(f"step {step}", computes=(Compute(P, (product,)),), transfers=shifts))
    return MeshProgram("cannon", spec, arrays, buffers, allocs=(Alloc(("ta", "tb", "tc"), P),), loads=tuple(loads),
                       steps=tuple(steps), stores=tuple(stores))


def skewed_load_cannon(n: int, p: int, **numbers) -> MeshProgram:
    """`cannon` with its loads written once per rectangle, reading `pr` and `pc` (wrap ring)."""
    prog = cannon(n, p, **numbers)
    t = n // p
    P = Pes(0, p, 0, p)
    k = (aff("pr") + aff("pc")) % p
    loads = (Load(P, Region("ta", (0, 0), (t, t)), Region("a", (t * aff("pr"), t * k), (t, t))),
             Load(P, Region("tb", (0, 0), (t, t)), Region("b", (t * k, t * aff("pc")), (t, t))))
    stores = (Store(P, Region("c", (t * aff("pr"), t * aff("pc")), (t, t)), Region("tc", (0, 0), (t, t))),)
    return MeshProgram(prog.name, prog.spec, prog.arrays, prog.buffers, allocs=prog.allocs, loads=loads,
                       steps=prog.steps, stores=stores)
