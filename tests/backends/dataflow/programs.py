"""Mesh programs written by hand with the mesh IR's nodes, for the executors' tests."""

from __future__ import annotations

import numpy as np

from fractal.backends.dataflow.mesh_ir import (Alloc, Compute, Free, HostArray, Load, LocalBuffer, MeshProgram,
                                               Multicast, Pes, Send, Shift, Store, Superstep)
from fractal.backends.dataflow.routes import ring_order
from fractal.backends.dataflow.spec import mesh_spec
from fractal.lower.tile_affine import aff
from fractal.lower.tile_ir import Binary, Const, Elementwise, Gemm, Region
from fractal.lower.tile_expr import Load as Read


def cannon(q: int, t: int = 2, dtype=np.float64, spec=None) -> MeshProgram:
    """C = A @ B for (q*t)-square matrices on q x q PEs: skewed loads, q steps of a local GEMM and
    two shifts (A's tiles one PE left along the rows, B's one PE up along the columns)."""
    spec = spec or mesh_spec(q, q, preset="tiny")
    n, pes = q * t, Pes(0, q, 0, q)
    tile = lambda name: Region(name, (0, 0), (t, t))  # noqa: E731
    skew = (aff("pr") + aff("pc")) % q * t
    steps = []
    for k in range(q):
        gemm = Compute(pes, (Gemm(tile("ta"), tile("tb"), tile("tc"), accumulate=k > 0),), label="gemm")
        shifts = () if k == q - 1 else (Shift(pes, tile("ta"), tile("ta"), "row", -1, channel=0),
                                        Shift(pes, tile("tb"), tile("tb"), "col", -1, channel=1))
        steps.append(Superstep(f"step {k}", computes=(gemm,), transfers=shifts))
    return MeshProgram(
        "cannon", spec,
        arrays=(HostArray("a", (n, n), dtype), HostArray("b", (n, n), dtype), HostArray("c", (n, n), dtype, "output")),
        buffers=tuple(LocalBuffer(name, (t, t), dtype) for name in ("ta", "tb", "tc")),
        allocs=(Alloc(("ta", "tb", "tc"), pes),),
        loads=(Load(pes, tile("ta"), Region("a", (aff("pr") * t, skew), (t, t))),
               Load(pes, tile("tb"), Region("b", (skew, aff("pc") * t), (t, t)))),
        steps=tuple(steps),
        stores=(Store(pes, Region("c", (aff("pr") * t, aff("pc") * t), (t, t)), tile("tc")),))


def vector_program(spec, k: int, moves, dtype=np.float64) -> MeshProgram:
    """Every PE holds k elements `v` (loaded from x[pr, pc], stored to y[pr, pc]); each move is a
    superstep: ("shift", axis, by, ring, channel), ("multicast", axis, root, channel),
    ("sends", [(src, dst)], channel) or ("add", c)."""
    pes = Pes(0, spec.rows, 0, spec.cols)
    v = Region("v", (0,), (k,))
    host = lambda name: Region(name, ("pr", "pc", 0), (None, None, k))  # noqa: E731
    steps = []
    for i, move in enumerate(moves):
        if move[0] == "shift":
            _, axis, by, ring, channel = move
            steps.append(Superstep(f"shift {i}", transfers=(Shift(pes, v, v, axis, by, ring, channel),)))
        elif move[0] == "multicast":
            _, axis, root, channel = move
            steps.append(Superstep(f"multicast {i}", transfers=(Multicast(pes, v, v, axis, root, channel),)))
        elif move[0] == "sends":
            _, pairs, channel = move
            steps.append(Superstep(f"sends {i}", transfers=tuple(Send(s, d, v, v, channel) for s, d in pairs)))
        else:
            add = Elementwise(v, Binary("add", Read(v), Const(move[1])))
            steps.append(Superstep(f"add {i}", computes=(Compute(pes, (add,)),)))
    shape = (spec.rows, spec.cols, k)
    return MeshProgram("vectors", spec, arrays=(HostArray("x", shape, dtype), HostArray("y", shape, dtype, "output")),
                       buffers=(LocalBuffer("v", (k,), dtype),), allocs=(Alloc(("v",), pes),),
                       loads=(Load(pes, v, host("x")),), steps=tuple(steps), stores=(Store(pes, host("y"), v),))


def cannon_on(n: int, p: int, *, ring: str = "wrap", dtype="f8", spec=None, **numbers) -> MeshProgram:
    """C = A @ B for n x n matrices on p x p PEs (p divides n) with its rings embedded `ring`:
    logical PE (i, j) sits on (order[i], order[j]), so loads and stores are one per PE."""
    t = n // p
    spec = spec or mesh_spec(p, p, **numbers)
    P = Pes(0, p, 0, p)
    tile = lambda name: Region(name, (0, 0), (t, t))  # noqa: E731
    order = ring_order(p, ring)
    loads, stores = [], []
    for i in range(p):
        for j in range(p):
            pe, k = Pes.one(order[i], order[j]), (i + j) % p
            loads += [Load(pe, tile("ta"), Region("a", (t * i, t * k), (t, t))),
                      Load(pe, tile("tb"), Region("b", (t * k, t * j), (t, t)))]
            stores.append(Store(pe, Region("c", (t * i, t * j), (t, t)), tile("tc")))
    steps = []
    for step in range(p):
        shifts = () if step == p - 1 else (Shift(P, tile("ta"), tile("ta"), "row", -1, ring, 0),
                                           Shift(P, tile("tb"), tile("tb"), "col", -1, ring, 1))
        product = Gemm(tile("ta"), tile("tb"), tile("tc"), accumulate=step > 0)
        steps.append(Superstep(f"step {step}", computes=(Compute(P, (product,)),), transfers=shifts))
    return MeshProgram("cannon", spec, (HostArray("a", (n, n), dtype), HostArray("b", (n, n), dtype),
                                        HostArray("c", (n, n), dtype, "output")),
                       tuple(LocalBuffer(name, (t, t), dtype) for name in ("ta", "tb", "tc")),
                       allocs=(Alloc(("ta", "tb", "tc"), P),), loads=tuple(loads), steps=tuple(steps), stores=tuple(stores))


def one_at_a_time(spec, k: int, steps: int, dtype=np.float64) -> MeshProgram:
    """Buffers whose lifetimes do not overlap: every PE holds `acc` (k elements, x[pr, pc]) for
    the whole run and, in superstep i, a scratch `t{i}` of (i + 1, k) elements, allocated, used
    (its last row = acc + i, then acc = 2 * that row) and freed: y = ((x * 2 + 2) * 2 + 4) ...,
    each step acc = 2 * (acc + i)."""
    pes = Pes(0, spec.rows, 0, spec.cols)
    acc = Region("acc", (0,), (k,))
    host = lambda name: Region(name, ("pr", "pc", 0), (None, None, k))  # noqa: E731
    out = []
    for i in range(steps):
        row = Region(f"t{i}", (i, 0), (None, k))
        ops = (Elementwise(row, Binary("add", Read(acc), Const(float(i)))), Elementwise(acc, Binary("mul", Read(row), Const(2.0))))
        out.append(Superstep(f"scratch {i}", allocs=(Alloc((f"t{i}",), pes),), computes=(Compute(pes, ops),),
                             frees=(Free((f"t{i}",), pes),)))
    shape = (spec.rows, spec.cols, k)
    return MeshProgram("one_at_a_time", spec, (HostArray("x", shape, dtype), HostArray("y", shape, dtype, "output")),
                       (LocalBuffer("acc", (k,), dtype),) + tuple(LocalBuffer(f"t{i}", (i + 1, k), dtype) for i in range(steps)),
                       allocs=(Alloc(("acc",), pes),), loads=(Load(pes, acc, host("x")),), steps=tuple(out),
                       stores=(Store(pes, host("y"), acc),), frees=(Free(("acc",), pes),))
