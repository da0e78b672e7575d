"""The elements a tile op's access touches through a constant index table, listed with NumPy:
what the dependence questions (`fractal.lower.dependences`) ask of gathers and scatters.

A gather's source and a scatter's destination are read and written at the rows their index
table holds.  Where the table is a constant buffer with data, `table_instances` lists them
entry by entry (each instance of the op and its row along the table's axis), and
`table_rows` turns them into an isl condition keyed by the variables a question keeps (runs
of rows; each kept value's span past `MAX_TABLE_RUNS` runs).  Two accesses, one of them
through a table, are joined row by row with NumPy (`joined`) instead of in isl, where
thousands of scattered rows would make a relation isl cannot work with; `listed_mask` gives the
elements themselves, as a mask over the buffer.  Past `MAX_TABLE_ENTRIES` entries nothing is
listed (the callers fall back on affine pieces or the whole axis).

    found = table_instances(access)          # TableRows: instance and row of every entry
    table_rows(access, ("l",), axis=0)       # "(k0 = 0 and (e0 = 3 or 5 <= e0 <= 9)) or ..."
    listed_mask(access)                      # a boolean mask over the buffer, or None
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .table_fit import index_width, table_entries
from .tile_affine import evaluate_many
from .tile_isl import arithmetic_runs

MAX_TABLE_ENTRIES = 1 << 18     # table entries an op reads, over all its instances, to list them
MAX_TABLE_RUNS = 512            # runs of rows in the relation (isl slows with many disjuncts)
MAX_JOINED = 1 << 22            # pairs of instances two tables' rows are joined into


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


def table_instances(a) -> TableRows | None:
    """`a`'s entries through its constant table, or None when there are too many to list."""
    pts = a.scope.points(MAX_TABLE_ENTRIES // max(index_width(a), 1))
    if pts is None:
        return None
    n = a.scope.count(pts)
    rows, kept, raw = table_entries(a, pts, n)
    instance = np.broadcast_to(np.arange(n)[:, None], rows.shape)[kept]
    return TableRows(pts, n, instance, rows[kept], raw)


def table_rows(a, keep: tuple[str, ...], axis: int) -> str | None:
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


def listed(a) -> _Listed | None:
    return _listing(a) if a.indirect is not None and a.indirect.table is not None else None


@functools.lru_cache(maxsize=4096)
def _listing(a) -> _Listed | None:
    found = table_instances(a)
    if found is None:
        return None
    return _Listed(found, _spans(a, a.indirect.buffer_axis(a.region), found.points, found.count))


def _spans(a, axis: int, pts: dict, n: int) -> tuple:
    """Per buffer axis but `axis`: (axis, each instance's first and last index, stride)."""
    spans = []
    for k, (start, size, stride) in enumerate(zip(a.region.start, a.region.size, a.region.stride)):
        if k != axis:
            lo = np.broadcast_to(evaluate_many(start, pts), (n,))
            spans.append((k, lo, lo + ((size or 1) - 1) * stride, stride))
    return tuple(spans)


def listed_mask(a) -> np.ndarray | None:
    """The elements an access through a constant table touches, exactly, as a boolean mask
    over its buffer (an isl relation of thousands of scattered rows would be a hull); None when
    its entries are too many to list or its other axes' spans differ from instance to
    instance."""
    found = listed(a)
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
def _plain_listing(a, axis: int) -> _Listed | None:
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
    return _Listed(rows, _spans(a, axis, pts, n))


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


def _along(a, axis: int) -> _Listed | None:
    """`a` entry by entry along buffer `axis`: through its constant table if it indexes that
    axis, its plain region if it has no table; else None."""
    if a.indirect is None:
        return _plain_listing(a, axis)
    found = listed(a)
    return found if found is not None and a.indirect.buffer_axis(a.region) == axis else None


def joined(x, y, keep, n_fixed: int) -> list[tuple[int, ...]] | None:
    """The differences over the kept variables past the first `n_fixed` between instances of
    `x` and `y` (one of them through a constant table: the other listed along the same axis)
    that share a row (and an element on each other axis), the first `n_fixed` equal; None
    when one cannot be listed so or the join is too big (the caller asks isl instead)."""
    through = x if listed(x) else y
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
