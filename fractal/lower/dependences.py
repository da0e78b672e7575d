"""Which instances of the tile IR's ops touch the same elements: the passes' legality questions.

Every pass that moves work (hoist, wavefront, sink, coarsen's merge, contract) asks one kind
of question: for two sets of accesses X and Y, with some enclosing variables held equal
(`fixed`: the loops around the place where the pass works), what are the differences
`y[v] - x[v]` over the variables `over` between an instance of X and an instance of Y that
touch a common element, one of them writing?  The answer is an exact integer set, computed
by the analysis layer's engine (`fractal.analysis.dependences.touch_deltas`, isl) from the
access relations `fractal.lower.tile_isl` builds; each pass then reads its condition off it
(all zero: the two only meet at the same point; all forward along a hyperplane: a skew is
legal; empty: independent).

    xs = accesses([cell_stage], scope)                  # every read and write, with its scope
    d = deltas(xs, xs, over=("l", "t"), fixed=("b",))   # {(dl, dt)} as an isl.Set
    only_zero(d), vectors(d)                            # -> False, [(0, 1), (1, 0), ...]

A gather's source and a scatter's destination are read and written at the rows their index
table holds.  When the table is a constant buffer with data, those rows are computed from it,
instance by instance, and kept per value of the variables a question keeps (`keep`) and of
those the region's other axes read, as runs of rows (`fractal.lower.table_rows`): exact, so a scatter per
layer of a layer loop is known to touch its own layer's rows.  Where they make more than
`MAX_TABLE_RUNS` runs of rows, each kept value's rows stand as the span they lie in.  Past
`MAX_TABLE_ENTRIES` entries or `MAX_TABLE_RUNS` kept values, the rows are described as affine
functions of the instance and the entry, piece by piece (`fractal.lower.table_fit`: exact,
checked on every entry); through a table known only at run time (or past `table_fit`'s
pieces) the whole axis of the region: sound over-approximations
(tests/lower/test_dependence_engine.py checks the engine against a brute-force oracle).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Mapping

import islpy as isl
import numpy as np

from ..analysis.dependences import touch_deltas
from ..analysis.wavefront import vector_set
from .tile_expr import Region
from .tile_nodes import Gather, If, Loop, Scatter, Stage
from .table_fit import ENTRY_VAR, index_width, table_pieces
from .table_rows import joined as _joined, listed as _listed, table_rows as _table_rows
from .tile_isl import Indirect, Scope, buffer_tag, element_constraints, isl_index



@dataclass(frozen=True)
class Access:
    """One region an op reads or writes, with what encloses the op."""

    region: Region
    write: bool
    scope: Scope
    indirect: Indirect | None = None
    shape: tuple[int, ...] = ()  # the buffer's shape

    def relation(self, keep: tuple[str, ...]) -> isl.Map:
        """`{ [keep vars] -> B_buffer[elements] }`, the other variables existential."""
        return _relation(self, keep)


def tables_of(program) -> dict[str, np.ndarray]:
    """The data of a program's constant buffers, by name (the index tables of its gathers and
    scatters among them)."""
    return {b.name: b.data.value for b in program.buffers if b.data is not None}


def op_accesses(op, scope: Scope, shapes: Mapping[str, tuple], tables: Mapping[str, np.ndarray]) -> list[Access]:
    """The accesses of one op: a gather's source and a scatter's destination through its table."""
    out = []
    # (by position, not by region: a gather may write the very region it reads through its table)
    through = [isinstance(op, Gather) and k == 0 for k in range(len(op.reads))] + \
        [isinstance(op, Scatter) and k == 0 for k in range(len(op.writes))]
    for (r, write), indirect_here in zip([(r, False) for r in op.reads] + [(w, True) for w in op.writes], through):
        indirect = None
        if indirect_here:
            table = tables.get(op.index.buffer)
            indirect = Indirect(op.axis, op.index, None if table is None else np.asarray(table))
        out.append(Access(r, write, scope, indirect, tuple(shapes[r.buffer])))
    return out


def accesses(stmts, scope: Scope, shapes: Mapping[str, tuple], tables: Mapping[str, np.ndarray] | None = None,
             live_reads: bool = False):
    """Every access of every op inside `stmts`, each with its scope (loops, stage dims, ifs).
    `live_reads`: a read inside a loop with an `active` hint counts only at the live points
    (a dead point's results are read by no one, so what it reads cannot matter); its writes,
    and everything without the flag, count at every point."""
    tables = tables or {}
    out: list[Access] = []

    def walk(ss, sc: Scope, live: Scope):
        for s in ss:
            if isinstance(s, Loop):
                inner = sc.inner(s.var, s.start, s.stop, s.step)
                live_inner = live.inner(s.var, s.start, s.stop, s.step)
                if s.active is not None:
                    live_inner = live_inner.when((s.active.point, "<", s.active.bound))
                walk(s.body, inner, live_inner)
            elif isinstance(s, If):
                walk(s.then, sc.when(s.cond), live.when(s.cond))
                walk(s.orelse, sc.unless(s.cond), live.unless(s.cond))
            elif isinstance(s, Stage):
                inner, live_inner = sc, live
                for d in s.dims:
                    inner, live_inner = inner.inner(d.var, d.start, d.stop), live_inner.inner(d.var, d.start, d.stop)
                for op in s.body:
                    out.extend(x for x in op_accesses(op, inner, shapes, tables) if x.write or not live_reads)
                    if live_reads:
                        out.extend(x for x in op_accesses(op, live_inner, shapes, tables) if not x.write)
            else:
                raise TypeError(f"not a statement: {type(s).__name__}")
    walk(stmts, scope, scope)
    return out


def deltas(xs, ys, over, fixed=()) -> isl.Set:
    """`{ y[over] - x[over] }` over instances x of `xs` and y of `ys` touching a common element,
    at least one writing, with equal `fixed` variables (which must enclose every access)."""
    return _deltas(tuple(xs), tuple(ys), tuple(over), tuple(fixed))


@functools.lru_cache(maxsize=1 << 16)  # passes and `verify()` ask the same questions again
def _deltas(xs: tuple, ys: tuple, over: tuple, fixed: tuple) -> isl.Set:
    keep, n = fixed + over, len(over)
    xs, ys = _meeting(xs, ys)
    out = _empty(n)
    for buffer in {x.region.buffer for x in xs}:
        bx = [x for x in xs if x.region.buffer == buffer]
        by = [y for y in ys if y.region.buffer == buffer]
        pairs = [(x, y) for x in bx for y in by if x.write or y.write]
        if all(_only_itself(x, y) for x, y in pairs):
            # (an exact special case: each pair meets only at one instance, where there is one)
            if any(_has_instance(x.scope) for x, _ in pairs):
                out = out.union(_zero(n))
            continue
        # an access through a constant table meets another where their rows do: joined in NumPy,
        # instance by instance (in isl, relations of many runs of rows compose slowly, and past
        # `MAX_TABLE_RUNS` they are widened); the rest in isl
        sx, sy = [x for x in bx if not _listed(x)], [y for y in by if not _listed(y)]
        out = out.union(_touch(sx, sy, keep, len(fixed), n))
        for x, y in pairs:
            if _listed(x) or _listed(y):
                found = _joined(x, y, keep, len(fixed))
                out = out.union(_touch([x], [y], keep, len(fixed), n) if found is None else vector_set(found, n))
    return out.coalesce()


def _only_itself(x: Access, y: Access) -> bool:
    """Whether `x` and `y` are one access (region and scope) whose first axis is an index that
    names a different row at every instance (a mixed radix over the scope's box): then two of
    its instances meet only when they are one."""
    if x.region != y.region or x.scope != y.scope or x.indirect is not None or x.region.size[0] is not None:
        return False
    row, ranges = x.region.start[0], x.scope.ranges()
    if ranges is None:
        return True  # no instance
    if any(not isinstance(atom, str) for atom, _ in row.terms) or set(ranges) - row.vars():
        return False  # (a variable the row ignores: its instances share rows)
    span = 0
    for c, v in sorted((abs(c), v) for v, c in row.terms):
        if c <= span:
            return False
        span += c * (ranges[v][1] - ranges[v][0])
    return True


@functools.lru_cache(maxsize=4096)
def _has_instance(scope: Scope) -> bool:
    """Does `scope` run any instance (its bounds, steps and conditions, exactly)?"""
    names = ", ".join(scope.names().values())
    return not isl.Set(f"{{ [{names}] : {' and '.join(scope.constraints()) or 'true'} }}").is_empty()


@functools.lru_cache(maxsize=64)
def _empty(n: int) -> isl.Set:
    return isl.Set("{ [" + ", ".join(f"d{k}" for k in range(n)) + "] : false }")


def _meeting(xs, ys):
    """The accesses of `xs` and `ys` that could meet one of the other side: same buffer, one
    of the two writing, element boxes overlapping (interval arithmetic over the scopes)."""
    def could(a: Access, others) -> bool:
        return any(b.region.buffer == a.region.buffer and (a.write or b.write) and _boxes_overlap(a, b)
                   for b in others)
    return [x for x in xs if could(x, ys)], [y for y in ys if could(y, xs)]


def _boxes_overlap(a: Access, b: Access) -> bool:
    return all(lo1 <= hi2 and lo2 <= hi1 for (lo1, hi1), (lo2, hi2) in zip(_box(a), _box(b)))


@functools.lru_cache(maxsize=65536)
def _box(a: Access) -> tuple:
    """Per buffer axis, (lo, hi) of the elements the access may touch (the whole axis of a
    table's)."""
    ranges = a.scope.ranges()
    skip = a.indirect.buffer_axis(a.region) if a.indirect is not None else None
    out = []
    for k, (start, size, stride) in enumerate(zip(a.region.start, a.region.size, a.region.stride)):
        if ranges is None:
            out.append((0, -1))  # no instance: meets nothing
            continue
        lo, hi = start.bounds(ranges)
        span = ((size or 1) - 1) * stride
        out.append((lo, hi + span) if k != skip else (-(1 << 62), 1 << 62))
    return tuple(out)


def _touch(xs, ys, keep, n_fixed: int, n_over: int) -> isl.Set:
    pairs = [(x.relation(keep), x.write) for x in xs], [(y.relation(keep), y.write) for y in ys]
    return touch_deltas(*pairs, n_fixed=n_fixed, n_over=n_over)


def pairwise(stmts, scope: Scope, over, fixed, shapes, tables) -> dict:
    """`{(i, j): deltas(stmt i, stmt j)}` for the statements of a block that meet (with `i <= j`;
    `(j, i)` is the negation), computed once for a pass to read its conditions off."""
    acc = [accesses([s], scope, shapes, tables) for s in stmts]
    out = {}
    for i in range(len(stmts)):
        for j in range(i, len(stmts)):
            xs, ys = _meeting(acc[i], acc[j])
            if xs and ys:
                d = deltas(xs, ys, over, fixed)
                if not d.is_empty():
                    out[i, j] = d
    return out


def between(found: dict, i: int, j: int, n: int) -> isl.Set | None:
    """`deltas(stmt i, stmt j)` from a `pairwise` table (None: they never meet)."""
    if (i, j) in found:
        return found[i, j]
    if (j, i) in found:
        return found[j, i].apply(_negate(n))
    return None


@functools.lru_cache(maxsize=16)
def _negate(n: int) -> isl.Map:
    xs = [f"d{k}" for k in range(n)]
    return isl.Map(f"{{ [{', '.join(xs)}] -> [{', '.join('-' + x for x in xs)}] }}")


def only_zero(d: isl.Set) -> bool:
    """Whether every difference in `d` is zero (the instances meet only at the same point)."""
    return d.is_subset(_zero(d.dim(isl.dim_type.set)))


def vectors(d: isl.Set, limit: int = 4096) -> list[tuple[int, ...]] | None:
    """The differences in `d`, sorted; None when there are more than `limit`."""
    # counted first (isl counts symbolically): a callback cannot stop isl's walk without
    # raising, and islpy prints every exception raised in a callback
    if not d.is_bounded() or d.count_val().to_python() > limit:
        return None
    n, out = d.dim(isl.dim_type.set), []
    d.foreach_point(lambda p: out.append(tuple(p.get_coordinate_val(isl.dim_type.set, k).to_python()
                                               for k in range(n))))
    return sorted(out)


@functools.lru_cache(maxsize=64)
def _zero(n: int) -> isl.Set:
    xs = ", ".join(f"d{k}" for k in range(n))
    cons = " and ".join(f"d{k} = 0" for k in range(n)) or "true"
    return isl.Set(f"{{ [{xs}] : {cons} }}")


@functools.lru_cache(maxsize=65536)
def _relation(a: Access, keep: tuple[str, ...]) -> isl.Map:
    names = a.scope.names()
    missing = [v for v in keep if v not in names]
    if missing:
        raise ValueError(f"variable {missing[0]} does not enclose the access {a.region}")
    skip = a.indirect.buffer_axis(a.region) if a.indirect is not None else None
    ex, cons = element_constraints(a.region, names, skip)
    rows = _table_rows(a, keep, skip) if skip is not None else None
    pieces = table_pieces(a) if skip is not None and rows is None and a.indirect.table is not None else None
    if pieces is not None:  # too many to list: affine pieces over the instance and the entry (tq)
        ex.append(ENTRY_VAR)
        cons.append(f"0 <= {ENTRY_VAR} < {index_width(a)} and ({pieces})")
    elif skip is not None and rows is None:  # the whole axis the region spans
        start, size, stride = a.region.start[skip], a.region.size[skip], a.region.stride[skip]
        ex.append("tq")
        cons.append(f"e{skip} = {isl_index(start, names)} + {stride}*tq and 0 <= tq < {size}")
    elif rows:  # (over the kept variables and some hidden ones: inside the quantifier)
        cons.append(f"({rows})")
    ks = [f"k{j}" for j in range(len(keep))]
    cons = a.scope.constraints() + cons + [f"{k} = {names[v]}" for k, v in zip(ks, keep)]
    elems = ", ".join(f"e{k}" for k in range(len(a.region.start)))
    hidden = ", ".join(list(names.values()) + ex)
    body = " and ".join(cons) or "true"
    text = f"{{ [{', '.join(ks)}] -> {buffer_tag(a.region.buffer)}[{elems}] : "
    text += f"(exists ({hidden} : {body}))" if hidden else f"({body})"
    return isl.Map(text + " }")
