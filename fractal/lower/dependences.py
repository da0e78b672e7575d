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
those the region's other axes read, as runs of rows (`_table_rows`): exact, so a scatter per
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
import math
from dataclasses import dataclass
from typing import Mapping

import islpy as isl
import numpy as np

from ..analysis.dependences import touch_deltas
from ..analysis.wavefront import vector_set
from .tile_expr import Region
from .tile_nodes import Gather, If, Loop, Scatter, Stage
from .tile_affine import evaluate_many
from .table_fit import ENTRY_VAR, index_width, table_entries, table_pieces
from .tile_isl import Indirect, Scope, arithmetic_runs, buffer_tag, element_constraints, isl_index

# Past these, a table's rows are affine pieces, or the whole axis of the region (see the docstring):
MAX_TABLE_ENTRIES = 1 << 18     # table entries an op reads, over all its instances, to list them
MAX_TABLE_RUNS = 512            # runs of rows in the relation (isl slows with many disjuncts)
MAX_JOINED = 1 << 22            # pairs of instances two tables' rows are joined into


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


@dataclass(frozen=True)
class TableRows:
    """A gather's or scatter's accesses through a constant table, entry by entry: the op's
    instances (each variable's values, `count` of them) and, per entry the table names, its
    instance and its row along the table's axis (padding, one past the end, is no entry)."""

    points: dict
    count: int
    instance: np.ndarray
    row: np.ndarray
    values: np.ndarray  # every value the table holds for the op, padding included [instances, entries]


def table_instances(a: Access) -> TableRows | None:
    """`a`'s entries through its constant table, or None when there are too many to list."""
    pts = a.scope.points(MAX_TABLE_ENTRIES // max(index_width(a), 1))
    if pts is None:
        return None
    n = a.scope.count(pts)
    rows, kept, raw = table_entries(a, pts, n)
    instance = np.broadcast_to(np.arange(n)[:, None], rows.shape)[kept]
    return TableRows(pts, n, instance, rows[kept], raw)


def _table_rows(a: Access, keep: tuple[str, ...], axis: int) -> str | None:
    """The rows (along buffer axis `axis`) a gather/scatter touches through its constant table,
    per value of the `keep` variables and of those the region's other axes read, as an isl
    condition over `k0, ...`, those variables (renamed as the scope names them) and `e<axis>`;
    None when the table is not known or the keys are too many (too many runs of rows stand as
    each key's span).  (Keyed by the kept
    variables alone, the rows of one instance would pair with the other axes' elements of
    another: a gather of `y[0:2, p]` at rows `[p]` would seem to read `y[0, 1]`.)"""
    if a.indirect.table is None:
        return None
    found = table_instances(a)
    if found is None:
        return None
    if len(found.row) == 0:
        return "false"
    n, pts = found.count, found.points
    names = a.scope.names()
    others = sorted({v for k, start in enumerate(a.region.start) if k != axis for v in start.vars()} - set(keep),
                    key=list(names).index)
    tied = [(f"k{j}", v) for j, v in enumerate(keep)] + [(names[v], v) for v in others]
    key = np.zeros(n, np.int64)  # the tied variables' values as one number (mixed radix)
    for _, v in tied:
        col = np.broadcast_to(pts[v], (n,))
        lo = int(col.min())
        key = key * (int(col.max()) - lo + 1) + (col - lo)
    key, flat, inst = key[found.instance], found.row, found.instance
    order = np.lexsort((flat, key))
    key, flat, inst = key[order], flat[order], inst[order]
    fresh = np.ones(len(key), dtype=bool)
    fresh[1:] = (key[1:] != key[:-1]) | (flat[1:] != flat[:-1])  # each (key, row) once
    key, flat, inst = key[fresh], flat[fresh], inst[fresh]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    if len(starts) > MAX_TABLE_RUNS:
        return None
    ends = np.r_[starts[1:], len(key)]
    values = {v: np.broadcast_to(pts[v], (n,)) for _, v in tied}
    at_key = [" and ".join(f"{name} = {int(values[v][inst[lo]])}" for name, v in tied) or "true" for lo in starts]
    e, parts, total = f"e{axis}", [], 0
    for g, (lo, hi) in enumerate(zip(starts, ends)):
        runs = arithmetic_runs(flat[lo:hi], MAX_TABLE_RUNS - total)
        if runs is None:  # too many runs: each key's rows as the span they lie in (a sound hull)
            return " or ".join(f"({k} and {int(flat[a])} <= {e} <= {int(flat[b - 1])})"
                               for k, a, b in zip(at_key, starts, ends))
        total += len(runs)
        parts.append(f"({at_key[g]} and ({' or '.join(_run(e, r) for r in runs)}))")
    return " or ".join(parts)


def _run(e: str, run) -> str:
    lo, hi, first, step = run
    if hi - lo == 1:
        return f"{e} = {first}"
    if step == 1:
        return f"{first} <= {e} <= {first + hi - lo - 1}"
    return f"exists (q : {e} = {first} + {step}*q and 0 <= q < {hi - lo})"


@dataclass(frozen=True)
class _Listed:
    """An access entry by entry along one buffer axis (`TableRows`: a gather's or scatter's
    through its table, or the rows a plain region spans there) and the span of every other
    axis of each instance."""

    rows: TableRows
    spans: tuple            # per other buffer axis: (axis, lo [instances], hi [instances], stride)


def _listed(a: Access) -> _Listed | None:
    return _listing(a) if a.indirect is not None and a.indirect.table is not None else None


@functools.lru_cache(maxsize=4096)
def _listing(a: Access) -> _Listed | None:
    found = table_instances(a)
    if found is None:
        return None
    axis, n, pts = a.indirect.buffer_axis(a.region), found.count, found.points
    spans = []
    for k, (start, size, stride) in enumerate(zip(a.region.start, a.region.size, a.region.stride)):
        if k != axis:
            lo = np.broadcast_to(evaluate_many(start, pts), (n,))
            spans.append((k, lo, lo + ((size or 1) - 1) * stride, stride))
    return _Listed(found, tuple(spans))


def listed_mask(a: Access) -> np.ndarray | None:
    """The elements an access through a constant table touches, exactly, as a boolean mask
    over its buffer (an isl relation of thousands of scattered rows would be a hull); None when
    its entries are too many to list or its other axes' spans differ from instance to
    instance."""
    found = _listed(a)
    if found is None:
        return None
    mask = np.zeros(a.shape, bool)
    key: list = [None] * len(a.shape)
    key[a.indirect.buffer_axis(a.region)] = found.rows.row
    for k, lo, hi, stride in found.spans:
        if len(lo) and (lo.min() != lo.max() or hi.min() != hi.max()):
            return None
        key[k] = slice(int(lo[0]), int(hi[0]) + 1, stride) if len(lo) else slice(0, 0)
    mask[tuple(key)] = True
    return mask


@functools.lru_cache(maxsize=4096)
def _plain_listing(a: Access, axis: int) -> _Listed | None:
    """A plain access (no table) entry by entry along buffer `axis`: each instance's rows
    there; None past `MAX_TABLE_ENTRIES` entries."""
    start, size, stride = a.region.start[axis], a.region.size[axis], a.region.stride[axis]
    width = size or 1
    pts = a.scope.points(MAX_TABLE_ENTRIES // width)
    if pts is None:
        return None
    n = a.scope.count(pts)
    first = np.broadcast_to(evaluate_many(start, pts), (n,))
    rows = TableRows(pts, n, np.repeat(np.arange(n), width), (first[:, None] + stride * np.arange(width)).reshape(-1),
                     np.zeros((n, 0), np.int64))
    spans = []
    for k, (s, m, t) in enumerate(zip(a.region.start, a.region.size, a.region.stride)):
        if k != axis:
            lo = np.broadcast_to(evaluate_many(s, pts), (n,))
            spans.append((k, lo, lo + ((m or 1) - 1) * t, t))
    return _Listed(rows, tuple(spans))


def _progressions_meet(alo, ahi, astep: int, blo, bhi, bstep: int) -> np.ndarray:
    """Whether `alo, alo + astep, ..., ahi` and `blo, blo + bstep, ..., bhi` share an element,
    pair by pair (arrays; steps positive): both progressions hold the numbers congruent to one
    `e0` modulo `lcm(astep, bstep)` (when `blo - alo` is a multiple of their gcd: the Chinese
    remainder theorem), and they meet when the first of those from the later start comes
    before the earlier end."""
    g = math.gcd(astep, bstep)
    lcm = astep // g * bstep
    gap = blo - alo
    solvable = gap % g == 0
    # e0 = alo + astep * t with astep * t = gap (mod bstep): t = (gap / g) * inverse(astep / g) mod (bstep / g)
    inverse = pow(astep // g, -1, bstep // g) if bstep // g > 1 else 0
    e0 = alo + astep * (((gap // g) * inverse) % (bstep // g))
    lo, hi = np.maximum(alo, blo), np.minimum(ahi, bhi)
    first = e0 + lcm * -((e0 - lo) // lcm)  # the least element >= lo congruent to e0
    return solvable & (first <= hi)


def _along(a: Access, axis: int) -> _Listed | None:
    """`a` entry by entry along buffer `axis`: through its constant table if it indexes that
    axis, its plain region if it has no table; else None."""
    if a.indirect is None:
        return _plain_listing(a, axis)
    found = _listed(a)
    return found if found is not None and a.indirect.buffer_axis(a.region) == axis else None


def _joined(x: Access, y: Access, keep, n_fixed: int) -> list[tuple[int, ...]] | None:
    """The differences over the kept variables past the first `n_fixed` between instances of
    `x` and `y` (one of them through a constant table: the other listed along the same axis)
    that share a row (and an element on each other axis), the first `n_fixed` equal; None
    when one cannot be listed so or the join is too big (the caller asks isl instead)."""
    through = x if _listed(x) else y
    axis = through.indirect.buffer_axis(through.region)
    X, Y = _along(x, axis), _along(y, axis)
    if X is None or Y is None:
        return None
    xi, xr, yi, yr = X.rows.instance, X.rows.row, Y.rows.instance, Y.rows.row
    order = np.argsort(yr, kind="stable")
    ys_sorted = yr[order]
    lo, hi = np.searchsorted(ys_sorted, xr, "left"), np.searchsorted(ys_sorted, xr, "right")
    counts = hi - lo
    total = int(counts.sum())
    if total > MAX_JOINED:
        return None
    px = np.repeat(xi, counts)
    py = yi[order[np.repeat(lo, counts) + np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)]]
    ok = np.ones(total, dtype=bool)
    for (_, xlo, xhi, xs), (_, ylo, yhi, ys) in zip(X.spans, Y.spans):
        ok &= _progressions_meet(xlo[px], xhi[px], xs, ylo[py], yhi[py], ys)
    nx, ny = X.rows.count, Y.rows.count
    kx = np.stack([np.broadcast_to(X.rows.points[v], (nx,))[px] for v in keep], axis=1) if keep else \
        np.zeros((total, 0), np.int64)
    ky = np.stack([np.broadcast_to(Y.rows.points[v], (ny,))[py] for v in keep], axis=1) if keep else \
        np.zeros((total, 0), np.int64)
    ok &= (kx[:, :n_fixed] == ky[:, :n_fixed]).all(axis=1)
    d = (ky - kx)[ok][:, n_fixed:].astype(np.int64)
    return [tuple(int(v) for v in row) for row in np.unique(d, axis=0)]
