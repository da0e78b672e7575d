"""The rows a gather or scatter reaches through a big constant table, as affine pieces: exact
where listing them entry by entry costs too much.

`fractal.lower.dependences` reads a constant table entry by entry and keeps the rows per value
of a question's variables; past `MAX_TABLE_ENTRIES` entries or `MAX_TABLE_RUNS` kept values it
needs another exact description, or it widens the access to the whole axis, and `verify()`
rejects a parallel loop whose iterations each read their own block (selective_scan's
[group][time] -> [time][group] transpose at 2 x 2048 x 256 entries; transformer_block's last
state of a ragged scan, one per head and position of 16 samples).  Such tables come from
access operators (dilate, interleave, window, the last step of each sample), so the row an
entry names is an affine function of the op's instance and of the entry's position in the
index region, piece by piece: over one sample of a ragged batch, say, with padding entries
(the axis' size) naming no row.  `table_pieces` finds those pieces:

* the scope is listed in slabs of at most `MAX_FIT_ENTRIES` entries, fixing outer variables;
* a slab's kept entries are fitted with one affine function (solved on a sample, checked on
  every entry); where it holds, the pieces only say which entries are kept: runs of values of
  the next variable whose entries all are, the mixed values cut further;
* where no function fits, the entries are cut by the next variable's values, each fitted alone.

Every piece is checked on every entry it stands for, so the description is exact; past
`MAX_PIECES` pieces it gives up (None) and the caller widens.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .tile_affine import aff, evaluate_many
from .tile_isl import Scope, ScopeDim

MAX_FIT_ENTRIES = 1 << 22   # entries listed at once (a slab of the scope: int64 arrays of this length)
MAX_PIECES = 256            # disjuncts of the relation (isl slows with many)
ENTRY = "#entry"            # the entry's position in the index region (no loop variable is named so)
ENTRY_VAR = "tq"            # ... as the relation names it


class _TooMany(Exception):
    """More pieces than `MAX_PIECES` (or a slab that cannot be made small enough)."""


@dataclass(frozen=True)
class Piece:
    """Entries with each variable in its inclusive bounds, naming row `const + sum(coef * var)`."""

    bounds: tuple[tuple[str, int, int], ...]
    coef: tuple[tuple[str, int], ...]
    const: int

    def condition(self, names: dict, e: str) -> str:
        """The piece in isl's syntax, variables renamed by `names`, the row called `e`."""
        cons = [f"{names[v]} = {lo}" if lo == hi else f"{lo} <= {names[v]} <= {hi}" for v, lo, hi in self.bounds]
        row = " + ".join([f"{c}*{names[v]}" for v, c in self.coef] + [str(self.const)])
        return " and ".join(cons + [f"{e} = {row}"])


def table_entries(a, pts: dict, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, kept, values), each [instances, entries]: the row along the table's buffer axis
    that each entry of access `a` (an `Access` through a constant table) names at the `n`
    instances `pts`, negative values counted from the end; `kept` is False at padding (the
    axis' size: no row); `values` as the table holds them."""
    ind = a.indirect
    width = index_width(a)
    table = ind.table
    strides = [int(np.prod(table.shape[k + 1:], dtype=np.int64)) for k in range(table.ndim)]
    at = next(k for k, size in enumerate(ind.index.size) if size is not None)
    base = sum(np.broadcast_to(evaluate_many(s, pts), (n,)) * st for s, st in zip(ind.index.start, strides))
    flat = np.asarray(base, dtype=np.int64)[:, None] + strides[at] * ind.index.stride[at] * np.arange(width)
    raw = table.reshape(-1)[flat].astype(np.int64)
    axis = ind.buffer_axis(a.region)
    size, stride = a.region.size[axis], a.region.stride[axis]
    values = np.where(raw < 0, raw + size, raw)
    rows = np.broadcast_to(evaluate_many(a.region.start[axis], pts), (n,))[:, None] + stride * values
    return rows, values != size, raw


def index_width(a) -> int:
    """How many entries of its table access `a` reads at each instance."""
    return next(size for size in a.indirect.index.size if size is not None)


@functools.lru_cache(maxsize=256)
def table_pieces(a) -> str | None:
    """The rows access `a` names through its constant table (along the table's buffer axis
    `e<axis>`), as an isl condition over its scope's variables (renamed as `Scope.names` does)
    and `tq`, the entry's position (0 <= tq < the index width: the caller bounds it); None
    past `MAX_PIECES` pieces."""
    try:
        pieces = [p for scope, bounds, pts in _slabs(a.scope, 0, (), index_width(a))
                  for p in _slab_pieces(a, scope, bounds, pts)]
    except _TooMany:
        return None
    names = {**a.scope.names(), ENTRY: ENTRY_VAR}
    e = f"e{a.indirect.buffer_axis(a.region)}"
    return " or ".join(f"({p.condition(names, e)})" for p in pieces) or "false"


def _slabs(scope: Scope, depth: int, bounds: tuple, width: int):
    """(sub-scope, the bounds fixing its outer variables, its instances) covering `scope`, each
    of at most `MAX_FIT_ENTRIES` entries."""
    pts = scope.points(MAX_FIT_ENTRIES // max(width, 1))
    if pts is not None:
        yield scope, bounds, pts
        return
    if depth >= len(scope.dims):
        raise _TooMany
    var = scope.dims[depth].var
    outer = set(scope.vars[:depth + 1])
    prefix = Scope(scope.dims[:depth + 1], tuple(c for c in scope.conds if (aff(c[0]).vars() | aff(c[2]).vars()) <= outer))
    found = prefix.points(MAX_PIECES)
    if found is None:
        raise _TooMany
    for c in np.unique(found[var]):
        fixed = ScopeDim(var, aff(int(c)), aff(int(c) + 1), 1)
        sub = Scope(scope.dims[:depth] + (fixed,) + scope.dims[depth + 1:], scope.conds)
        yield from _slabs(sub, depth + 1, bounds + ((var, int(c), int(c)),), width)


def _slab_pieces(a, scope: Scope, bounds: tuple, pts: dict) -> list[Piece]:
    n = scope.count(pts)
    if n == 0:
        return []
    rows, kept, _ = table_entries(a, pts, n)
    width = rows.shape[1]
    fixed = {v for v, _, _ in bounds}
    cols = {v: np.repeat(np.broadcast_to(pts[v], (n,)), width) for v in scope.vars if v not in fixed}
    cols[ENTRY] = np.tile(np.arange(width, dtype=np.int64), n)
    return _cover(cols, rows.reshape(-1), kept.reshape(-1), tuple(cols), bounds, [0])


def _cover(cols: dict, rows, kept, free: tuple, bounds: tuple, count: list) -> list[Piece]:
    """Pieces standing exactly for the kept entries given (`cols`: each free variable's value
    per entry; `bounds`: what selects these entries among the scope's), cut along `free`."""
    if not kept.any():
        return []
    fit = fit_points(cols, rows, kept, free)
    if fit is not None and kept.all():
        return _counted([Piece(bounds, *fit)], count)
    if not free:
        raise _TooMany  # (cannot happen: one entry, kept, fits a constant)
    var, rest = free[0], free[1:]
    values, group = np.unique(cols[var], return_inverse=True)
    order = np.argsort(group, kind="stable")
    ends = np.cumsum(np.bincount(group, minlength=len(values)))
    starts = ends - np.bincount(group, minlength=len(values))
    n_kept = np.bincount(group, weights=kept, minlength=len(values))
    full = n_kept == ends - starts
    out: list[Piece] = []
    g = 0
    while g < len(values):
        if fit is not None and full[g]:  # a run of values whose entries are all kept: one piece
            h = g
            while h + 1 < len(values) and full[h + 1]:
                h += 1
            out += _counted([Piece(bounds + ((var, int(values[g]), int(values[h])),), *fit)], count)
            g = h + 1
            continue
        if n_kept[g]:
            sel = order[starts[g]:ends[g]]
            out += _cover({v: cols[v][sel] for v in rest}, rows[sel], kept[sel], rest,
                          bounds + ((var, int(values[g]), int(values[g])),), count)
        g += 1
    return out


def _counted(pieces: list[Piece], count: list) -> list[Piece]:
    count[0] += len(pieces)
    if count[0] > MAX_PIECES:
        raise _TooMany
    return pieces


def fit_points(cols: dict, rows, kept, free: tuple) -> tuple[tuple, int] | None:
    """(coefficients, constant) of the affine function of the `free` variables equal to `rows`
    on every kept entry, or None.  Solved on a sample (a fixed draw: deterministic), checked on
    all; a variable taking one value there gets no coefficient."""
    sel = np.flatnonzero(kept)
    xs = {v: cols[v][sel] for v in free}
    varying = [v for v in free if xs[v].min() != xs[v].max()]
    want = rows[sel]
    sample = np.unique(np.r_[np.linspace(0, len(sel) - 1, 32).astype(np.int64),
                             np.random.default_rng(0).integers(0, len(sel), 32)])
    lhs = np.column_stack([np.ones(len(sample))] + [xs[v][sample].astype(np.float64) for v in varying])
    solution = np.linalg.lstsq(lhs, want[sample].astype(np.float64), rcond=None)[0]
    c = np.rint(solution).astype(np.int64)
    got = np.full(len(sel), c[0], dtype=np.int64)
    for v, k in zip(varying, c[1:]):
        got += k * xs[v]
    if not np.array_equal(got, want):
        return None
    return tuple((v, int(k)) for v, k in zip(varying, c[1:]) if k), int(c[0])
