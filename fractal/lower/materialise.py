"""Passes 11-13, access materialisation: give each temporary only the storage its accesses need.

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
nothing else touching `out`) needs no storage of its own: its writers write the result.

The three run as passes 11 (`forward_results`), 12 (`contract_storage`) and 13
(`roll_storage`, in `rolling`).
"""

from __future__ import annotations

from dataclasses import replace

from .tile_affine import aff
from .tile_expr import Region
from .tile_ir import Copy, Stage, TileProgram
from .rewrite import expand_stages, map_regions, map_stages
from .rolling import access_sites, dense, written_before_read


def forward_results(program: TileProgram, ctx=None) -> TileProgram:
    """Pass 11, forward_results: a temporary copied whole into a result that nothing else
    touches is dropped, its writers writing the result (its readers reading it there)."""
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
