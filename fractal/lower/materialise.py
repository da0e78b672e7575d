"""Passes 11-14, access materialisation: give each temporary only the storage its accesses need.

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

A temporary carried by a sequential loop (a scan's state, written at step s and read at
s + 1) and touched after it by nothing keeps a window of steps instead (`rolling`).

A temporary whose only use is to be copied whole into a result (`out[0:n] = copy(t[0:n])`,
nothing else touching `out`) needs no storage of its own: its writers write the result.  So
does a contracted reduce's state within its stage (`forward_state`): its initial value copied
into slot 0, slot 0 into the last slot, the product added there, the last slot copied to the
reduce's result become the initial value copied into the result and the product added there,
or the product written there where the initial value is a zero fill (a convolution's
output: three passes over it and the state's 50 MB saved)::

    st[p] = copy(z[i]); st[p + 98304] = copy(st[p])        t[p] += gemm(l[p], w)   (z: zeros)
    st[p + 98304] += gemm(l[p], w); t[p] = copy(st[p + 98304])   ->   t[p] = gemm(l[p], w)

A temporary whose accesses all fall within some of its rows keeps those rows only: a
contraction's result, written at its last slot alone (transformer_block's attention output:
129 slots of 4096 rows, 135 MB, of which the last slot is ever written or read), or a state
rolled to its last slots.  Rows read through a constant table outside them were never
written: they read zeros, as the table's padding does.

The four run as passes 11 (`forward_results`), 12 (`contract_storage`), 13 (`roll_storage`,
in `rolling`) and 14 (`trim_storage`).
"""

from __future__ import annotations

from dataclasses import replace

from .tile_affine import aff
from .tile_expr import Region
from .tile_ir import Copy, Gather, Gemm, Stage, TileProgram
import numpy as np

from .dependences import tables_of
from .rewrite import expand_stages, is_zero_fill, map_regions, map_stages, var_ranges
from .rolling import access_sites, dense, injective, written_before_read
from .rolling_finals import gather_table_uses, remapped_table, sole_table


def forward_results(program: TileProgram, ctx=None) -> TileProgram:
    """Pass 11, forward_results: a temporary copied whole into a result that nothing else
    touches is dropped, its writers writing the result (its readers reading it there); a
    reduce's state copied to its result within its stage is written there (`forward_state`)."""
    program = forward_state(program)
    while True:
        found = _whole_copy_into_result(program)
        if found is None:
            return program
        copy, shift = found
        temp, result = copy.src.buffer, copy.dst.buffer

        def rename(r: Region) -> Region:
            if r.buffer != temp:
                return r
            return replace(r, buffer=result, start=(r.start[0] + shift,) + r.start[1:])

        def forwarded(st: Stage) -> list:
            body = tuple(map_regions(op, rename) for op in st.body if op is not copy)
            return [replace(st, body=body)] if body else []
        program = expand_stages(program, forwarded)
        program = replace(program, buffers=tuple(b for b in program.buffers if b.name != temp))


def _whole_copy_into_result(program: TileProgram):
    """A copy of all of a temporary into an output that no other op reads or writes, at the
    top level (after every write of the temporary), and the row shift from the temporary to
    the output (None if there is none).  Other reads of the temporary then read the output's
    rows, which hold the same values at the same times."""
    buffers = {b.name: b for b in program.buffers}
    uses: dict[str, list] = {}
    for st in program.stages():
        for op in st.body:
            for r in op.reads + op.writes:
                uses.setdefault(r.buffer, []).append(op)
    for st in (s for s in program.body if isinstance(s, Stage)):  # (a copy in a loop may run before t's last write)
        for op in st.body:
            if not isinstance(op, Copy) or op.perm:
                continue
            t, out = buffers[op.src.buffer], buffers[op.dst.buffer]
            whole = Region(t.name, (0,) * t.ndim, t.shape)
            if not (t.role == "temp" and out.role == "output" and op.src == whole and t.dtype == out.dtype
                    and t.shape[1:] == out.shape[1:] and t.layout == out.layout == tuple(range(t.ndim))):
                continue
            shift = op.dst.start[0]
            if op.dst == Region(out.name, (shift,) + (0,) * (t.ndim - 1), t.shape) and shift.is_const and \
                    uses[out.name] == [op]:
                return op, shift
    return None


def contract_storage(program: TileProgram, ctx=None) -> TileProgram:
    """Pass 12, contract_storage: a temporary whose every access names one row within one
    iteration of the loops they share keeps one iteration's rows."""
    found = access_sites(program)[0]
    sites = {buf: [(x.region, tuple(lp.var for lp in x.loops), x.ranges) for x in xs] for buf, xs in found.items()}
    rows_of = {}  # buffer -> its new (dense) row index, and the number of rows
    for buf in program.buffers:
        if buf.role != "temp" or buf.name not in sites:
            continue
        accesses = sites[buf.name]
        common = set.intersection(*(set(loops) for _, loops, _ in accesses))
        rows = {r.start[0] for r, _, _ in accesses}
        if not (common and len(rows) == 1 and all(r.size[0] is None for r, _, _ in accesses)) or \
                not written_before_read(found[buf.name]):
            continue
        # every access, write and reads, names the same row: one iteration's rows are its own;
        # the loop variables leave the index and the rest is renumbered densely
        dense_rows = dense(next(iter(rows)).substitute({v: aff(0) for v in common}), accesses[0][2])
        if dense_rows is not None and dense_rows[1] < buf.shape[0]:
            rows_of[buf.name] = dense_rows
    if not rows_of:
        return program

    def fix(r: Region) -> Region:
        return replace(r, start=(rows_of[r.buffer][0],) + r.start[1:]) if r.buffer in rows_of else r

    program = map_stages(program, lambda st: replace(st, body=tuple(map_regions(op, fix) for op in st.body)))
    return replace(program, buffers=tuple(replace(b, shape=(rows_of[b.name][1],) + b.shape[1:])
                                          if b.name in rows_of else b for b in program.buffers))


def trim_storage(program: TileProgram, ctx=None) -> TileProgram:
    """Pass 14, trim_storage: a temporary keeps only the rows from the first to the last that
    an access touches (rows read through a constant table of its own elsewhere read zeros:
    the table's entries there become padding)."""
    sites = access_sites(program)[0]
    tables = tables_of(program)
    table_uses = gather_table_uses(sites)
    kept, new_tables = {}, {}   # buffer -> (first row, rows); table -> new data
    for buf in program.buffers:
        if buf.role != "temp" or buf.name not in sites:
            continue
        spans, through = [], []
        for x in sites[buf.name]:
            if sole_table(x, tables, table_uses) is not None:
                through.append(x)
                continue
            lo, hi = x.region.start[0].bounds(x.ranges)
            spans.append((lo, hi + ((x.region.size[0] or 1) - 1) * x.region.stride[0]))
        if not spans:
            continue
        first, last = max(0, min(lo for lo, _ in spans)), min(buf.shape[0] - 1, max(hi for _, hi in spans))
        rows = max(last - first + 1, 1)
        if rows >= buf.shape[0]:
            continue
        kept[buf.name] = (first, rows)
        for x in through:
            new_tables[x.node.index.buffer] = remapped_table(
                tables[x.node.index.buffer], x.region, first, lambda rel: np.where(rel < rows, rel, -1), rows)
    if not kept:
        return program

    def fix(r: Region) -> Region:
        return replace(r, start=(r.start[0] - kept[r.buffer][0],) + r.start[1:]) if r.buffer in kept else r

    def trimmed(op):
        out = map_regions(op, fix)
        if isinstance(op, Gather) and op.src.buffer in kept and op.index.buffer in new_tables:
            # through its own (rewritten) table: the whole new row axis
            out = replace(out, src=replace(op.src, start=(aff(0),) + op.src.start[1:],
                                           size=(kept[op.src.buffer][1],) + op.src.size[1:]))
        return out

    program = map_stages(program, lambda st: replace(st, body=tuple(trimmed(op) for op in st.body)))
    return replace(program, buffers=tuple(
        replace(b, shape=(kept[b.name][1],) + b.shape[1:]) if b.name in kept else
        replace(b, data=new_tables[b.name]) if b.name in new_tables else b for b in program.buffers))


def forward_state(program: TileProgram) -> TileProgram:
    """Within each stage, the copy chain of a state no other stage touches
    (`z -> st[a] -> st[b] (+= products) -> t`) collapses onto its result `t` (module docstring)."""
    users: dict[str, set] = {}
    zeros = _zero_fills(program)
    for st in program.stages():
        for op in st.body:
            for r in op.reads + op.writes:
                users.setdefault(r.buffer, set()).add(id(st))
    temps = {b.name for b in program.buffers if b.role == "temp"}

    dropped = set()

    def forwarded(st: Stage) -> Stage:
        body = list(st.body)
        while (found := _state_chain(body, st, temps, users)) is not None:
            dropped.add(body[found[1]].dst.buffer)
            body = _collapsed(body, *found, zeros)
        return replace(st, body=tuple(body)) if len(body) != len(st.body) else st

    program = map_stages(program, forwarded)
    return replace(program, buffers=tuple(b for b in program.buffers if b.name not in dropped)) if dropped else program


def _state_chain(body: list, st: Stage, temps: set, users: dict):
    """(i, j, updates, l) of a chain in `body`: op i `A[ra] = copy(Z)`, op j `A[rb] =
    copy(A[ra])`, ops `updates` `A[rb] += gemm(...)`, op l `T[rt] = copy(A[rb])`, where only
    these ops touch `A` (a temporary of this stage alone) or, in this stage, `T`; else None."""
    for l, last in enumerate(body):
        if not (isinstance(last, Copy) and not last.perm and last.src.buffer in temps
                and users.get(last.src.buffer) == {id(st)} and last.dst.buffer != last.src.buffer):
            continue
        a, rb, t = last.src.buffer, last.src, last.dst
        touching = [k for k, op in enumerate(body) if any(r.buffer == a for r in op.reads + op.writes)]
        j = next((k for k in touching if isinstance(body[k], Copy) and body[k].dst == rb), None)
        if j is None or body[j].perm or body[j].src.buffer != a or j > l:
            continue
        ra = body[j].src
        i = next((k for k in touching if k < j and body[k].writes[0] == ra), None)
        if i is None or not isinstance(body[i], Copy) or body[i].perm or body[i].src.buffer in (a, t.buffer):
            continue
        updates = [k for k in touching if j < k < l]
        if set(touching) != {i, j, l, *updates} or not all(
                isinstance(body[k], Gemm) and body[k].accumulate and body[k].c == rb and
                body[k].a.buffer != a and body[k].b.buffer != a for k in updates):
            continue
        if any(r.buffer == t.buffer for k, op in enumerate(body) if k != l for r in op.reads + op.writes):
            continue
        if not (ra.size == rb.size == t.size and ra.stride == rb.stride == t.stride) or not _apart(ra, rb, st):
            continue
        return i, j, updates, l
    return None


def _apart(ra: Region, rb: Region, st: Stage) -> bool:
    """Do the stage's points each touch rows of their own through `ra` and `rb` (no point
    reads a row another writes)?  Each row index injective over the dims, their ranges apart."""
    ranges = var_ranges([st])
    if not all(set(r.vars()) <= set(ranges) for r in (ra, rb)):
        return False
    (alo, ahi), (blo, bhi) = ra.start[0].bounds(ranges), rb.start[0].bounds(ranges)
    return (ahi < blo or bhi < alo) and all(injective(r.start[0], ranges) for r in (ra, rb))


def _collapsed(body: list, i: int, j: int, updates: list, l: int, zeros: set) -> list:
    """The chain found by `_state_chain` written on its result: `T = copy(Z)` and the
    updates on `T`, or the first product written there when `Z` is a zero fill."""
    t = body[l].dst
    init = body[i].src
    out = list(body)
    moved = [replace(body[k], c=t) for k in updates]
    if init.buffer in zeros and moved:
        first = replace(moved[0], accumulate=False)
        out[i] = None
        out[updates[0]] = first
        for k, op in zip(updates[1:], moved[1:]):
            out[k] = op
    else:
        out[i] = Copy(src=init, dst=t)
        for k, op in zip(updates, moved):
            out[k] = op
    out[j] = out[l] = None
    return [op for op in out if op is not None]


def _zero_fills(program: TileProgram) -> set:
    """Temporaries every op writing them fills with zeros."""
    fills: dict[str, bool] = {}
    for st in program.stages():
        for op in st.body:
            for w in op.writes:
                fills[w.buffer] = fills.get(w.buffer, True) and is_zero_fill(op)
    return {b.name for b in program.buffers if b.role == "temp" and fills.get(b.name)}
