"""Which list elements are views: an affine row index fitted to the rows a combinator's points read.

Lowering knows, per point of a combinator's domain, the buffer row each list element lives in.
Where those rows are an affine function of the point (`3 + 8*i + j`, on the valid points of a
ragged box), the element is a strided view of the buffer; otherwise it is gathered through a
table.  The domains get large (a query x key map over a long sequence has ~10^8 points), so
the fit is solved on a sample of the points and checked on all of them over the box, in slabs,
without listing them::

    >>> i, j = np.indices((6, 8)); valid = j < np.array([8, 5, 8, 2, 7, 1])[:, None]
    >>> str(affine_fit(np.where(valid, 3 + 8 * i + j, 999), valid, ("i", "j"), 64))
    '8*i + j + 3'
"""

from __future__ import annotations

import numpy as np

from .tile_affine import Aff, aff


def affine_fit(rows: np.ndarray, valid: np.ndarray, names: tuple[str, ...], n_rows: int,
               offset: int = 0) -> Aff | None:
    """`rows[p] - offset == c0 + sum c_k p_k` on every valid point (other points' entries are
    ignored), staying inside 0..n_rows-1 over the whole box (padded points are read too)?  Then
    that affine index, else None.  (`offset`: gids of one buffer fit as they are, no masked copy.)

    The fit is solved on a sample of the valid points and checked on all of them over the box,
    without listing them (a query x key domain of a long sequence has ~10^8 points)."""
    if not valid.any():
        return aff(0)
    if valid.ndim == 0:
        return aff(int(rows) - offset) if 0 <= int(rows) - offset < n_rows else None
    present = [np.flatnonzero(valid.any(axis=tuple(a for a in range(valid.ndim) if a != k))) for k in range(valid.ndim)]
    vary = np.array([len(p) > 1 for p in present], dtype=bool)  # other axes' coefficients are 0
    pts = _sample_points(valid, present)
    vals = rows[tuple(pts.T)].astype(np.int64)
    coef = _fit(pts, vals, vary)
    if not _fits_box(coef, rows, valid):
        if _spans(pts, vary):  # the sample determines the only candidate: no affine index exists
            return None
        pts = np.argwhere(valid)  # a degenerate sample (rare): fit on every point
        coef = _fit(pts, rows[valid].astype(np.int64), vary)
        if not _fits_box(coef, rows, valid):
            return None
    coef[0] -= offset
    lo = coef[0] + sum(min(0, c * (n - 1)) for c, n in zip(coef[1:], rows.shape))
    hi = coef[0] + sum(max(0, c * (n - 1)) for c, n in zip(coef[1:], rows.shape))
    if lo < 0 or hi >= n_rows:
        return None
    return sum((aff(v) * int(c) for v, c in zip(names, coef[1:])), aff(int(coef[0])))


def _sample_points(valid: np.ndarray, present, n: int = 64) -> np.ndarray:
    """Coordinates (points x dims) of up to ~n valid points spread over the box (a fixed random
    draw: deterministic) plus, per axis, a valid point at its least and greatest coordinate
    (`present[k]`: the coordinates along axis k that valid points have)."""
    shape = valid.shape
    draw = np.random.default_rng(0).integers(0, valid.size, 8 * n)
    flat = list(draw[valid.reshape(-1)[draw]][:n])
    for k in range(valid.ndim):
        for c in (present[k][0], present[k][-1]):
            within = np.flatnonzero(np.take(valid, c, axis=k))[0]
            rest = np.unravel_index(within, shape[:k] + shape[k + 1:])
            flat.append(np.ravel_multi_index(rest[:k] + (c,) + rest[k:], shape))
    return np.array(np.unravel_index(np.unique(np.asarray(flat, dtype=np.int64)), shape)).T.reshape(-1, valid.ndim)


def _fit(pts: np.ndarray, vals: np.ndarray, vary: np.ndarray) -> np.ndarray:
    """Integer (c0, c_1..c_d) of the least-squares affine fit of `vals` over `pts`; an axis not
    in `vary` (every valid point has the same coordinate there) gets 0 (any value fits: 0 is
    the one that does not trade off against c0)."""
    a = np.concatenate([np.ones((len(pts), 1)), pts[:, vary]], axis=1)
    fit = np.rint(np.linalg.lstsq(a, vals.astype(np.float64), rcond=None)[0]).astype(np.int64)
    coef = np.zeros(1 + pts.shape[1], dtype=np.int64)
    coef[0], coef[1:][vary] = fit[0], fit[1:]
    return coef


def _spans(pts: np.ndarray, vary: np.ndarray) -> bool:
    """Whether the points pin down an affine function of the varying axes (full column rank)."""
    a = np.concatenate([np.ones((len(pts), 1)), pts[:, vary]], axis=1)
    return np.linalg.matrix_rank(a) == a.shape[1]


def _fits_box(coef: np.ndarray, rows: np.ndarray, valid: np.ndarray) -> bool:
    """`rows == c0 + sum c_k p_k` at every valid point, evaluated over the box in slabs of the
    first axis (about 2^20 points each) rather than on a list of the points."""
    if rows.ndim == 0:
        return not valid or int(rows) == coef[0]
    inner = np.full(rows.shape[1:], coef[0], dtype=np.int64)
    for k, c in enumerate(coef[2:]):
        inner += c * np.arange(rows.shape[k + 1], dtype=np.int64).reshape((-1,) + (1,) * (rows.ndim - k - 2))
    step = max(1, (1 << 20) // max(inner.size, 1))
    for lo in range(0, rows.shape[0], step):
        first = np.arange(lo, min(lo + step, rows.shape[0]), dtype=np.int64).reshape((-1,) + (1,) * (rows.ndim - 1))
        if np.any((inner + coef[1] * first != rows[lo:lo + step]) & valid[lo:lo + step]):
            return False
    return True
