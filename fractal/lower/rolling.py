"""Pass 13, roll_storage (access materialisation): a loop-carried temporary keeps a window of steps.

A scan's state is written at step s and read at step s + 1; the first tile IR keeps every
step's state (write-once rows, which is what made the dependences exact), so retention keeps
256 steps x 32 states of 16 KiB = 134 MB where two steps' worth (1 MB) would do.  When every
access of a temporary inside a sequential loop over `s` names the slot `s + k` (rows
`g + c*(s + k)`, one `g` for all), its writes the newest slot `s + kw`, its reads slots
`s + k` with `kw - w < k <= kw`, and it is touched outside the loop only by writes, before
it, of all points of the slots its first step reads, and after it (in the same steps of
the loops around) only by reads of the slots its last step reads or writes (a reduce's final
state; where the target's policy allows it: `roll_final_states`), then `w` slots suffice:
slot `u` is stored at `u mod w`.  The slot a step writes is the one read last a step
earlier; nothing reads a slot after it is rolled over; no slot is read before a write (temporaries keep their values from run to run: a never-written row of write-once
storage stays zero, a rolled one would not).

Before::                                              After::

    buffer st: f32[264,8,8] global temp                  buffer st: f32[16,8,8] global temp
    stage init(m in 0:8) { st[m] = ... }                 stage init(m in 0:8) { st[m] = ... }
    for s in 0:32 sequential host {                      for s in 0:32 sequential host {
      stage step(m in 0:8) {                               stage step(m in 0:8) {
        st[8*s + m + 8] = f(st[8*s + m])                     st[m + 8*((s + 1) mod 2)] = f(st[m + 8*(s mod 2)])
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

from .dependences import tables_of
from .rewrite import map_regions, map_stages
from .tile_affine import Aff, aff, mod
from .tile_expr import Region
from .rolling_finals import gather_table_uses, point_finals
from .tile_ir import If, Loop, Stage, TileProgram


@dataclass(frozen=True)
class _Site:
    region: Region
    write: bool
    loops: tuple  # enclosing sequential Loops, outermost first
    ranges: dict  # every variable in scope -> (lo, hi)
    order: int  # the stage's position in program order
    op: int = 0  # the op's position in its stage
    scope: tuple = ()  # the loops, `if` branches and stage dims around it, outermost first
    node: object = None  # the op


def roll_storage(program: TileProgram, ctx=None) -> TileProgram:
    """Pass 13, roll_storage: loop-carried temporaries keep a window of steps (slot `u` at
    `u mod w`), where every access allows it (see the module docstring)."""
    sites, loop_order = access_sites(program)
    roll_finals = ctx is None or ctx.target.policy.roll_final_states(ctx.target.hardware)
    tables = tables_of(program)
    table_uses = gather_table_uses(sites)
    rows_of, new_tables = {}, {}
    for buf in program.buffers:
        if buf.role == "temp" and buf.name in sites:
            rolled = _rolled(sites[buf.name], loop_order, roll_finals, tables, table_uses)
            if rolled is not None and rolled[1] < buf.shape[0]:
                rows_of[buf.name] = rolled
                new_tables.update(rolled[2].tables if rolled[2] is not None else {})
    if not rows_of:
        return program

    program = map_stages(program, lambda st: replace(st, body=tuple(_map_rows(op, rows_of) for op in st.body)))
    return replace(program, buffers=tuple(
        replace(b, shape=(rows_of[b.name][1],) + b.shape[1:]) if b.name in rows_of else
        replace(b, data=new_tables[b.name]) if b.name in new_tables else b for b in program.buffers))


def _map_rows(op, rows_of):
    def moved(r: Region) -> Region:
        if r.buffer not in rows_of:
            return r
        new_row, rows, finals = rows_of[r.buffer]
        if finals is not None and r in finals.regions:     # read after the loop at its point's own slot
            return replace(r, start=(finals.regions[r],) + r.start[1:])
        if r.size[0] is not None:   # a gather's whole row axis (its table rewritten)
            return replace(r, size=(rows,) + r.size[1:])
        return replace(r, start=(new_row(r.start[0]),) + r.start[1:])
    return map_regions(op, moved)


def _rolled(sites: list, loop_order: dict, roll_finals: bool = True, tables=None, table_uses=None):
    """(new row as a function of the old one, number of rows, the reads after the loop at each
    point's own slot: `PointFinals` or None) for one buffer, or None; `roll_finals`: a state
    read after the loop may roll (the target's policy says)."""
    inside = [s for s in sites if s.loops]
    if not inside or any(s.region.size[0] is not None for s in inside):
        return None
    common = [lp for lp in inside[0].loops if all(lp in s.loops for s in inside)]
    if not common:
        return None
    loop = common[-1]  # the innermost sequential loop around every access inside loops
    var, (first, after) = loop.var, loop_order[id(loop)]
    c = coefficient(inside[0].region.start[0], var)
    if loop.step != 1 or not loop.start.is_const or not c:
        return None
    around = inside[0].loops[:inside[0].loops.index(loop)]   # the sequential loops around `loop`
    base = inside[0].region.start[0] - aff(var) * c  # g + c*k0: every row is base + c*(slot - k0)
    slots = []  # (k: slot s + k inside the loop, slot k outside it; a write?; inside the loop?; the site)
    finals = []  # slots read after the loop
    own_finals = []  # reads after the loop, each at its point's own slot (`rolling_finals`)
    for s in sites:
        row, inner = s.region.start[0], loop in s.loops
        if inner and coefficient(row, var) != c:
            return None
        final = roll_finals and not inner and not s.write and s.order >= after and s.loops == around
        if not inner and not (s.write and s.order < first) and not final:
            return None  # read outside the loop, or written after it: every slot must stay
        diff = row - aff(var) * c - base if inner else row - base
        if final and not around and (s.region.size[0] is not None or not diff.is_const or diff.const % c):
            own_finals.append(s)
            continue
        if s.region.size[0] is not None:
            return None
        if not diff.is_const or diff.const % c:
            return None
        if final:
            finals.append(diff.const // c)
        else:
            slots.append((diff.const // c, s.write, inner, s))
    writes = {k for k, write, inner, _ in slots if write and inner}
    if len(writes) != 1:
        return None
    kw = writes.pop()
    kmin = min(k for k, _, inner, _ in slots if inner)
    start = loop.start.const
    initial = {k for k, _, inner, _ in slots if not inner}
    if any(k > kw for k, _, inner, _ in slots if inner) or initial != set(range(start + kmin, start + kw)):
        return None  # a read of a newer slot; initial slots the first steps do not read, or
        # that are not all written (a temporary's zeros would be another step's values)
    if finals and not (loop.stop.is_const and loop.stop.const > start and
                       all(loop.stop.const - 1 + kmin <= k <= loop.stop.const - 1 + kw for k in finals)):
        return None  # read after the loop: only the slots of its last steps are still stored
    if not written_before_read([site for k, _, inner, site in slots if inner and k == kw]):
        return None  # a read of the step's own slot before the step writes it: rolled, an older step's
    g_vars = base.vars()
    if any(s.ranges.get(v) != inside[0].ranges.get(v) for s in sites
           if loop not in s.loops and all(s is not f for f in own_finals) for v in g_vars):
        return None  # an initial write of only some of the points
    width = kw - kmin + 1
    renumbered = dense(base, inside[0].ranges)
    if renumbered is None:
        return None
    g, rows = renumbered
    point_wise = None
    if own_finals:
        point_wise = point_finals(own_finals, [s for s in sites if s.write], base, c, inside[0].ranges, g, rows,
                                  width, tables or {}, table_uses or {})
        if point_wise is None:
            return None

    def new_row(row: Aff) -> Aff:
        if var not in row.vars():  # an initial slot
            return g + rows * (((row - base).const // c) % width)
        return g + mod(aff(var) + (row - aff(var) * c - base).const // c, width) * rows

    return new_row, rows * width, point_wise


def written_before_read(sites) -> bool:
    """Does every read among `sites` (accesses of one temporary) read what an earlier op wrote
    in the same iteration: within its region, over the same loops, branches and dims?  A read
    before the iteration's write reads the zeros of a row nothing wrote yet; once rows of
    several iterations share storage, it would read another iteration's values."""
    writes = [s for s in sites if s.write]
    for r in (s for s in sites if not s.write):
        scope = _used(r.scope, r.region)
        earlier = [_spread(w.region, w.scope[len(scope):]) for w in writes
                   if (w.order, w.op) < (r.order, r.op) and w.scope[:len(scope)] == scope]
        if not _covered(r.region, [w for w in earlier if w is not None]):
            return False
    return True


def _used(scope: tuple, region: Region) -> tuple:
    """`scope` without the loops and dims whose variable neither `region` nor a bound after
    them reads: the read is the same at each of their points (and none if they have none)."""
    out, needed = [], set(region.vars())
    for entry in reversed(scope):
        if entry[0] == "if":
            needed |= entry[1][0].vars() | entry[1][2].vars()
        elif entry[1] not in needed:
            continue
        else:
            needed |= entry[2].vars() | entry[3].vars()
        out.append(entry)
    return tuple(reversed(out))


def _spread(region: Region, extra: tuple) -> Region | None:
    """What `region` covers over all points of the loops and dims `extra` (constant bounds, at
    least one point each): an axis indexed `v + rest` grows over the values of `v`; None where
    that is not one box (an `if`, `v` on two axes or scaled, bounds that may be empty)."""
    for entry in extra:
        if entry[0] == "if" or not (entry[2].is_const and entry[3].is_const) or entry[3].const <= entry[2].const \
                or (entry[0] == "loop" and entry[4] != 1):
            return None
        var, lo, hi = entry[1], entry[2].const, entry[3].const
        axes = [k for k, start in enumerate(region.start) if var in start.vars()]
        if not axes:
            continue
        k, = axes if len(axes) == 1 else (None,)
        if k is None:
            return None
        rest = region.start[k] - aff(var) * coefficient(region.start[k], var)
        if coefficient(region.start[k], var) != 1 or var in rest.vars() or region.stride[k] != 1 and \
                (region.size[k] or 1) > 1:
            return None
        size = (region.size[k] or 1) + hi - lo - 1
        region = replace(region, start=region.start[:k] + (rest + lo,) + region.start[k + 1:],
                         size=region.size[:k] + (size,) + region.size[k + 1:],
                         stride=region.stride[:k] + (1,) + region.stride[k + 1:])
    return region


def _covered(r: Region, writes) -> bool:
    """Do regions `writes` together hold every element of region `r` (one buffer, at every
    instance)?  One of them alone (any strides), or their boxes of unit stride relative to `r`'s
    start (`r` taken as its box), cut at every edge, each cell of `r` inside one."""
    if any(_covers(w, r) for w in writes):
        return True
    boxes = []
    for w in writes:
        offsets = [a - b for a, b in zip(w.start, r.start)]
        if all(d.is_const for d in offsets) and all(n is None or n == 1 or s == 1 for n, s in zip(w.size, w.stride)):
            boxes.append([(d.const, d.const + (n or 1) - 1) for d, n in zip(offsets, w.size)])
    want = [(0, ((m or 1) - 1) * t) for m, t in zip(r.size, r.stride)]
    cuts = [sorted({lo for lo, _ in [want[k]] + [b[k] for b in boxes]} |
                   {hi + 1 for _, hi in [want[k]] + [b[k] for b in boxes]}) for k in range(len(want))]
    cells = [[(c, d - 1) for c, d in zip(cs, cs[1:]) if want[k][0] <= c and d - 1 <= want[k][1]]
             for k, cs in enumerate(cuts)]
    return all(any(all(lo <= c and d <= hi for (c, d), (lo, hi) in zip(cell, box)) for box in boxes)
               for cell in itertools.product(*cells))


def _covers(w: Region, r: Region) -> bool:
    """Does region `w` hold every element of region `r` (of one buffer, at every instance)?"""
    for a, n, s, b, m, t in zip(w.start, w.size, w.stride, r.start, r.size, r.stride):
        d = b - a
        if not d.is_const:
            return False
        last = d.const + ((m or 1) - 1) * t  # r's last element along the axis, from w's first
        if n is None:
            if d.const != 0 or (m or 1) != 1:
                return False
        elif d.const < 0 or d.const % s or (m is not None and m > 1 and t % s) or last > (n - 1) * s:
            return False
    return True


def coefficient(a: Aff, var: str) -> int:
    """The coefficient of the plain term `var` in `a` (0 if none)."""
    return dict((t, k) for t, k in a.terms if isinstance(t, str)).get(var, 0)


def access_sites(program: TileProgram):
    """buffer -> [_Site] for every access; and id(loop) -> (order of its first stage, order
    after its last)."""
    out, loop_order, counter = {}, {}, [0]

    def walk(stmts, loops, ranges, scope):
        for s in stmts:
            if isinstance(s, Loop):
                lo, _ = s.start.bounds(ranges)
                _, hi = s.stop.bounds(ranges)
                inner = {**ranges, s.var: (lo, max(lo, hi - 1))}
                begin = counter[0]
                walk(s.body, loops + ((s,) if s.kind == "sequential" else ()), inner,
                     scope + (("loop", s.var, s.start, s.stop, s.step),))
                loop_order[id(s)] = (begin, counter[0])
            elif isinstance(s, If):
                walk(s.then, loops, ranges, scope + (("if", s.cond, True),))
                walk(s.orelse, loops, ranges, scope + (("if", s.cond, False),))
            elif isinstance(s, Stage):
                inner = dict(ranges)
                for d in s.dims:
                    lo, _ = d.start.bounds(inner)
                    _, hi = d.stop.bounds(inner)
                    inner[d.var] = (lo, max(lo, hi - 1))
                here = scope + tuple(("dim", *d) for d in s.dims)
                for k, op in enumerate(s.body):
                    for r in op.reads:
                        out.setdefault(r.buffer, []).append(_Site(r, False, loops, inner, counter[0], k, here, op))
                    for r in op.writes:
                        out.setdefault(r.buffer, []).append(_Site(r, True, loops, inner, counter[0], k, here, op))
                counter[0] += 1
    walk(program.body, (), {}, ())
    return out, loop_order


def dense(row, ranges):
    """`row` over plain variables renumbered as a dense mixed radix from 0 (smallest coefficient
    innermost), with the number of rows; None if two points could share a row."""
    if not injective(row, ranges):
        return None
    terms = sorted(((abs(c), v) for v, c in row.terms), key=lambda t: t[0])
    new, step = aff(0), 1
    for _, v in terms:
        lo, hi = ranges[v]
        new = new + (aff(v) - lo) * step
        step *= hi - lo + 1
    return new, step


def injective(row, ranges) -> bool:
    """Distinct points, distinct rows: the coefficients form a mixed radix over the ranges."""
    if not isinstance(row, Aff) or any(not isinstance(a, str) for a, _ in row.terms):
        return False
    terms = sorted((abs(coefficient(row, v)), ranges[v][1] - ranges[v][0]) for v in row.vars())
    span = 0
    for c, n in terms:
        if c <= span:
            return False
        span += c * n
    return True
