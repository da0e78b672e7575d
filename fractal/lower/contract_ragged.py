"""Ragged sums for `contract`: how many steps of a sum each point keeps.

A `reduce` over lists of different lengths runs the loop for the longest list; a shorter
list's sum is its state at its own length, read after the loop at `acc[slot L(p)]` (an
affine row, or a row of a gather table when the lengths follow no affine rule).  Laid side
by side for one GEMM, the blocks of the steps a point does not keep must be zeros: the
placing stages select through a constant mask `live[keys, v] = v < L(p)`, and the readers of
`acc[slot L(p)]` read the GEMM's slot, the last one, instead (a gather through a rewritten
table).  Lengths come from evaluating the readers' rows over every point of the sum's
enclosing loops (each point must read its own state), so they are exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tile_affine import evaluate_affine
from .tile_expr import Region


@dataclass(frozen=True)
class Kept:
    """Per point of the enclosing loops (flattened, outermost first) the steps it keeps (-1:
    the point is never read), and the gather tables to redirect to the last slot: {old table:
    new table values}."""

    lengths: np.ndarray
    tables: dict


def point_grid(names, ranges) -> dict[str, np.ndarray]:
    """Every point of the box of `names` (outermost first), flattened in row-major order."""
    spans = [np.arange(ranges[n][0], ranges[n][1] + 1) for n in names]
    mesh = np.meshgrid(*spans, indexing="ij") if spans else []
    return {n: m.reshape(-1) for n, m in zip(names, mesh)}


def kept_steps(cur: Region, v: str, steps: int, plain: list[Region], gathers: list, grid, size: int,
               buffers: dict) -> Kept | None:
    """The steps each point keeps, from where the sum is read after the loop: `plain` reads
    (one region, the same for all) or `gathers` (ops reading the whole buffer through const
    tables: the data of `buffers[name]`).  None where a read is not the state of a point at
    one of its slots.  The caller makes sure distinct (point, slot) pairs have distinct rows."""
    coeff = dict(cur.start[0].terms).get(v, 0)
    init = evaluate_affine(cur.start[0].substitute({v: 0}), grid, size)
    if init is None or coeff <= 0:
        return None
    lengths = np.full(size, -1, dtype=np.int64)  # -1: a point nobody reads (it keeps nothing)

    def own_slots(entries):  # the slot of each point's own state a read row is, and whether it is one
        diff = entries - init
        slots = diff // coeff
        return slots, (diff % coeff == 0) & (slots >= 0) & (slots <= steps)

    if plain:
        if any(r != plain[0] for r in plain) or plain[0].start[1:] != cur.start[1:] or plain[0].size != cur.size:
            return None
        got = evaluate_affine(plain[0].start[0], grid, size)
        if got is None:
            return None
        slots, own = own_slots(got)
        if not own.all():
            return None  # every point must read its own state
        return Kept(slots, {})
    tables = {}
    for op in gathers:
        data = buffers[op.index.buffer].data  # None: a computed table, not a const
        if data is None or op.index.size != (1,) or op.axis != 0:
            return None
        table = data.value
        new = tables.get(op.index.buffer, np.array(table, dtype=np.int64, copy=True))
        at = evaluate_affine(op.index.start[0], grid, size)
        if at is None:
            return None
        entries = np.asarray(table, dtype=np.int64)[at]
        slots, own = own_slots(entries)
        # each point reads its own state; a point without a value (padding of a ragged map)
        # reads one past the end (zeros) and keeps nothing
        padding = entries == op.src.shape[op.axis]
        own &= ~padding
        if np.any(~own & ~padding) or np.any(own & (lengths >= 0) & (lengths != slots)):
            return None
        lengths = np.where(own, slots, lengths)
        new[at[own]] = init[own] + coeff * steps
        tables[op.index.buffer] = new
    return Kept(lengths, tables)


def live_mask(lengths: np.ndarray, keys_row: np.ndarray, rows: int, steps: int) -> np.ndarray | None:
    """`live[row, v] = v < L(p)` for the points p whose operand block is at `row` (points
    nobody reads, `L = -1`, do not count); None when points sharing a block keep different
    steps (zeroing it for one would zero it for all)."""
    read = lengths >= 0
    lo = np.full(rows, np.iinfo(np.int64).max)
    hi = np.full(rows, -1)
    np.minimum.at(lo, keys_row[read], lengths[read])
    np.maximum.at(hi, keys_row[read], lengths[read])
    used = hi >= 0
    if np.any(lo[used] != hi[used]):
        return None
    return np.arange(steps)[None, :] < np.where(used, hi, 0)[:, None]
