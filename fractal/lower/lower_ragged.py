"""Ragged batches without padding: sort a map's points by length, mark the live prefix.

A `map` over sequences of different lengths (a ragged batch) is lowered over the longest
length: a scan inside it has `len(longest)` steps, and in step `s` only the sequences longer
than `s` are live.  Padding every sequence to the longest (masking) computes the dead points
too.  PyTorch's packed sequences avoid that by *sorting* the batch by length, so that the
live sequences of a step are a prefix of the batch; this module does the same, as the
paper's data reordering for ragged data:

* `length_order`: the map's points are the list's elements in order of decreasing length
  (stable; the lowering un-permutes the map's results, so this is invisible to the program).
  The rows of every value inside the map follow this order, so the live points of a step are
  consecutive rows.
* `active_prefix`: for an aggregate (scan/fold/reduce) inside such a map, the `Active` hint of
  its loop: step `s` has live points `m < n(s)` (several map dims: their row-order position,
  `j + 2*m < n(s)`), `n` a step function written as a quasi-affine index
  (`8*min(1, max(0, 40 - s)) + ...`, one term per group of lengths).  At most `MAX_GROUPS`
  groups keep the text short: lengths are merged into groups (each padded to its longest)
  where that pads the fewest points.  The `bucket` pass shrinks the stages of
  such a loop to the prefix, hoisting those it batches out of the loop (where the policy finds
  it worth it); the wavefront drops the hint and computes the padded points, which is always
  correct.

For a batch of lengths `[5, 3, 3, 2]` a scan's loop prints as
`for s in 0:5 sequential host active m < min(1, max(0, -s + 2)) + 2*min(1, max(0, -s + 3)) + 1`
(the sequence of 5 is live at every step, the two of 3 while s < 3, the one of 2 while s < 2).
"""

from __future__ import annotations

import numpy as np

from .lower_values import Domain
from .tile_affine import Aff, aff, amax, amin
from .tile_ir import Active

MAX_GROUPS = 8


def length_order(lists, outer: Domain):
    """Per outer point, the order of the map's points (longest element first), from the first
    list of lists; None when every point is already in that order (regular batches)."""
    key = next((xs for xs in lists if any(x is not None and x.depth >= 2 for x in xs.flat)), None)
    if key is None:
        return None
    order, moved = np.empty(outer.extents, dtype=object), False
    for pt in np.ndindex(*outer.extents):
        x = key[pt]
        if x is None:
            continue
        n = np.array([len(x[i]) for i in range(len(x))], dtype=np.int64)
        order[pt] = np.argsort(-n, kind="stable")
        moved |= bool(np.any(order[pt] != np.arange(len(n))))
    return order if moved else None


def permuted(xs: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Each point's list with its elements in `order`."""
    out = xs.copy()
    for pt, x in np.ndenumerate(xs):
        if x is not None:
            out[pt] = x.take(order[pt])
    return out


def unpermute(order, pt, n: int) -> np.ndarray:
    """The map point holding each of the `n` elements of the list at `pt` (in order when not sorted)."""
    return np.arange(n) if order is None or order[pt] is None else np.argsort(order[pt], kind="stable")


def active_prefix(inner: Domain) -> Active | None:
    """The live points of an aggregate's steps (its variable is `inner`'s last dim): the map
    points in row order (`point`, e.g. `j + 2*m` for a map over 2 groups inside a map over
    the batch) below one past the last valid point of the step, over every value of the
    enclosing sequential dims.  None when no step leaves a point out."""
    valid = inner.valid
    if valid.size == 0 or not inner.extents:
        return None
    kinds = inner.parallel or (False,) * len(inner.vars)
    par = [k for k in inner.order if kinds[k] and k < len(inner.vars) - 1]  # row order, outermost first
    if not par:
        return None
    weights, w = {}, 1
    for k in reversed(par):
        weights[k], w = w, w * inner.extents[k]
    # per step, the last valid point in row order: the par axes (row order, outermost first)
    # flattened, the other dims any()-ed away; on bools (a query x key domain has ~10^8 points)
    steps = len(inner.vars) - 1
    others = tuple(d for d in range(steps) if d not in par)
    live = np.transpose(valid.any(axis=others) if others else valid, [sorted(par).index(k) for k in par] + [len(par)])
    last = _last_in_row_order(live)
    ends = np.maximum.accumulate((last + 1)[::-1])[::-1]  # non-increasing: a later step never needs more
    if ends.min(initial=w) >= w:
        return None
    point = sum((aff(inner.vars[k]) * weights[k] for k in par), aff(0))
    return Active(point, step_bound(ends, inner.vars[-1]))


def _last_in_row_order(live: np.ndarray) -> np.ndarray:
    """Per step (last axis), the row-order position of the last True over the other axes
    (-1: none): axis by axis from the outermost, each time keeping only the slice holding it."""
    steps = live.shape[-1]
    position, found, cur = np.zeros(steps, dtype=np.int64), np.ones(steps, dtype=bool), live
    for extent in live.shape[:-1]:
        here = cur.any(axis=tuple(range(1, cur.ndim - 1))) if cur.ndim > 2 else cur  # [extent, steps]
        found &= here.any(axis=0)
        index = extent - 1 - np.argmax(here[::-1], axis=0)
        position = position * extent + index
        cur = np.take_along_axis(cur, index.reshape((1,) * (cur.ndim - 1) + (steps,)), axis=0)[0]
    return np.where(found, position, -1)


def step_bound(counts: np.ndarray, var: str) -> Aff:
    """An index over `var` at least `counts[s]` at every step `s` (a non-increasing count of
    live points), exact when there are at most `MAX_GROUPS` distinct lengths."""
    steps = len(counts)
    # the length of each live point m (how many steps have more than m live points)
    lengths = (np.asarray(counts)[None, :] > np.arange(int(counts.max(initial=0)))[:, None]).sum(axis=1)
    groups = [[int(length), int(size)] for length, size in zip(*np.unique(lengths, return_counts=True))][::-1]
    while len(groups) > MAX_GROUPS:  # merge the neighbours whose merge pads the fewest steps
        j = min(range(len(groups) - 1), key=lambda i: groups[i + 1][1] * (groups[i][0] - groups[i + 1][0]))
        groups[j][1] += groups.pop(j + 1)[1]
    bound = aff(0)
    for length, size in groups:  # `size` points live while var < length
        bound = bound + (size if length >= steps else size * amin(1, amax(0, length - aff(var))))
    return bound
