"""Per-point final states: a rolled state read after its loop at each point's own last step.

`roll_storage` keeps a window of a loop-carried state's slots.  A state read after the loop
was rolled only where every point's final state is one slot of the last step.  In a ragged
batch it is not: the lowering cuts each step to its live points (`bucket`), so a sequence of
length n writes its last slot at step n - 1, and the state is read after the loop at each
point's own slot, through an affine row (flash attention's blocks of queries: slot
`16 - 4*m43`) or through a constant table (attention over sequences of different lengths:
slot `len(seq)`, padding for the dead queries).  Keeping every step's slot then costs steps x
points rows (transformer_block's softmax max and sum: 129 slots of 4096 points, each step's
writes in a new 16 KiB slot, so the cache sets alias) where a window of two would do.

Rolled, slot `k` of point `p` lives at row `p + rows * (k mod w)`; what a read after the loop
finds there is the last slot `p` wrote that is congruent to `k`.  So the read is the same when
`k` is the newest slot written for `p` (by any write: before the loop or in it, live or a
dead point computed by a coarse cut).  That is checked entry by entry with NumPy over the
instances (`Scope.points`, `table_instances`: at most `MAX_INSTANCES` per access, else the
buffer keeps every slot), as the table questions of the dependence analysis are; a point no
write touches reads zeros either way.  The reads are then rewritten: an affine read's new row
is fitted as an affine index (or `p + rows * (k mod w)` with both parts affine), a table's
entries are mapped one by one (padding stays padding: one past the new end).

Before (flash attention, 256 points, final slot 16 for m43 = 0 and 12 for m43 = 1)::

    buffer st: f32[4352,64,64] global temp
    for r in 0:16 sequential host active ... { stage step(m43 in 0:..., ...) {
        st[m41 + 16*m42 + 128*m43 + 256*r + 256] = f(st[m41 + 16*m42 + 128*m43 + 256*r]) } }
    stage out(m43 in 0:2, m42 in 0:8, m41 in 0:16) { o[...] = g(st[m41 + 16*m42 - 896*m43 + 4096]) }

After::

    buffer st: f32[512,64,64] global temp
        st[m41 + 16*m42 + 128*m43 + 256*((r + 1) mod 2)] = f(st[m41 + 16*m42 + 128*m43 + 256*(r mod 2)])
    stage out(...) { o[...] = g(st[m41 + 16*m42 + 128*m43]) }
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .dependences import Access
from .table_fit import fit_points
from .table_rows import table_instances
from .tile_affine import Aff, aff, evaluate_many, mod
from .tile_isl import Indirect, Scope
from .tile_nodes import Gather

MAX_INSTANCES = 1 << 22   # instances of one access listed to check it
NONE = np.iinfo(np.int64).min   # the newest slot of a point nothing writes


@dataclass(frozen=True)
class PointFinals:
    """How the reads after the loop change: affine reads' regions (old -> new), constant
    tables' new data (by buffer name); whole-axis gather sources take the rolled row count."""

    regions: dict
    tables: dict


def isl_scope(scope: tuple) -> Scope:
    """A `rolling._Site` scope (loops, `if` branches and stage dims) as a `tile_isl.Scope`."""
    out = Scope()
    for entry in scope:
        if entry[0] == "if":
            out = out.when(entry[1]) if entry[2] else out.unless(entry[1])
        elif entry[0] == "loop":
            out = out.inner(entry[1], entry[2], entry[3], entry[4])
        else:
            out = out.inner(entry[1], entry[2], entry[3])
    return out


def point_finals(finals, writes, base: Aff, c: int, ranges: dict, g: Aff, rows: int, width: int,
                 tables: dict, table_uses: dict) -> PointFinals | None:
    """The rewrite of `finals` (reads after the loop, each at its point's own slot) when each
    reads the newest slot its point wrote (`writes`: every write of the buffer, each row
    `base + c*slot`); None when some read does not, or cannot be listed or rewritten.  `g`
    (over `base`'s variables) numbers the points densely, `rows` of them; slots roll over
    `width`."""
    lo, hi = base.bounds(ranges)
    if hi - lo >= c or c > MAX_INSTANCES:
        return None     # two points' rows interleave (a row does not say its point and slot), or too many points
    newest = np.full(c, NONE, dtype=np.int64)
    for w in writes:
        pts = isl_scope(w.scope).points(MAX_INSTANCES)
        if pts is None:
            return None
        n = count(pts)
        at = np.broadcast_to(evaluate_many(w.region.start[0], pts), (n,)) - lo
        if n and (at.min() < 0 or not _renumbers(g, pts, at % c, n)):
            return None
        np.maximum.at(newest, at % c, at // c)

    def check(at: np.ndarray) -> bool:
        """Does each of rows `at` (from `lo`) hold its point's newest slot (or a point never
        written, which reads zeros either way; one outside the numbering would share a row)?"""
        point, slot = at % c, at // c
        return not np.any((at < 0) | (point >= rows) | (newest[point] != slot) & (newest[point] != NONE))

    def relocate(at: np.ndarray) -> np.ndarray:
        return at % c + rows * ((at // c) % width)

    regions, new_tables = {}, {}
    for s in finals:
        pts = isl_scope(s.scope).points(MAX_INSTANCES)
        if pts is None:
            return None
        if s.region.size[0] is None:    # an affine row
            n = count(pts)
            at = np.broadcast_to(evaluate_many(s.region.start[0], pts), (n,)) - lo
            row = _new_row(pts, at, relocate(at), c, rows, width) if check(at) else None
            if row is None or regions.get(s.region, row) != row:
                return None
            regions[s.region] = row
        else:
            table = _table_rewrite(s, lo, c, rows, check, relocate, rows * width, tables, table_uses)
            if table is None:
                return None
            new_tables[table[0]] = table[1]
    return PointFinals(regions, new_tables)


def count(pts: dict) -> int:
    """How many instances `Scope.points` listed."""
    return len(next(iter(pts.values()))) if pts else 1


def _renumbers(g: Aff, pts: dict, point: np.ndarray, n: int) -> bool:
    """Is `g`, the dense numbering of the points, the row offset itself at these instances?"""
    if not set(g.vars()) <= set(pts):
        return False
    return bool(np.array_equal(np.broadcast_to(evaluate_many(g, pts), (n,)), point))


def _new_row(pts: dict, at: np.ndarray, new: np.ndarray, c: int, rows: int, width: int) -> Aff | None:
    """An index giving `new` at the read's instances: affine where it is, else
    `point + rows * (slot mod width)` with the point and the slot affine."""
    row = _fit(pts, new)
    if row is not None:
        return row
    point, slot = _fit(pts, at % c), _fit(pts, at // c)
    if point is None or slot is None:
        return None
    return point + mod(slot, width) * rows


def _fit(pts: dict, values: np.ndarray) -> Aff | None:
    """`values` as an affine function of the instances' variables, if one gives them exactly."""
    if len(values) == 0:
        return aff(0)
    found = fit_points(pts, values, np.ones(len(values), dtype=bool), tuple(sorted(pts)))
    if found is None:
        return None
    terms, const = found
    out = aff(const)
    for v, k in terms:
        out = out + aff(v) * k
    return out


def _table_rewrite(s, lo: int, c: int, rows: int, check, relocate, new_size: int, tables: dict,
                   table_uses: dict):
    """(name, new data) of the constant table through which gather `s` reads the state's whole
    row axis, its entries moved to their rolled rows; None unless the table is a constant that
    only this gather reads and every entry it reads names its point's newest slot."""
    table = sole_table(s, tables, table_uses)
    if table is None:
        return None     # (a read of several rows, not through a table of its own)
    name, table = s.node.index.buffer, np.asarray(table)
    found = table_instances(Access(s.region, False, isl_scope(s.scope), Indirect(0, s.node.index, table), ()))
    if found is None or not check(found.row - lo):
        return None
    return name, remapped_table(table, s.region, lo, lambda rel: np.where(rel % c < rows, relocate(rel), -1),
                                new_size)


def remapped_table(table, src, first: int, move, new_size: int) -> np.ndarray:
    """A gather's table over `src` (a whole row axis from a constant row) for the buffer's
    new rows: each entry naming a row, taken relative to row `first`, to `move(rows)`; a row
    before `first` or moved to -1 is one nothing stores any more (zeros: padding, at the new
    end `new_size`, as padding stays); out-of-range entries stay out of range."""
    table = np.asarray(table)
    flat = table.reshape(-1).astype(np.int64)
    size, start = src.size[0], src.start[0].const
    values = np.where(flat < 0, flat + size, flat)
    rel = start + values - first
    inside = (values >= 0) & (values < size)
    new = np.where(values == size, new_size, flat)
    moved = np.where(rel[inside] >= 0, move(np.maximum(rel[inside], 0)), -1)
    new[inside] = np.where(moved < 0, new_size, moved)
    return new.astype(table.dtype).reshape(table.shape)


def gather_table_uses(sites: dict) -> dict:
    """How many gathers read through each index table (`sites`: `rolling.access_sites`)."""
    uses: dict = {}
    for xs in sites.values():
        for s in xs:
            if isinstance(s.node, Gather) and s.region is s.node.src:
                uses[s.node.index.buffer] = uses.get(s.node.index.buffer, 0) + 1
    return uses


def sole_table(s, tables: dict, table_uses: dict):
    """The data of the constant table through which site `s`, a gather's source (its whole row
    axis, from a constant row), reads rows, where no other gather reads that table (so it can
    be rewritten for this buffer alone); else None."""
    op = s.node
    if not isinstance(op, Gather) or op.axis != 0 or op.src is not s.region:
        return None
    name = op.index.buffer
    if name not in tables or table_uses.get(name, 0) != 1 or not s.region.start[0].is_const \
            or s.region.stride[0] != 1:
        return None
    return tables[name]
