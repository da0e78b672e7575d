"""Pass 4, access materialisation: give each temporary only the storage its accesses need.

The first tile IR stores every value of every step (write-once buffers, which is what made
the dependences exact).  A temporary whose writes and reads all happen within one iteration
of the sequential loops around them (a gate pre-activation of one time step) needs no slot
per iteration: those loop variables leave its row index and the buffer shrinks to one
step's rows, which then stay in cache from the op that writes them to the op that reads them.
(Which accesses are views and which are gathers is decided when lowering, where the rows of
every list element are known: affine rows are views, others gather through a table.)

Before (`t` written and read at step s only)::      After::

    buffer t: f32[15,1,32] global temp                buffer t: f32[3,1,32] global temp
    for s in 0:5 sequential host {                    for s in 0:5 sequential host {
      stage g(m in 0:3) { t[5*m + s] = ... }            stage g(m in 0:3) { t[m] = ... }
"""

from __future__ import annotations

from dataclasses import replace

from .tile_affine import aff
from .tile_expr import Region
from .tile_ir import Buffer, If, Loop, Stage, TileProgram
from .coarsen import _rewrite_stages
from .rewrite import map_regions


def materialise(program: TileProgram, ctx=None) -> TileProgram:
    sites = _access_sites(program)
    shrink = {}
    for buf in program.buffers:
        if buf.role != "temp" or buf.name not in sites:
            continue
        accesses = sites[buf.name]
        common = set.intersection(*(set(loops) for _, loops, _ in accesses))
        rows = {r.start[0] for r, _, _ in accesses}
        if common and len(rows) == 1 and all(r.size[0] is None for r, _, _ in accesses) and \
                _injective(next(iter(rows)).substitute({v: aff(0) for v in common}), accesses[0][2]):
            # every access, write and reads, names the same row: one iteration's rows are its own
            shrink[buf.name] = sorted(common)
    if not shrink:
        return program
    program = _rewrite_stages(program, lambda st: _contract_stage(st, shrink))
    return replace(program, buffers=tuple(_resized(b, _access_sites(program).get(b.name), b.name in shrink)
                                          for b in program.buffers))


def _access_sites(program):
    """buffer -> [(region, enclosing sequential loop vars, var ranges)] for every access."""
    out = {}

    def walk(stmts, loops, ranges):
        for s in stmts:
            if isinstance(s, Loop):
                lo, _ = s.start.bounds(ranges)
                _, hi = s.stop.bounds(ranges)
                inner = {**ranges, s.var: (lo, max(lo, hi - 1))}
                walk(s.body, loops + ((s.var,) if s.kind == "sequential" else ()), inner)
            elif isinstance(s, If):
                walk(s.then, loops, ranges)
                walk(s.orelse, loops, ranges)
            elif isinstance(s, Stage):
                inner = dict(ranges)
                for d in s.dims:
                    lo, _ = d.start.bounds(inner)
                    _, hi = d.stop.bounds(inner)
                    inner[d.var] = (lo, max(lo, hi - 1))
                for op in s.body:
                    for r in op.reads + op.writes:
                        out.setdefault(r.buffer, []).append((r, loops, inner))
    walk(program.body, (), {})
    return out


def _coeff(a, var):
    base = {v: 0 for v in a.vars()}
    return a.evaluate({**base, var: 1}) - a.evaluate(base)


def _injective(row, ranges) -> bool:
    """Distinct points, distinct rows: the coefficients form a mixed radix over the ranges."""
    if not isinstance(row, type(aff(0))) or any(not isinstance(a, str) for a in _atoms(row)):
        return False
    terms = sorted((abs(_coeff(row, v)), ranges[v][1] - ranges[v][0]) for v in row.vars())
    span = 0
    for c, n in terms:
        if c <= span:
            return False
        span += c * n
    return True


def _atoms(a):
    return [atom for atom, _ in getattr(a, "terms", ())]


def _contract_stage(st: Stage, shrink) -> Stage:
    def fix(r: Region) -> Region:
        if r.buffer not in shrink:
            return r
        row = r.start[0].substitute({v: aff(0) for v in shrink[r.buffer]})
        return replace(r, start=(row,) + r.start[1:])

    return replace(st, body=tuple(map_regions(op, fix) for op in st.body))


def _resized(b: Buffer, accesses, shrunk: bool) -> Buffer:
    if not shrunk or not accesses:
        return b
    rows = 0
    for r, _, ranges in accesses:
        _, hi = r.start[0].bounds(ranges)
        n = 1 if r.size[0] is None else (r.size[0] - 1) * r.stride[0] + 1
        rows = max(rows, hi + n)
    return replace(b, shape=(min(rows, b.shape[0]),) + b.shape[1:])
