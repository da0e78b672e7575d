"""Hand-built mesh programs for the MPI executor's tests, and the references they are checked with.

`cannon` (shifts), `row_multicast`, `send_chain` and `random_program` (random sends, shifts
and multicasts whose order matters) build `MeshProgram`s from the mesh IR's nodes;
`reference` runs one in one process straight from the mesh IR's rules with `local.py`'s
one-PE semantics, and `run_threads` runs the blocked executor with ranks as threads.
"""

from __future__ import annotations

import threading

import numpy as np

from fractal.backends.dataflow import local
from fractal.backends.dataflow.blocked import BlockRun, RankGrid, apply_stores
from fractal.backends.dataflow.collectives import expand
from fractal.backends.dataflow.host import host_arrays
from fractal.backends.dataflow.mesh_ir import (Alloc, Compute, HostArray, Load, LocalBuffer, MeshProgram, Multicast, Pes,
                                               Send, Shift, Store, Superstep)
from fractal.backends.dataflow.spec import mesh_spec
from fractal.backends.pointwise import region
from fractal.lower.tile_affine import aff
from fractal.lower.tile_ir import Binary, Const, Elementwise, Gemm, Load as Read, Region

PR, PC = aff("pr"), aff("pc")


def box(buffer, *starts, size):
    return Region(buffer, starts, (size,) * len(starts))


def cannon(n: int, t: int = 2, ring: str = "wrap") -> MeshProgram:
    """c = a @ b on n x n PEs, t x t tiles: a skewed load, n steps of gemm then shift."""
    every, m = Pes(0, n, 0, n), n * t
    skew = (PR + PC) % n
    tile = lambda name: box(name, 0, 0, size=t)  # noqa: E731
    steps = []
    for k in range(n):
        shifts = () if k == n - 1 else (
            Shift(every, tile("ta"), tile("ta"), "row", -1, ring, 0),
            Shift(every, tile("tb"), tile("tb"), "col", -1, ring, 1))
        steps.append(Superstep(f"step {k}", computes=(Compute(every, (Gemm(tile("ta"), tile("tb"), tile("tc"), k > 0),)),),
                               transfers=shifts))
    return MeshProgram(
        f"cannon{n}", mesh_spec(n, n), (HostArray("a", (m, m), np.float64), HostArray("b", (m, m), np.float64),
                                        HostArray("c", (m, m), np.float64, "output")),
        tuple(LocalBuffer(x, (t, t), np.float64) for x in ("ta", "tb", "tc")), allocs=(Alloc(("ta", "tb", "tc"), every),),
        loads=(Load(every, tile("ta"), box("a", t * PR, t * skew, size=t)),
               Load(every, tile("tb"), box("b", t * skew, t * PC, size=t))),
        steps=tuple(steps), stores=(Store(every, box("c", t * PR, t * PC, size=t), tile("tc")),))


def row_multicast(rows: int, cols: int, root: int) -> MeshProgram:
    """Each row's root PE sends its vector x to the whole row; every PE adds its own y: out[r, c] = x[r, root] + y[r, c]."""
    every, v = Pes(0, rows, 0, cols), lambda name: Region(name, (0,), (3,))  # noqa: E731
    step = Superstep("multicast", transfers=(Multicast(every, v("x"), v("got"), "row", root, 2),),
                     computes=())
    add = Superstep("add", computes=(Compute(every, (Elementwise(v("y"), Binary("add", Read(v("got")), Read(v("y")))),)),))
    host = lambda name, role="input": HostArray(name, (rows, cols, 3), np.float64, role)  # noqa: E731
    at = lambda name: Region(name, (PR, PC, 0), (None, None, 3))  # noqa: E731
    return MeshProgram(f"multicast{rows}x{cols}", mesh_spec(rows, cols), (host("x"), host("y"), host("out", "output")),
                       tuple(LocalBuffer(b, (3,), np.float64) for b in ("x", "y", "got")),
                       allocs=(Alloc(("x", "y", "got"), every),), loads=(Load(every, v("x"), at("x")), Load(every, v("y"), at("y"))), steps=(step, add),
                       stores=(Store(every, at("out"), v("y")),))


def send_chain(rows: int, cols: int) -> MeshProgram:
    """A value walks the PEs in row-major order, incremented on each; the last one receives it twice
    in one superstep (from its neighbour, then from PE (0, 0), later in program order: that one wins),
    and an int32 hop count travels with it."""
    path = [(r, c) for r in range(rows) for c in range(cols)]
    one, v = (lambda pe: Pes.one(*pe)), (lambda name: Region(name, (0,), (2,)))  # noqa: E731
    steps = []
    for a, b in zip(path, path[1:]):
        extra = (Send((0, 0), b, v("x"), v("x"), 5),) if b == path[-1] else ()
        steps.append(Superstep(f"{a}->{b}", computes=(
            Compute(one(a), (Elementwise(v("x"), Binary("add", Read(v("x")), Const(1.0))),
                             Elementwise(v("hops"), Binary("add", Read(v("hops")), Const(1.0))))),),
            transfers=(Send(a, b, v("x"), v("x"), 3), Send(a, b, v("hops"), v("hops"), 4)) + extra))
    every = Pes(0, rows, 0, cols)
    at = lambda name: Region(name, (PR, PC, 0), (None, None, 2))  # noqa: E731
    return MeshProgram(f"chain{rows}x{cols}", mesh_spec(rows, cols),
                       (HostArray("x0", (2,), np.float64), HostArray("x", (rows, cols, 2), np.float64, "output"),
                        HostArray("hops", (rows, cols, 2), np.int32, "output")),
                       (LocalBuffer("x", (2,), np.float64), LocalBuffer("hops", (2,), np.int32)),
                       allocs=(Alloc(("x", "hops"), every),), loads=(Load(Pes.one(0, 0), v("x"), Region("x0", (0,), (2,))),), steps=tuple(steps),
                       stores=(Store(every, at("x"), v("x")), Store(every, at("hops"), v("hops"))))


def random_program(seed: int, rows: int, cols: int, steps: int = 4) -> MeshProgram:
    """Supersteps of a random compute and random transfers (sends of float64 and int32 regions
    that overlap, shifts on rectangles both ways and rings, multicasts): order matters everywhere."""
    rng = np.random.default_rng(seed)
    v, w = (lambda at, n=2: Region("v", (at,), (n,))), (lambda at: Region("w", (at,), (2,)))  # noqa: E731
    pe = lambda: (int(rng.integers(rows)), int(rng.integers(cols)))  # noqa: E731

    def rectangle() -> Pes:
        r0, c0 = int(rng.integers(rows)), int(rng.integers(cols))
        return Pes(r0, int(rng.integers(r0 + 1, rows + 1)), c0, int(rng.integers(c0 + 1, cols + 1)))

    def transfer():
        kind, ch = int(rng.integers(4)), int(rng.integers(8))
        if kind == 0:
            return Send(pe(), pe(), v(int(rng.integers(5))), v(int(rng.integers(5))), ch)
        if kind == 1:
            return Send(pe(), pe(), w(int(rng.integers(3))), w(int(rng.integers(3))), ch)
        if kind == 2:
            return Shift(rectangle(), v(int(rng.integers(4)), 3), v(int(rng.integers(4)), 3), ("row", "col")[rng.integers(2)],
                         int(rng.integers(-2, 3)), ("wrap", "interleaved")[rng.integers(2)], ch)
        box_ = rectangle()
        axis = ("row", "col")[rng.integers(2)]
        return Multicast(box_, w(0), w(2), axis, int(rng.integers(box_.shape[1 if axis == "row" else 0])), ch)

    every = Pes(0, rows, 0, cols)
    grow = (Elementwise(v(0, 6), Binary("add", Binary("mul", Read(v(0, 6)), Const(3.0)), Const(1.0))),)
    count = (Elementwise(w(0), Binary("add", Read(w(0)), Const(1.0))),)
    program_steps = tuple(Superstep(f"step {k}", computes=(Compute(rectangle(), grow), Compute(every, count)),
                                    transfers=tuple(transfer() for _ in range(int(rng.integers(1, 6)))))
                          for k in range(steps))
    at = lambda name, n: Region(name, (PR, PC, 0), (None, None, n))  # noqa: E731
    return MeshProgram(f"random{seed}", mesh_spec(rows, cols),
                       (HostArray("x", (rows, cols, 6), np.float64), HostArray("out_v", (rows, cols, 6), np.float64, "output"),
                        HostArray("out_w", (rows, cols, 4), np.int32, "output")),
                       (LocalBuffer("v", (6,), np.float64), LocalBuffer("w", (4,), np.int32)),
                       allocs=(Alloc(("v", "w"), every),), loads=(Load(every, v(0, 6), at("x", 6)),), steps=program_steps,
                       stores=(Store(every, at("out_v", 6), v(0, 6)), Store(every, at("out_w", 4), Region("w", (0,), (4,)))))


def random_inputs(program: MeshProgram) -> dict:
    return {"x": integers(np.random.default_rng(0), program.array("x").shape)}


def run_threads(program: MeshProgram, inputs: dict, dims, strict: bool = False) -> dict:
    """The blocked executor on `dims` ranks as threads of this process, exchanging through a
    shared mailbox between two barriers: the MPI runs' split of the work, without MPI (each
    superstep's messages packed per peer rank, or, `strict`, message by message)."""
    grid, mailbox = RankGrid(program.spec.rows, program.spec.cols, dims), {}
    barrier = threading.Barrier(grid.ranks)
    pieces = [None] * grid.ranks

    class Packed:
        def __init__(self, me):
            self.me = me

        def __call__(self, index, outgoing, incoming):
            for peer, arrays in outgoing.items():
                mailbox[(index, self.me, peer)] = arrays
            barrier.wait()
            received = {peer: mailbox[(index, peer, self.me)] for peer in incoming}
            for peer, specs in incoming.items():   # (what arrives is what the receiver expects)
                assert [(a.size, a.dtype) for a in received[peer]] == [(n, d) for n, d in specs]
            barrier.wait()
            return received

    class Strict:
        strict = True

        def __call__(self, index, messages, sent, owner):
            for i, _, s in messages:
                if i in sent:
                    mailbox[(index, i)] = sent[i]
            barrier.wait()
            received = {i: mailbox[(index, i)] for i, _, s in messages if i not in sent}
            barrier.wait()
            return received

    def rank(me: int):
        pieces[me] = BlockRun(program, host_arrays(program, inputs), grid, me).run(Strict() if strict else Packed(me))

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(grid.ranks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return apply_stores(program, host_arrays(program, inputs), [p for part in pieces for p in part])


def reference(program: MeshProgram, inputs: dict) -> dict:
    """One process, one dict of buffers per PE, every rule of the mesh IR's docstring in order."""
    spec = program.spec
    host = {a.name: np.array(inputs[a.name], a.dtype) if a.role == "input" else np.zeros(a.shape, a.dtype)
            for a in program.arrays}
    memory = {pe: {b.name: np.zeros(b.shape, b.dtype) for b in program.buffers} for pe in Pes(0, spec.rows, 0, spec.cols)}
    for ld in program.loads:
        for pe in ld.pes:
            local.write(ld.dst, pe, memory[pe], region(ld.src, local.pe_env(pe), host))
    for step in program.steps:
        for cp in step.computes:
            for pe in cp.pes:
                local.run_compute(cp, pe, memory[pe])
        sends = [s for t in step.transfers for s in expand(t)]
        data = [local.read(s.src_region, s.src, memory[s.src]) for s in sends]
        for s, d in zip(sends, data):
            local.write(s.dst_region, s.dst, memory[s.dst], d)
    for st in program.stores:
        for pe in st.pes:
            view = region(st.dst, local.pe_env(pe), host)
            view[...] = local.read(st.src, pe, memory[pe]).reshape(view.shape)
    return {a.name: host[a.name] for a in program.outputs}


def integers(rng, shape):
    return rng.integers(-4, 5, shape).astype(np.float64)


def matrices(n: int, t: int = 2, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"a": integers(rng, (n * t, n * t)), "b": integers(rng, (n * t, n * t))}


def assert_same(got: dict, want: dict):
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name].dtype == want[name].dtype and got[name].shape == want[name].shape, name
        assert got[name].tobytes() == want[name].tobytes(), name
