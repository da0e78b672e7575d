"""Passes 8 and 9 (coarsening): GEMMs sharing their left operand become one over side-by-side weights.

Two GEMMs of one stage that multiply the same `a` by different weight matrices (a grid
RNN's x- and y-projections of one concatenated input; gate weights stored one matrix per
gate) run as one BLAS call with `N1 + N2` columns: `c1 = a @ b1; c2 = a @ b2` becomes
`c1' = a @ [b1 | b2]`, and every access of `c2` reads the right column block of `c1'`.  The
weights are read-only buffers of one shape read at the same indices; they are put side by
side once per run, at the start, in a new temporary (whole buffers: every layer's weights).

Before::                                                 After::

    stage k(m in 0:4) device {                             stage w_u_v() device {
      c1[m, 0:2, 0:8] = gemm(x[m, 0:2, 0:16], u[0:16, 0:8])   w_u_v[0:16, 0:8] = copy(u[0:16, 0:8])
      c2[m, 0:2, 0:8] = gemm(x[m, 0:2, 0:16], v[0:16, 0:8])   w_u_v[0:16, 8:16] = copy(v[0:16, 0:8])
      y[m, 0:2, 0:8] = add(c1[m, 0:2, 0:8], c2[m, 0:2, 0:8])  }
    }                                                      stage k(m in 0:4) device {
                                                             c1[m, 0:2, 0:16] = gemm(x[m, 0:2, 0:16], w_u_v[0:16, 0:16])
                                                             y[m, 0:2, 0:8] = add(c1[m, 0:2, 0:8], c1[m, 0:2, 8:16])
                                                           }
"""

from __future__ import annotations

from dataclasses import replace

from .rewrite import expand_stages, fresh_name, map_regions, map_stages, prune_buffers
from .tile_expr import Region
from .tile_affine import aff
from .tile_ir import Buffer, Copy, Gemm, Stage, TileProgram


def merge_gemms(program: TileProgram, ctx=None) -> TileProgram:
    """Pass 8, merge_gemms: two GEMMs of a stage with one left operand and weights of one shape
    become one over the weights side by side (see the module docstring)."""
    while True:
        merged = _merge_one(program)
        if merged is None:
            return prune_buffers(program)
        program = merged


def _merge_one(program: TileProgram):
    buffers = {b.name: b for b in program.buffers}
    for st in program.stages():
        ops = st.body
        for i, g in enumerate(ops):
            for j in range(i + 1, len(ops)):
                h = ops[j]
                if _mergeable(g, h, buffers) and _free_between(ops[i + 1:j], g, h):
                    return _merged(program, st, i, j, buffers)
    return None


def _whole_columns(r: Region, b: Buffer) -> bool:
    """The region's last axis is all of the buffer's last axis, contiguous."""
    return r.size[-1] == b.shape[-1] and r.start[-1].is_const and r.start[-1].const == 0 and r.stride[-1] == 1


def _mergeable(g, h, buffers) -> bool:
    if not (isinstance(g, Gemm) and isinstance(h, Gemm)) or g.accumulate or h.accumulate:
        return False
    if g.a != h.a or g.trans_a != h.trans_a or g.trans_b or h.trans_b:
        return False
    b1, b2, c1, c2 = (buffers[r.buffer] for r in (g.b, h.b, g.c, h.c))
    weights = (b1.name != b2.name and b1.role in ("input", "const") and b2.role in ("input", "const")
               and b1.shape == b2.shape and b1.dtype == b2.dtype and g.b.start == h.b.start
               and g.b.size == h.b.size and g.b.stride == h.b.stride and _whole_columns(g.b, b1))
    results = (c1.name != c2.name and c1.role == c2.role == "temp" and c1.dtype == c2.dtype
               and c1.shape[:-1] == c2.shape[:-1] and c1.layout == c2.layout == tuple(range(c1.ndim))
               and g.c.start[:-1] == h.c.start[:-1] and _whole_columns(g.c, c1) and _whole_columns(h.c, c2))
    return weights and results and g.a.buffer not in (c1.name, c2.name)


def _free_between(between, g, h) -> bool:
    """h may move up to g: nothing in between writes what h reads or touches what h writes."""
    names = {g.a.buffer, h.b.buffer}
    return not any(w.buffer in names or w.buffer == h.c.buffer for op in between for w in op.writes) and \
        not any(r.buffer == h.c.buffer for op in between for r in op.reads)


def _merged(program: TileProgram, st: Stage, i: int, j: int, buffers) -> TileProgram:
    g, h = st.body[i], st.body[j]
    b1, b2, c1, c2 = (buffers[r.buffer] for r in (g.b, h.b, g.c, h.c))
    n1, n2 = b1.shape[-1], b2.shape[-1]
    weights = f"w_{b1.name}_{b2.name}"
    wide = c1.shape[-1] + c2.shape[-1]

    def widen(r: Region, size: int) -> Region:
        return replace(r, size=r.size[:-1] + (size,))

    gemm = replace(g, b=replace(widen(g.b, n1 + n2), buffer=weights), c=widen(g.c, wide))
    body = list(st.body)
    body[i] = gemm
    del body[j]
    target = st

    def c2_into_c1(r: Region) -> Region:  # c2's columns are c1's last block
        if r.buffer != c2.name:
            return r
        return replace(r, buffer=c1.name, start=r.start[:-1] + (r.start[-1] + c1.shape[-1],))

    def rewrite(s: Stage) -> Stage:
        s = replace(s, body=tuple(body)) if s is target else s
        return replace(s, body=tuple(map_regions(op, c2_into_c1) for op in s.body))

    program = map_stages(program, rewrite)
    everything = (0,) * (b1.ndim - 1)
    lead = tuple(b1.shape[:-1])
    copy = Stage(weights, (), (
        Copy(Region(b1.name, everything + (0,), lead + (n1,)), Region(weights, everything + (0,), lead + (n1,))),
        Copy(Region(b2.name, everything + (0,), lead + (n2,)), Region(weights, everything + (n1,), lead + (n2,)))))
    new_buffers = [replace(b, shape=b.shape[:-1] + (wide,)) if b.name == c1.name else b
                   for b in program.buffers if b.name != c2.name]
    if weights not in buffers:
        new_buffers.append(Buffer(weights, lead + (n1 + n2,), b1.dtype))
        return replace(program, buffers=tuple(new_buffers), body=(copy,) + program.body)
    return replace(program, buffers=tuple(new_buffers))


# -- a stage dim only the weights and the result columns name: one GEMM over it ----------------

def widen_gemms(program: TileProgram, ctx=None) -> TileProgram:
    """Pass 9, widen_gemms: a GEMM batched over a stage dim `d` that its left operand does not name, writing column
    block `d` of its result (`c[.., n*d:n*d + n] = a @ b[d]`), is one GEMM of `a` with the
    blocks `b[d]` side by side: they are placed in a new temporary by a stage just before.

    Before::                                               After::

        stage k(m in 0:8, d in 0:4) device {                 stage w_b(d in 0:4) device {
          c[m, 0:2, 2*d:2*d + 2] = gemm(a[m, 0:2, 0:8],        w_b[0:8, 2*d:2*d + 2] = copy(b[d, 0:8, 0:2])
                                        b[d, 0:8, 0:2])      }
        }                                                    stage k(m in 0:8) device {
                                                               c[m, 0:2, 0:8] = gemm(a[m, 0:2, 0:8], w_b[0:8, 0:8])
                                                             }
    """
    buffers = {b.name: b for b in program.buffers}
    buffers.update({st.name: None for st in program.stages()})  # (names stages may not take either)
    added: list[Buffer] = []
    program = expand_stages(program, lambda st: _widened(st, buffers, added) or [st])
    return prune_buffers(replace(program, buffers=program.buffers + tuple(added))) if added else program


def _widened(st: Stage, buffers, added) -> list | None:
    if len(st.body) != 1 or not isinstance(st.body[0], Gemm):
        return None
    g = st.body[0]
    if g.accumulate or g.trans_a or g.trans_b:
        return None
    stage_vars = {d.var for d in st.dims}
    bounded_by = set().union(*(x.start.vars() | x.stop.vars() for x in st.dims))  # (a polygon keeps these)
    for d in st.dims:
        if not (d.start.is_const and d.stop.is_const) or d.var in g.a.vars() or d.var in bounded_by or \
                any(d.var in a.vars() for a in g.c.start[:-1]):  # (c's other axes must not move with d)
            continue
        (k, n), lo, count = g.b.shape, d.start.const, d.stop.const - d.start.const
        col = g.c.start[-1]
        if g.b.vars() & stage_vars != {d.var} or g.c.stride[-1] != 1 or g.c.size[-1] != n or \
                _coefficient(col, d.var) != n or count < 2:
            continue
        name = fresh_name(f"w_{g.b.buffer}", set(buffers) | {b.name for b in added})
        added.append(Buffer(name, (k, n * count), buffers[g.b.buffer].dtype))
        place = Stage(name, (d,), (Copy(g.b, Region(name, (0, (aff(d.var) - lo) * n), (k, n))),))
        first = col.substitute({d.var: aff(lo)})
        gemm = replace(g, b=Region(name, (0, 0), (k, n * count)),
                       c=replace(g.c, start=g.c.start[:-1] + (first,), size=g.c.size[:-1] + (n * count,)))
        return [place, replace(st, dims=tuple(x for x in st.dims if x.var != d.var), body=(gemm,))]
    return None


def _coefficient(a, var: str):
    """`var`'s coefficient in `a` if `a` is linear in it (None if it also sits in a floor or mod)."""
    c = dict(a.terms).get(var, 0)
    return c if var not in (a - aff(var) * c).vars() else None

