"""Rewriting helpers shared by the passes: walk statements, map regions, substitute indices.

    substitute(stmt, {"s": aff("w") - aff("f")})   # every index, bound and region of stmt
    map_regions(op, fn)                              # an op with fn applied to each region
    map_stages(program, fn)                          # the program with fn applied to each stage
    expand_stages(program, fn)                       # ... each stage replaced by fn's statements
    var_ranges(program)                              # var -> (lo, hi) over the whole program
    accesses(stmt), points(stmt, ranges)             # buffers read / written; points per run
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from typing import Callable

from .tile_affine import Aff, aff
from .tile_expr import Binary, Const, Load, Region, Unary, Where
from .tile_nodes import Active, Dim, Elementwise, If, Loop, Stage
from .tile_isl import Scope

REGION_FIELDS = ("src", "dst", "a", "b", "c", "index", "segments")


@dataclass(frozen=True)
class Path:
    """Where a block of statements stands: the loops and branches around it, outermost first
    (an `If` with True for its `then` block, False for its `else` block)."""

    around: tuple = ()

    def enter(self, stmt, branch: bool | None = None) -> "Path":
        return Path(self.around + ((stmt, branch),))

    @property
    def loops(self) -> tuple[Loop, ...]:
        return tuple(s for s, _ in self.around if isinstance(s, Loop))

    def scope(self) -> Scope:
        """The loops and conditions around, as the dependence engine's `Scope`."""
        sc = Scope()
        for s, branch in self.around:
            if isinstance(s, Loop):
                sc = sc.inner(s.var, s.start, s.stop, s.step)
            else:
                sc = sc.when(s.cond) if branch else sc.unless(s.cond)
        return sc


def rewrite_blocks(program, fn: Callable, *, order: str = "post", path: Path = Path()):
    """`program` with every block of statements (its body, each loop's body, each branch of
    each `if`) replaced by `fn(statements, path)` (a list).  `order="post"` rewrites the
    blocks inside a statement before the block holding it; `"pre"` the other way round (the
    inner blocks of what `fn` returns are rewritten afterwards)."""
    return replace(program, body=tuple(_blocks(program.body, fn, order, path)))


def rewrite_stmts(stmts, fn: Callable, *, order: str = "post", path: Path = Path()) -> list:
    """`rewrite_blocks` on a list of statements standing at `path`."""
    return _blocks(stmts, fn, order, path)


def _blocks(stmts, fn, order: str, path: Path) -> list:
    if order == "pre":
        stmts = fn(list(stmts), path)
    out = []
    for s in stmts:
        if isinstance(s, Loop):
            s = replace(s, body=tuple(_blocks(s.body, fn, order, path.enter(s))))
        elif isinstance(s, If):
            s = replace(s, then=tuple(_blocks(s.then, fn, order, path.enter(s, True))),
                        orelse=tuple(_blocks(s.orelse, fn, order, path.enter(s, False))))
        out.append(s)
    return fn(out, path) if order == "post" else out


def map_expr(e, fn):
    """An element expression with `fn` applied to the region of every load."""
    if isinstance(e, Load):
        return Load(fn(e.region))
    if isinstance(e, Unary):
        return Unary(e.op, map_expr(e.x, fn))
    if isinstance(e, Binary):
        return Binary(e.op, map_expr(e.a, fn), map_expr(e.b, fn))
    if isinstance(e, Where):
        return Where(*(map_expr(x, fn) for x in (e.cond, e.a, e.b)))
    return e


def map_regions(op, fn):
    """`op` with `fn(region) -> region` applied to every region it reads or writes."""
    fields = {f: fn(getattr(op, f)) for f in REGION_FIELDS if isinstance(getattr(op, f, None), Region)}
    if hasattr(op, "expr"):
        fields["expr"] = map_expr(op.expr, fn)
    return replace(op, **fields)


def substitute_region(r: Region, mapping) -> Region:
    return replace(r, start=tuple(s.substitute(mapping) for s in r.start))


def substitute_active(active: Active, mapping) -> Active | None:
    """A loop's live-point hint with variables replaced: a batch variable fixed at a constant
    (a map of one point, unrolled) moves its share into the bound (`m + j < e` at `j = 1` is
    `m < e - 1`); one replaced by anything else drops the hint (computing dead points is
    always correct)."""
    if not all(aff(mapping[v]).is_const for v in active.point.vars() & set(mapping)):
        return None
    point = active.point.substitute(mapping)
    return Active(Aff(point.terms), active.bound.substitute(mapping) - point.const)


def substitute(stmt, mapping: dict[str, Aff]):
    """`stmt` with variables replaced by indices everywhere (bounds, regions, conditions)."""
    sub = lambda a: a.substitute(mapping)  # noqa: E731
    if isinstance(stmt, Loop):
        active = None if stmt.active is None else substitute_active(stmt.active, mapping)
        return replace(stmt, start=sub(stmt.start), stop=sub(stmt.stop), active=active,
                       body=tuple(substitute(s, mapping) for s in stmt.body))
    if isinstance(stmt, Stage):
        return replace(stmt, dims=tuple(Dim(d.var, sub(d.start), sub(d.stop)) for d in stmt.dims),
                       body=tuple(map_regions(op, lambda r: substitute_region(r, mapping)) for op in stmt.body))
    if isinstance(stmt, If):
        a, op, b = stmt.cond
        return replace(stmt, cond=(sub(a), op, sub(b)), then=tuple(substitute(s, mapping) for s in stmt.then),
                       orelse=tuple(substitute(s, mapping) for s in stmt.orelse))
    raise TypeError(f"not a statement: {stmt!r}")


def map_stages(program, fn):
    """`program` with `fn(stage) -> stage` applied to every stage."""
    return expand_stages(program, lambda st: [fn(st)])


def expand_stages(program, fn):
    """`program` with every stage replaced by the statements `fn(stage)` returns (none drops
    it; several put new ones before or after it)."""
    def block(stmts) -> tuple:
        out = []
        for s in stmts:
            if isinstance(s, Stage):
                out.extend(fn(s))
            elif isinstance(s, Loop):
                out.append(replace(s, body=block(s.body)))
            elif isinstance(s, If):
                out.append(replace(s, then=block(s.then), orelse=block(s.orelse)))
            else:
                out.append(s)
        return tuple(out)
    return replace(program, body=block(program.body))


def is_zero_fill(op) -> bool:
    """`dst = 0.0`: an op filling its region with zeros."""
    return isinstance(op, Elementwise) and isinstance(op.expr, Const) and op.expr.value == 0.0


def prune_buffers(program):
    """`program` without the temporaries no op reads or writes any more."""
    used = {r.buffer for st in program.stages() for op in st.body for r in op.reads + op.writes}
    kept = tuple(b for b in program.buffers if b.name in used or b.role != "temp")
    return replace(program, buffers=kept) if len(kept) < len(program.buffers) else program


def fresh_name(name: str, taken) -> str:
    """`name`, or `name1`, `name2`... the first that is not in `taken`."""
    out, k = name, 1
    while out in taken:
        out, k = f"{name}{k}", k + 1
    return out


def ops_of(stmt):
    """Every tile op inside a statement."""
    if isinstance(stmt, Stage):
        yield from stmt.body
    elif isinstance(stmt, Loop):
        for s in stmt.body:
            yield from ops_of(s)
    elif isinstance(stmt, If):
        for s in stmt.then + stmt.orelse:
            yield from ops_of(s)


def stages_of(stmt):
    """Every stage inside a statement (loops and both arms of ifs walked, in order)."""
    if isinstance(stmt, Stage):
        yield stmt
    elif isinstance(stmt, Loop):
        for s in stmt.body:
            yield from stages_of(s)
    elif isinstance(stmt, If):
        for s in stmt.then + stmt.orelse:
            yield from stages_of(s)


def accesses(stmt) -> tuple[set, set]:
    """(buffers read, buffers written) by the ops inside a statement."""
    reads, writes = set(), set()
    for op in ops_of(stmt):
        reads.update(r.buffer for r in op.reads)
        writes.update(r.buffer for r in op.writes)
    return reads, writes


def points(stmt, ranges) -> int:
    """Points of a statement's stage per run: the extents of a perfect nest of loops around
    it and of its dims (by `var_ranges`; for a polygon stage, its bounding box: an upper
    bound)."""
    n = 1
    while isinstance(stmt, Loop):
        lo, hi = ranges.get(stmt.var, (0, 0))
        n *= hi - lo + 1
        stmt = stmt.body[0] if len(stmt.body) == 1 else None
    if isinstance(stmt, Stage):
        for d in stmt.dims:
            lo, hi = ranges.get(d.var, (0, 0))
            n *= hi - lo + 1
    return n


def var_ranges(stmts, ranges=None) -> dict[str, tuple[int, int]]:
    """Every loop and stage variable's (lo, hi), by interval arithmetic on the bounds.

    Sound for nested stage dims too: a stage binds its dims in order, so a bound reading an
    earlier dim is evaluated over that dim's range (a polygon's bounding box)."""
    ranges = dict(ranges or {})

    def bind(var, start, stop, step=1):
        (s0, s1), (t0, t1) = start.bounds(ranges), stop.bounds(ranges)
        lo, hi = (s0, t1 - 1) if step > 0 else (t0 + 1, s1)  # a negative step counts down to stop + 1
        ranges[var] = (lo, max(lo, hi))

    def walk(ss):
        for s in ss:
            if isinstance(s, Loop):
                bind(s.var, s.start, s.stop, s.step)
                walk(s.body)
            elif isinstance(s, Stage):
                for d in s.dims:
                    bind(d.var, d.start, d.stop)
            elif isinstance(s, If):
                walk(s.then)
                walk(s.orelse)
    walk(stmts)
    return ranges
