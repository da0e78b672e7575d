"""Exact dependence distances between two accesses of the tile IR.

Rows of the lowering's buffers are affine in the loop and stage variables with the same
coefficients at every access of a buffer (the flattened domain), so two accesses touch the
same row for the instance differences `delta` with `sum c * delta = k_x - k_y`; the
coefficients are (nearly) a mixed radix, so a search from the largest coefficient down, each
step bounded by what the smaller terms can still make up, finds every solution in a few
steps.  Used by the wavefront pass (are all distances forward along the diagonal?) and by
coarsening (do two stages only meet at the same point?).
"""

from __future__ import annotations

from .tile_affine import Aff


def _terms(a: Aff):
    if any(not isinstance(atom, str) for atom, _ in a.terms):
        return None
    return dict(a.terms)


def row_distances(x, y, ranges, fixed=()) -> list[dict] | None:
    """The differences (y's instance - x's) of the variables for which the single rows of
    regions x and y coincide, within the variables' ranges (variables in `fixed` are the same
    for both: the enclosing loops of one stage); None when not decidable here."""
    if x.size[0] is not None or y.size[0] is not None or x.start[1:] != y.start[1:] and \
            any(s.vars() for s in x.start[1:] + y.start[1:]):
        return None
    cx, cy = _terms(x.start[0]), _terms(y.start[0])
    if cx is None or cy is None or cx != cy:
        return None
    names = sorted((v for v in cx if v not in fixed), key=lambda v: -abs(cx[v]))
    if any(v not in ranges for v in names):
        return None
    target = x.start[0].const - y.start[0].const  # sum c * delta must equal this
    spans = [ranges[v][1] - ranges[v][0] for v in names]
    rest = [sum(abs(cx[u]) * n for u, n in zip(names[i + 1:], spans[i + 1:])) for i in range(len(names))]
    sols = []

    def search(i, left, acc):
        if len(sols) > 64:
            return
        if i == len(names):
            if left == 0:
                sols.append(dict(acc))
            return
        c, n = cx[names[i]], spans[i]
        # c * delta lies within [left - rest, left + rest]: what the smaller terms can make up
        ends = sorted(((left - rest[i]), (left + rest[i])), key=lambda e: e / c)
        lo, hi = -((-ends[0]) // c), ends[1] // c
        for dlt in range(max(lo, -n), min(hi, n) + 1):
            acc[names[i]] = dlt
            search(i + 1, left - c * dlt, acc)
        acc.pop(names[i], None)

    search(0, target, {})
    if len(sols) > 64:
        return None
    for s in sols:  # variables the rows do not depend on may differ arbitrarily
        for v in set(ranges) - set(names):
            s.setdefault(v, 0 if v in fixed else None)
    return sols
