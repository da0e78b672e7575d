"""A reduce's loop on the mesh: partial sums where the operands live, then a tree.

A `reduce` lowers to a sequential loop marked associative (`Loop.associative`), one stage
per step folding one more row into the state (`fractal.backends.scan_pattern`)::

    for r in 0:100352 sequential associative host {
      stage add21() device { st[r + 1, 0:1, 0:64] = add(st[r, 0:1, 0:64], x[r, 0:1, 0:64]) }
    }

Unrolled, that is 100352 stage runs one after the other.  Which states other ops read is
asked exactly, over every instance of every op (`_read_states`: isl for affine reads, a mask
for the rows a gather reads through its constant table); the combiner may be re-associated,
as the program allowed by declaring the reduce, as long as the plan still writes those.  A
stage with no dims (one long reduction) whose only state read is the last:

1. every PE holding home blocks of `x[0:N]` reduces its rows of them (`Reduce`, no message);
2. a binary tree over those PEs, in the homes' Z order (early rounds between neighbours):
   in round j each PE at an odd multiple of 2^j in that order sends its partial to the PE
   2^j places before it, which combines the two;
3. the first PE combines the initial state `st[0]` (fetched from its home) with the total
   and writes `st[N]` home.

That is 2 + ceil(log2 P) supersteps instead of N stage runs.  A stage with dims (a batch of
short reductions) is `plan_reduce_batch`'s: one stage per phase, or each point to its own
step (which writes no other state, so not where a later run of the loop starts from a state
this one writes: `_carried`).  The combiners (add, max, min) commute, so the order is free;
the sums differ from the loop's by rounding only.  A loop that does not qualify (not a scan
of one index row per step, its states read elsewhere, no room) is unrolled as before
(`plan.Planner.walk`).
"""

from __future__ import annotations

from dataclasses import replace

import islpy as isl
import numpy as np

from fractal.backends.pointwise import region_starts, stage_point_values
from fractal.backends.scan_pattern import match_scan
from fractal.lower.dependences import accesses, tables_of
from fractal.lower.table_rows import listed_mask
from fractal.lower.tile_ir import COMBINER_OF, Binary, Dim, Elementwise, Load, Loop, Reduce, Region, Stage
from fractal.lower.tile_isl import Scope, buffer_tag

from .home import pe_rank
from .mesh_ir import Alloc, Compute, Free, Pes, Superstep, covering, sends_table
from .operand import box_moves
from . import plan_reduce_batch



def steps(planner, loop: Loop, env: dict) -> list[Superstep] | None:
    """The loop's supersteps as partial sums and a tree (module docstring), or None."""
    found = match_scan(loop) if loop.associative else None
    if found is None:
        return None
    stage, op, x = found
    dst, var, combiner = op.dst, loop.var, COMBINER_OF.get(op.expr.op)
    start, stop = loop.start.evaluate(env), loop.stop.evaluate(env)
    ax = _row_axis(x, var)   # (dst's states may lie anywhere: only the first and last are touched)
    hx, hd = planner.home(x.buffer), planner.home(dst.buffer)
    if combiner is None or stop - start < 2 or ax is None or hx is None or hd is None or \
            planner.buffers[x.buffer].dtype != planner.buffers[dst.buffer].dtype:
        return None
    reads = _read_states(planner, loop, op, env)   # (point, step) of the states other ops read
    if reads is None:
        return None
    if not stage.dims:
        return _tree(planner, loop, stage, op, x, ax, combiner, env) if {r for _, r in reads} <= {stop - 1} else None
    phases = plan_reduce_batch.phases(loop, stage, env)
    if {r for _, r in reads} <= {b - 1 for _, b, _ in phases}:
        return plan_reduce_batch.per_phase(planner, loop, stage, op, x, ax, combiner, env, phases)
    if _carried(planner, loop, env):
        return None
    return plan_reduce_batch.own_ends(planner, loop, stage, op, x, ax, combiner, env, reads)


def _tree(planner, loop: Loop, stage: Stage, op, x: Region, ax: int, combiner: str, env: dict):
    """One long reduction: partial sums on the PEs holding its rows, then a tree (module
    docstring); None when the PEs have no room for the partials."""
    dst, var = op.dst, loop.var
    start, stop = loop.start.evaluate(env), loop.stop.evaluate(env)
    hx, hd = planner.home(x.buffer), planner.home(dst.buffer)
    label = planner.label(stage.name)
    at = lambda region, r: np.array([s.evaluate({**env, var: r}) for s in region.start], np.int64)  # noqa: E731
    row = np.array([1 if s is None else s for s in dst.size], np.int64)      # one state, every axis
    lo = at(x, start)
    hi = lo + np.array([1 if s is None else s for s in x.size], np.int64)
    hi[ax] = lo[ax] + stop - start
    _, owner, part_lo, part_hi, block_lo = hx.pieces_many(lo[None], hi[None])
    rank = pe_rank(planner.spec.rows, planner.spec.cols)
    pes = sorted(set(owner.tolist()), key=lambda q: rank[q])                 # the tree's order
    per_pe: dict = {}   # PE id -> its blocks' (start in the block, sizes)
    for q, a, c, b in zip(owner.tolist(), part_lo.tolist(), part_hi.tolist(), block_lo.tolist()):
        per_pe.setdefault(q, []).append((tuple(i - j for i, j in zip(a, b)), tuple(i - j for i, j in zip(c, a))))
    k = max(len(v) for v in per_pe.values())
    dtype, cols = planner.buffers[dst.buffer].dtype, planner.spec.cols
    need = (k + 3) * int(row.prod()) * dtype.itemsize
    if int(planner.free()[pes].min()) < need:
        return None
    name = f"r_{stage.name}"
    parts = planner.declare(f"{name}_parts{k}", (k, *row), dtype)
    acc, got, init = (planner.declare(f"{name}_{w}", tuple(row), dtype) for w in ("acc", "in", "init"))
    whole = lambda buf: Region(buf, (0,) * len(row), dst.size)  # noqa: E731  (one state, dst's axes)
    everyone = covering(pes, cols)
    root = Pes.one(*divmod(pes[0], cols))

    def partial(blocks):   # a PE's ops: its rows of each block reduced, then its blocks combined
        size = lambda n: tuple(n if a == ax else s for a, s in enumerate(x.size))  # noqa: E731
        reduce_at = [a for a, s in enumerate(size(0)) if s is not None].index(ax)
        if len(blocks) == 1:
            (off, n), = blocks
            return (Reduce(Region(hx.local, off, size(n[ax])), whole(acc), (reduce_at,), combiner),)
        slot = lambda j: Region(parts, (j,) + (0,) * len(row), (None, *dst.size))  # noqa: E731
        return tuple(Reduce(Region(hx.local, off, size(n[ax])), slot(j), (reduce_at,), combiner)
                     for j, (off, n) in enumerate(blocks)) + \
            (Reduce(Region(parts, (0,) * (len(row) + 1), (len(blocks), *dst.size)), whole(acc), (0,), combiner),)

    by_ops: dict = {}
    for q, blocks in per_pe.items():
        by_ops.setdefault(partial(blocks), []).append(q)
    computes = [Compute(p, ops, (), stage.name) for ops, group in by_ops.items() for p in covering(group, cols)]
    combine = (Elementwise(whole(acc), Binary(op.expr.op, Load(whole(acc)), Load(whole(got)))),)
    # superstep t computes the combines of round t - 1's receivers, then sends round t's partials
    out, receivers, j = [], [], 1
    while True:
        pairs = [(pes[i + j], pes[i]) for i in range(0, len(pes) - j, 2 * j)]
        if not pairs:
            break
        combines = tuple(Compute(p, combine, (), stage.name) for p in covering(receivers, cols))
        out.append(Superstep(f"{label} reduce: tree round {len(out)}", computes=combines,
                             transfers=_pairs(acc, got, pairs, row, cols)))
        receivers, j = [d for _, d in pairs], 2 * j
    state = lambda r: (at(dst, r)[None], (at(dst, r) + row)[None])  # noqa: E731  (a state's box)
    fetch = box_moves(hd, init, *state(start - 1), np.array(pes[:1]), cols, True)
    allocs = tuple(Alloc((parts, acc, got), p) for p in everyone) + (Alloc((init,), root),)
    partials = Superstep(f"{label} reduce: partial sums", allocs=allocs, computes=tuple(computes), transfers=fetch)
    if out:   # the partial sums and round 0's sends in one superstep
        out[0] = replace(out[0], label=partials.label, allocs=allocs, computes=partials.computes,
                         transfers=out[0].transfers + fetch)
    else:
        out = [partials]
    final = combine if receivers else ()   # (the last round's one receiver is the root)
    last = Elementwise(whole(acc), Binary(op.expr.op, Load(whole(init)), Load(whole(acc))))
    out.append(Superstep(f"{label} reduce: result", computes=(Compute(root, final + (last,), (), stage.name),),
                         transfers=box_moves(hd, acc, *state(stop - 1), np.array(pes[:1]), cols, False),
                         frees=tuple(Free((parts, acc, got), p) for p in everyone) + (Free((init,), root),)))
    return out


def _row_axis(region: Region, var: str) -> int | None:
    """The index axis whose start moves by one row per step of `var`, the only start reading var."""
    axes = [a for a, s in enumerate(region.start) if var in s.vars()]
    if len(axes) != 1 or any(s != 1 for s in region.stride):
        return None
    a = axes[0]
    return a if region.size[a] is None and dict(region.start[a].terms).get(var) == 1 else None


def _read_states(planner, loop: Loop, op, env: dict) -> list[tuple[tuple, int]] | None:
    """The states, at this run of the loops around (`env`), that an op other than the loop's
    own reads, as (the stage's point, step) pairs, exactly: the elements the loop writes
    against every element any other op reads, at any instance (with isl; reads through a
    constant table listed with NumPy, `listed_mask`).  None when the loop's write is not one
    access."""
    key = loop.body[0].name
    if key not in planner.reduce_dead:
        planner.reduce_dead[key] = _accesses_of(planner.tile, loop, op)
    found = planner.reduce_dead[key]
    if found is None:
        return None
    mine, _, names, read, listed = found
    out: set = set()
    if read is not None:
        hit = mine.intersect_domain(_run_of(names, env)).intersect_range(read).domain()
        r = names.index(loop.var)
        dims = [i for i, v in enumerate(names) if v not in env and v != loop.var]
        hit.foreach_point(lambda q: out.add((tuple(q.get_coordinate_val(isl.dim_type.set, i).to_python() for i in dims),
                                             q.get_coordinate_val(isl.dim_type.set, r).to_python())))
    if listed is not None:
        pairs = _listed_states(loop, op.dst, env, listed)
        if pairs is None:
            return None
        out |= pairs
    return sorted(out)


def _carried(planner, loop: Loop, env: dict) -> bool:
    """Whether a run of the loop starts from a state this run writes (a state carried from run
    to run, as through an outer loop: only a plan that leaves every last state behind will do)."""
    mine, prev, names, _, _ = planner.reduce_dead[loop.body[0].name]
    if loop.start.vars():
        return True   # (where each run starts is not one step: not asked)
    k = [f"k{i}" for i in range(len(names))]
    first = isl.Set(f"{{ [{', '.join(k)}] : k{names.index(loop.var)} = {loop.start.evaluate({})} }}")
    return not mine.intersect_domain(_run_of(names, env)).range().intersect(
        prev.intersect_domain(first).range()).is_empty()


def _run_of(names, env: dict) -> isl.Set:
    """The loop's instances at this run of the loops around (`env`)."""
    fixed = [f"k{i} = {env[v]}" for i, v in enumerate(names) if v in env]
    return isl.Set(f"{{ [{', '.join(f'k{i}' for i in range(len(names)))}] : {' and '.join(fixed) or 'true'} }}")


def _listed_states(loop: Loop, dst: Region, env: dict, mask: np.ndarray) -> set | None:
    """The (point, step) pairs whose state `dst` meets `mask` (the elements read through
    constant tables), every step at once with NumPy; None when a state's range axes move."""
    stage = loop.body[0]
    index = [a for a, n in enumerate(dst.size) if n is None]
    key = []
    for a, (st, n, stride) in enumerate(zip(dst.start, dst.size, dst.stride)):
        if n is None:
            key.append(slice(None))
        elif st.vars():
            return None
        else:
            key.append(slice(st.evaluate({}), st.evaluate({}) + (n - 1) * stride + 1, stride))
    rows = mask[tuple(key)].any(axis=tuple(a for a, n in enumerate(dst.size) if n is not None))
    # every (step, point) at once: the loop's steps as the outer dim of the stage's space
    values, n = stage_point_values((Dim(loop.var, loop.start, loop.stop),) + stage.dims, env)
    if not n:
        return set()
    hit = np.flatnonzero(rows[tuple(region_starts(dst, values, n)[:, index].T)])
    return {(tuple(int(values[d.var][j]) for d in stage.dims), int(values[loop.var][j])) for j in hit}


def _accesses_of(tile, loop: Loop, op):
    """(the loop's write and its read of the previous state, as `{ [its scope's vars] ->
    elements }`, those vars, every element another op reads of the buffer: with isl, or None;
    through constant tables: a mask, or None), or None when the write or that read is not one
    access."""
    shapes = {b.name: b.shape for b in tile.buffers}
    found = accesses(tile.body, Scope(), shapes, tables_of(tile))
    prev = [e.region for e in (op.expr.a, op.expr.b) if e.region.buffer == op.dst.buffer]
    mine = [a for a in found if a.write and a.region is op.dst]
    own = [a for a in found if not a.write and any(a.region is r for r in prev)]
    others = [a for a in found if not a.write and a.region.buffer == op.dst.buffer
              and not any(a.region is r for r in prev)]
    if len(mine) != 1 or len(own) != 1:
        return None
    names = mine[0].scope.vars
    masks = {id(a): listed_mask(a) for a in others if a.indirect is not None}
    plain = [a for a in others if masks.get(id(a)) is None]
    listed = [m for m in masks.values() if m is not None]
    read = None
    if plain:
        read = isl.Set(f"{{ {buffer_tag(op.dst.buffer)}[{', '.join(f'e{k}' for k in range(len(op.dst.start)))}] : false }}")
        for a in plain:
            read = read.union(a.relation(()).range())
    return mine[0].relation(names), own[0].relation(names), list(names), read, \
        np.logical_or.reduce(listed) if listed else None


def _pairs(src: str, dst: str, pairs, row, cols: int) -> tuple:
    """One state from each pair's first PE (id) to its second."""
    ids = np.array(pairs, np.int64).reshape(-1, 2)
    routes = np.stack([ids[:, 0] // cols, ids[:, 0] % cols, ids[:, 1] // cols, ids[:, 1] % cols], 1)
    zero = np.zeros((len(ids), len(row)), np.int64)
    return sends_table(src, dst, routes, zero, zero, np.tile(row, (len(ids), 1)))
