"""Weights laid out at load time: read-only inputs copied whole onto every PE (a replica).

A product stage's right operand is often a weight every point shares::

    stage matmul8(m in 0:16384) device {
      t[m, 0:1, 0:64] = gemm(h[m, 0:1, 0:512], w[0, 0:512, 0:64])
    }

The stationary plan (`plan_gemm.stationary`) needs all of `w` on every PE of its rectangle;
fetched from `w`'s home blocks at each run, that is 128 KiB into each of 1024 PEs, bound by
each PE's link: as long as the product itself.  But `w` is an input or a const: nothing
writes it, and its layout is the compiler's to choose when the program's data is loaded
(T10 places weights at load time; nnScaler calls a copy per device the R layout).  So the
planner may load it from the host as a replica on every PE, next to its home blocks, and
the stationary plan reads it where it lies: no fetch, no broadcast.

Which weights (the cost policy's question, asked once per program): the inputs and consts
(or temps that only copy them: a layout of inputs) that are the shared right operand of some
product stage, smallest first, while all replicas together take at most half the SRAM a PE
has left beside the homes at their peak (the other half stays for the stage plans).  A weight
that does not fit is fetched as before, and a program with a stage that does not fit beside
the replicas is planned again without them (`plan.plan`).  Replicas cost host load bytes (not charged by the
engines, like every load) and SRAM for the whole program; a replica is never written, so it
never goes stale.

    planner.replicas          # {"w": "rep_w"}: buffer -> its replica's local buffer
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from fractal.backends.pointwise import stage_points
from fractal.lower.rewrite import stages_of
from fractal.lower.tile_affine import aff
from fractal.lower.tile_ir import Copy, Gemm, Region, Stage

from .mesh_ir import Alloc, Load, Pes


def shared_weights(tile) -> list[str]:
    """The weights read as the right operand of a product stage, the same region at every point
    (module docstring), in the order the program first reads them: inputs, consts, and temps
    that are a layout of them (`layouts`)."""
    roles, laid = {b.name: b.role for b in tile.buffers}, layouts(tile)
    out: list[str] = []
    for s in (st for stmt in tile.body for st in stages_of(stmt)):
        if len(s.body) != 1 or not isinstance(s.body[0], Gemm):
            continue
        b = s.body[0].b
        if (roles.get(b.buffer) in ("input", "const") or b.buffer in laid) and \
                not b.vars() & {d.var for d in s.dims} and all(x == 1 for x in b.stride) and b.buffer not in out:
            out.append(b.buffer)
    return out


def layouts(tile) -> dict[str, list[tuple[Region, Region]]]:
    """Temps that are only a layout of inputs or consts (the lowering's concatenated weights:
    `w[0:64, 64*r:64*r + 64] = copy(in_b[r, 0:64, 0:64])`): every op writing them a plain copy
    from an input or const in a top-level stage.  {temp: its (region, host region) copies, one
    per op and point}: the loads of its replica.  (A copy of such a temp is not one: its loads
    would cut its regions at the first copies' boxes.)"""
    roles = {b.name: b.role for b in tile.buffers}
    out: dict[str, list] = {}
    bad: set[str] = set()
    for stmt in tile.body:
        for st in stages_of(stmt):
            for op in st.body:
                for r in op.writes:
                    plain = isinstance(op, Copy) and not op.perm and op.src.shape == op.dst.shape and \
                        roles.get(op.src.buffer) in ("input", "const") and isinstance(stmt, Stage) and \
                        all(x == 1 for x in op.src.stride + op.dst.stride)
                    if roles.get(r.buffer) != "temp" or not plain:
                        bad.add(r.buffer)
                        continue
                    for env in stage_points(st.dims, {}):
                        out.setdefault(r.buffer, []).append((_at(op.dst, env), _at(op.src, env)))
    shapes = {b.name: b.shape for b in tile.buffers}
    return {name: copies for name, copies in out.items() if name not in bad and _once(shapes[name], copies)}


def _once(shape, copies) -> bool:
    """Whether the copies write no element twice (the loads then need no order among them)."""
    seen = np.zeros(shape, np.int32)
    for dst, _ in copies:
        seen[tuple(slice(s.evaluate({}), s.evaluate({}) + (1 if n is None else n)) for s, n in zip(dst.start, dst.size))] += 1
    return bool((seen <= 1).all())


def _at(r: Region, env: dict) -> Region:
    return Region(r.buffer, tuple(aff(s.evaluate(env)) for s in r.start), r.size, r.stride)


def choose(tile, spec, peak_home_bytes: int) -> dict[str, str]:
    """{weight: its replica's local buffer name} of the weights replicated (module docstring)."""
    budget = (spec.usable_bytes - peak_home_bytes) // 2
    sizes = {b.name: int(np.prod(b.shape, dtype=np.int64)) * b.dtype.itemsize for b in tile.buffers}
    out: dict[str, str] = {}
    for name in sorted(shared_weights(tile), key=lambda n: (sizes[n], n)):
        if 0 < sizes[name] <= budget:
            out[name] = f"rep_{name}"   # (r_: the reduce and residency buffers)
            budget -= sizes[name]
    return out


def allocs(planner) -> list[Alloc]:
    """The allocs of every replica: on every PE, for the whole program."""
    every = Pes(0, planner.spec.rows, 0, planner.spec.cols)
    return [Alloc((local,), every) for local in planner.replicas.values()]


def loads(planner) -> tuple[list[Alloc], list[Load]]:
    """The allocs and host loads of every replica: the whole buffer onto every PE (a layout of
    inputs from their host regions, copy by copy)."""
    every = Pes(0, planner.spec.rows, 0, planner.spec.cols)
    laid = layouts(planner.tile)
    out = []
    for name, local in planner.replicas.items():
        shape = planner.buffers[name].shape
        whole = Region(name, (0,) * len(shape), shape)
        out += [Load(every, replace(dst, buffer=local), src) for dst, src in laid.get(name, [(whole, whole)])]
    return allocs(planner), out
