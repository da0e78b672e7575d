"""Pass 0, data reordering of a sum of GEMMs: the summed axis moves into the GEMM's K.

A `reduce` that adds one product per element to its accumulator, `acc + x_v @ w_v` (the K
blocks of a blocked GEMM, the N blocks of a back-to-back GEMM, a convolution's kernel rows)
or an outer product `p_v * v_v` (attention's `sum_j p_ij v_j`), lowers to a sequential loop
of one small product and one addition per step.  Its value is one GEMM over the blocks laid
side by side, `[x_0 | x_1 | ...] @ [w_0; w_1; ...]`: this pass lays the blocks out that way
(the left operands gain the loop's axis in their columns, the right operands in their rows:
the paper's data reordering) and replaces the loop by a parallel loop that computes and
places the blocks, then that one GEMM with a K of `R * k`.  A block is placed once, before
the outermost loop around that leaves it unchanged (an input's once per run, at the start),
not by every iteration of loops it does not name; an accumulator that starts at zero needs no initial value, and
one step needs no placing at all.  Over ragged lists each point keeps its own number of
steps: the blocks it drops are placed as zeros through new const buffers, and the readers of
its sum are redirected through new tables (`fractal.lower.contract_ragged`).  Runs
first, on the lowered IR, where every statement of the loop still writes rows of its own
step (so the steps become independent once the sum is gone; exact row distances check it).

Before::                                                 After::

    stage zero() { acc[0, 0:8, 0:4] = 0.0 }                for r in 0:4 parallel host { stage place_acc_lhs() {
    for r in 0:4 sequential host {                           acc_lhs[0, 0:8, 2*r:2*r + 2] = copy(x[r, 0:8, 0:2]) } }
      stage mm() { t[r, 0:8, 0:4] =                        for r in 0:4 parallel host { stage place_acc_rhs() {
                     gemm(x[r, 0:8, 0:2], w[r, 0:2, 0:4]) }   acc_rhs[0, 2*r:2*r + 2, 0:4] = copy(w[r, 0:2, 0:4]) } }
      stage add() { u[r, 0:8, 0:4] =                       stage mm() {
                      add(acc[r, 0:8, 0:4], t[r, 0:8, 0:4]) }  acc[4, 0:8, 0:4] = gemm(acc_lhs[0, 0:8, 0:8],
      stage next() { acc[r + 1, 0:8, 0:4] = copy(u[r, 0:8, 0:4]) }                     acc_rhs[0, 0:8, 0:4])
    }                                                      }
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .contract_ragged import Kept, kept_steps, live_mask, point_grid
from .dependences import Access, accesses, deltas, only_zero, tables_of
from .rewrite import (accesses as rewrite_accesses, fresh_name, is_zero_fill, map_stages, ops_of, rewrite_blocks,
                      stages_of, substitute, substitute_region, var_ranges)
from .tile_affine import aff, evaluate_affine
from .tile_expr import Binary, Const, Load, Region, Where
from .tile_ir import Buffer, Copy, Elementwise, Gather, Gemm, If, Loop, Stage, TileProgram
from .tile_isl import Scope


def contract(program: TileProgram, ctx=None) -> TileProgram:
    """Pass 0, contract: a sum of one product per element becomes one GEMM over the blocks
    laid side by side (see the module docstring)."""
    while True:  # one loop at a time, innermost first: an outer sum then sees the inner one's GEMM
        done = _Contractor(program).run()
        if done is None:
            return program
        program = done


@dataclass(frozen=True)
class _Sum:
    """A matched sum loop: `acc[slot v + 1] = acc[slot v] + gemm(x_v, w_v)`, v in 0:R."""

    loop: Loop
    gemm: Gemm
    producer: int  # index in the loop body of the stage computing the gemm
    init: Region  # acc at slot 0
    final: Region  # where the one GEMM writes the sum (slot R, or each point's own slot when read there)
    zero_init: tuple[int, ...]  # indices (in the enclosing block) of the stages making a zero init; () if not zero
    kept: Kept | None = None  # a ragged sum: the steps each point keeps (None: all)
    masks: tuple = (None, None)  # ... and per operand block row and step, whether it is summed


class _Contractor:
    def __init__(self, program: TileProgram):
        self.program = program
        self.buffers = {b.name: b for b in program.buffers}
        self.shapes = {b.name: b.shape for b in program.buffers}
        self.readers: dict[str, list] = {}  # buffer -> (region, op) of every read
        self.writes: dict[str, list[Region]] = {}
        for op in ops_of_program(program):
            for r in op.reads:
                self.readers.setdefault(r.buffer, []).append((r, op))
            for r in op.writes:
                self.writes.setdefault(r.buffer, []).append(r)
        self.retarget: dict[tuple[str, str], str] = {}  # (state, old table) -> new table of its gathers
        self.ranges = var_ranges(program.body)
        self.prologue: list = []  # input blocks placed once per run
        self.before: dict[str, list] = {}  # loop variable -> blocks placed just before that loop
        self.new_buffers: list[Buffer] = []

    def run(self) -> TileProgram | None:
        self.done = False
        out = rewrite_blocks(self.program, self._block)
        if not self.done:
            return None
        if self.before:
            out = rewrite_blocks(out, self._insert_before)
        out = replace(out, body=tuple(self.prologue) + out.body)
        if self.retarget:
            out = map_stages(out, self._retargeted)
        used = {r.buffer for op in ops_of_program(out) for r in op.reads + op.writes}
        return replace(out, buffers=tuple(b for b in self.program.buffers + tuple(self.new_buffers)
                                          if b.name in used or b.role != "temp"))

    def _block(self, stmts, path) -> list:
        """`stmts` with its first sum contracted, if no other was this run (blocks inside come
        first: one loop at a time, innermost first)."""
        if self.done:
            return stmts
        for i, s in enumerate(stmts):
            if isinstance(s, Loop):
                found = self._match(stmts, i, path.loops)
                if found is not None:
                    self.done = True
                    return self._rewrite(list(stmts), i, path.loops, found)
        return stmts

    # --- matching ----------------------------------------------------------------------

    def _match(self, stmts, i, enclosing) -> _Sum | None:
        loop = stmts[i]
        if loop.kind != "sequential" or loop.step != 1 or len(loop.body) < 3:
            return None
        if not (loop.start.is_const and loop.start.const == 0 and loop.stop.is_const and loop.stop.const >= 1):
            return None
        if any(not (e.start.is_const and e.stop.is_const) for e in enclosing):
            return None
        v, steps = loop.var, loop.stop.const
        add, nxt = (_single_op(s) for s in loop.body[-2:])
        if not (isinstance(nxt, Copy) and not nxt.perm and isinstance(add, Elementwise) and add.dst == nxt.src):
            return None
        terms = _sum_terms(add.expr)
        if terms is None:
            return None
        acc = nxt.dst.buffer
        cur = [r for r in terms if r.buffer == acc]
        tmp = [r for r in terms if r.buffer != acc]
        if len(cur) != 1 or len(tmp) != 1:
            return None
        cur, t = cur[0], tmp[0]
        if nxt.dst != substitute_region(cur, {v: aff(v) + 1}) or v not in cur.start[0].vars():
            return None
        if not (cur.shape == t.shape == add.dst.shape and self._temp(acc, t.buffer, add.dst.buffer)):
            return None
        if self._reads(add.dst.buffer) != [add.dst] or self._reads(t.buffer) != [t] or self.writes[t.buffer] != [t]:
            return None
        producer = next((k for k, s in enumerate(loop.body[:-2]) if _as_gemm(_single_op(s), t) is not None), None)
        if producer is None:
            return None
        gemm = _as_gemm(_single_op(loop.body[producer]), t)
        if gemm.accumulate or gemm.trans_a or gemm.trans_b or \
                len({self.buffers[r.buffer].dtype for r in (gemm.a, gemm.b, t, cur)}) != 1:
            return None
        rest = [op for s in loop.body[:-2] for op in ops_of(s)]
        # the accumulator is the only thing carried from step to step
        if any(r.buffer == acc for op in rest for r in op.reads + op.writes):
            return None
        if any(v not in w.vars() for op in rest for w in op.writes):
            return None
        # (a map of one point: lowering may write its variable's one value as a constant)
        one = {e.var: e.start for e in enclosing if e.stop.const == e.start.const + 1}
        if not self._steps_independent(loop, enclosing):
            return None
        init, final = substitute_region(cur, {v: aff(0)}), substitute_region(cur, {v: aff(steps)})

        def same(r: Region, s: Region) -> bool:
            return substitute_region(r, one) == substitute_region(s, one)
        if any(not same(w, init) for w in self.writes[acc] if w != nxt.dst):
            return None
        zero = self._zero_init(stmts[:i], init)
        if all(same(r, final) for r in self._reads(acc) if r != cur):
            return _Sum(loop, gemm, producer, init, final, zero)
        return self._ragged(_Sum(loop, gemm, producer, init, final, zero), cur, acc, enclosing)

    def _ragged(self, found: _Sum, cur: Region, acc: str, enclosing) -> _Sum | None:
        """The sum of a ragged reduce, read at each point's own slot (see `contract_ragged`),
        when the blocks of the steps a point drops can be zeroed for that point alone."""
        loop, steps = found.loop, found.loop.stop.const
        whole = Region(acc, (0,) * self.buffers[acc].ndim, self.buffers[acc].shape)
        outside = [(r, op) for r, op in self.readers[acc] if r != cur]
        plain = [r for r, op in outside if not (isinstance(op, Gather) and r == whole and op.src == r)]
        gathers = [op for r, op in outside if isinstance(op, Gather) and op.src == whole]
        if plain and gathers:
            return None
        names = [e.var for e in enclosing]
        # one row per (point, slot), so a row read names its point and slot
        if not self._one_row_per_point_and_slot(cur, loop.var, steps):
            return None
        grid = point_grid(names, self.ranges)
        size = int(np.prod([self.ranges[n][1] - self.ranges[n][0] + 1 for n in names], dtype=np.int64))
        kept = kept_steps(cur, loop.var, steps, plain, gathers, grid, size, self.buffers)
        if kept is None:
            return None
        masks = []
        for block in (found.gemm.a, found.gemm.b):
            _, row, rows = self._layout(block, loop, enclosing)
            at = evaluate_affine(row, grid, size)
            masks.append(None if at is None else live_mask(kept.lengths, at, rows, steps))
            if masks[-1] is None:
                return None
        return replace(found, final=plain[0] if plain else found.final, kept=kept, masks=tuple(masks))

    def _steps_independent(self, loop: Loop, enclosing) -> bool:
        """Do the loop's statements but the last two (the sum's addition and its next slot)
        only meet within one step (a second state of the same scan, read at step v and
        written at v + 1, would make them a recurrence)?  The dependence engine, the loops
        around held fixed."""
        scope = Scope()
        for e in enclosing:
            scope = scope.inner(e.var, e.start, e.stop, e.step)
        inner = scope.inner(loop.var, loop.start, loop.stop, loop.step)
        xs = accesses(loop.body[:-2], inner, self.shapes, tables_of(self.program))
        return only_zero(deltas(xs, xs, (loop.var,), scope.vars))

    def _one_row_per_point_and_slot(self, cur: Region, v: str, steps: int) -> bool:
        """Does region `cur` (an accumulator's slot, `v` its step) name a different element for
        every value of its variables, slots 0..steps included?"""
        scope = Scope()
        for n in sorted(cur.vars()):
            lo, hi = (0, steps) if n == v else self.ranges.get(n, (0, 0))
            scope = scope.inner(n, lo, hi + 1)
        slot = Access(cur, True, scope, None, self.buffers[cur.buffer].shape)
        return only_zero(deltas([slot], [slot], scope.vars))

    def _reads(self, buffer: str) -> list[Region]:
        return [r for r, _ in self.readers.get(buffer, ())]

    def _temp(self, *names) -> bool:
        return all(self.buffers[n].role == "temp" for n in names)

    def _zero_init(self, before, init: Region) -> tuple[int, ...]:
        """The stages before the loop that set `init` to zero (directly or through a zero
        temporary read only there), or () if the initial value is not a known zero."""
        k = next((k for k in range(len(before) - 1, -1, -1)
                  if any(w == init for w in getattr(_single_op(before[k]), "writes", ()))), None)
        if k is None:
            return ()
        op = _single_op(before[k])
        if is_zero_fill(op):
            return (k,)
        if isinstance(op, Copy) and not op.perm and self._reads(op.src.buffer) == [op.src]:
            j = next((j for j in range(k - 1, -1, -1) if getattr(_single_op(before[j]), "writes", ()) == (op.src,)),
                     None)
            if j is not None and is_zero_fill(_single_op(before[j])) and self.writes[op.src.buffer] == [op.src]:
                return (j, k)
        return ()

    # --- rewriting ---------------------------------------------------------------------

    def _rewrite(self, stmts, i, enclosing, found: _Sum) -> list:
        loop, gemm = found.loop, found.gemm
        steps = loop.stop.const
        acc = found.final.buffer
        (m, k), (_, n) = gemm.a.shape, gemm.b.shape
        body = list(loop.body[:-2])
        del body[found.producer]
        if steps == 1 and found.kept is None:  # one block: nothing to place side by side
            first = {loop.var: aff(0)}
            lhs, rhs = substitute_region(gemm.a, first), substitute_region(gemm.b, first)
            steps_now = [substitute(s, first) for s in body]
        else:
            lhs, place_a = self._place(gemm.a, f"{acc}_lhs", (m, steps * k), (0, k), loop, enclosing, found.masks[0])
            rhs, place_b = self._place(gemm.b, f"{acc}_rhs", (steps * k, n), (k, 0), loop, enclosing, found.masks[1])
            body[found.producer:found.producer] = [p for p in (place_a, place_b) if p is not None]
            steps_now = [Loop(loop.var, 0, steps, 1, "parallel", "host", tuple(body))] if body else []
        name = _single_stage(loop.body[found.producer]).name
        if found.zero_init:
            ops = (Gemm(lhs, rhs, found.final),)
        else:
            ops = (Copy(found.init, found.final), Gemm(lhs, rhs, found.final, accumulate=True))
        for table, values in (found.kept.tables.items() if found.kept is not None else ()):
            new = self._fresh(f"{table}_last")  # the readers of each point's slot read the GEMM's
            self.new_buffers.append(Buffer(new, values.shape, values.dtype, role="const", data=values))
            self.retarget[(acc, table)] = new
        out = stmts[:i] + steps_now + [Stage(name, (), ops)] + stmts[i + 1:]
        return [s for j, s in enumerate(out) if j not in found.zero_init]

    def _retargeted(self, st: Stage) -> Stage:
        def fix(op):
            if isinstance(op, Gather) and (op.src.buffer, op.index.buffer) in self.retarget:
                return replace(op, index=replace(op.index, buffer=self.retarget[(op.src.buffer, op.index.buffer)]))
            return op
        return replace(st, body=tuple(fix(op) for op in st.body))

    def _layout(self, block: Region, loop: Loop, enclosing):
        """Where a step's block goes: the enclosing variables it is placed per (the ones the
        block names: points sharing a block share its placed copy, and the GEMMs reading it
        fold into one), its row over them, and the number of rows."""
        used = block.vars() - {loop.var}
        keys = [e.var for e in enclosing if e.var in used]
        row, rows = aff(0), 1
        for key in reversed(keys):
            lo, hi = self.ranges[key]
            row, rows = row + (aff(key) - lo) * rows, rows * (hi - lo + 1)
        return keys, row, rows

    def _place(self, block: Region, name: str, shape, offset, loop: Loop, enclosing, live):
        """A buffer holding every step's `block` side by side (columns for the left operand,
        rows for the right): the region the GEMM reads, and the stage placing one step's
        block (None when it runs once per run, in the prologue).  In a ragged sum the steps
        a point drops place zeros (through the constant mask `live[row, step]`)."""
        v = loop.var
        read_only = self.buffers[block.buffer].role in ("input", "const")
        keys, row, rows = self._layout(block, loop, enclosing)
        name = self._fresh(name)
        self.new_buffers.append(Buffer(name, (rows,) + shape, self.buffers[block.buffer].dtype))
        r0, c0 = (aff(v) * offset[0], aff(v) * offset[1])
        dst = Region(name, (row, r0, c0), (None,) + block.shape)
        op = Copy(block, dst)
        if live is not None:
            mask = self._fresh(f"{name}_live")
            self.new_buffers.append(Buffer(mask, live.shape, live.dtype, role="const", data=live))
            op = Elementwise(dst, Where(Load(Region(mask, (row, aff(v)), (None, None))), Load(block), Const(0.0)))
        place = Stage(self._fresh(f"place_{name}"), (), (op,))
        whole = Region(name, (row, 0, 0), (None,) + shape)
        # placed once, before the outermost loop around that leaves the block as it is (the
        # prologue for an input): not once per iteration of loops the block does not name,
        # which as a parallel loop's iterations would all write the same rows
        outside = 0 if read_only else next(
            (j for j in range(len(enclosing)) if block.buffer not in rewrite_accesses(enclosing[j])[1]), None)
        if outside is None or self._written_in_sum(block.buffer, loop):
            return whole, place
        for var in [v] + [k for k in keys[::-1] if k in {e.var for e in enclosing[outside:]}]:
            lo, hi = self.ranges[var] if var != v else (0, loop.stop.const - 1)
            place = Loop(var, lo, hi + 1, 1, "parallel", "host", (place,))
        if read_only:
            self.prologue.append(place)
        else:
            self.before.setdefault(enclosing[outside].var, []).append(place)
        return whole, None

    @staticmethod
    def _written_in_sum(buffer: str, loop: Loop) -> bool:
        return buffer in rewrite_accesses(loop)[1]

    def _insert_before(self, stmts, path) -> list:
        out = []
        for s in stmts:
            if isinstance(s, Loop) and s.var in self.before:
                out.extend(self.before.pop(s.var))
            out.append(s)
        return out

    def _fresh(self, name: str) -> str:
        taken = set(self.buffers) | {b.name for b in self.new_buffers} | {s.name for s in self.program.stages()}
        taken |= {s.name for p in self.prologue for s in stages_of(p)}
        return fresh_name(name, taken)


def ops_of_program(program: TileProgram):
    for s in program.body:
        yield from ops_of(s)


def _single_stage(s) -> Stage | None:
    return s if isinstance(s, Stage) and not s.dims and len(s.body) == 1 else None


def _single_op(s):
    st = _single_stage(s)
    return st.body[0] if st is not None else None


def _as_gemm(op, t: Region) -> Gemm | None:
    """The GEMM writing `t`: a Gemm, or an outer product `mul(a [m,1], b [1,n])` (a GEMM with
    K = 1, as attention's `p * v` summed over keys is)."""
    if isinstance(op, Gemm) and op.c == t:
        return op
    if isinstance(op, Elementwise) and op.dst == t and isinstance(op.expr, Binary) and op.expr.op == "mul" and \
            isinstance(op.expr.a, Load) and isinstance(op.expr.b, Load):
        a, b = op.expr.a.region, op.expr.b.region
        if a.shape[-1:] != (1,):
            a, b = b, a
        if len(a.shape) == len(b.shape) == len(t.shape) == 2 and a.shape[1] == 1 and b.shape[0] == 1 and \
                t.shape == (a.shape[0], b.shape[1]):
            return Gemm(a, b, t)
    return None


def _sum_terms(expr):
    if isinstance(expr, Binary) and expr.op == "add" and isinstance(expr.a, Load) and isinstance(expr.b, Load):
        return [expr.a.region, expr.b.region]
    return None

