"""Wavefronts: a unimodular skew that turns several carried dims into one sequential one.

Given distance vectors `D` all lexicographically positive and carried by at
least two dims, find a hyperplane `h` (non-negative integers) with `h . d >= 1`
for every `d` in `D` that minimises the number of sequential steps over the
(box) iteration domain; every point of one step `h . x = c` is then
independent.  The matrix completes `h` to a unimodular one: its first row is
`h`, the others unit vectors, so `new = matrix @ old` with `new[0]` the step.

For the stacked LSTM `(fold layers, map batch, scan time)` with
`D = {(1,0,0), (0,0,1)}` this finds `h = (1,0,1)`: `D + L - 1` steps of up to
`B * min(D, L)` parallel cells, the schedule the paper's kernels use.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from .dependences import carrying_dim


@dataclass(frozen=True)
class Wavefront:
    matrix: tuple[tuple[int, ...], ...]
    steps: int
    max_parallelism: int

    @property
    def hyperplane(self) -> tuple[int, ...]:
        return self.matrix[0]

    def describe(self, names) -> str:
        terms = [(f"{c}*{n}" if c != 1 else n) for c, n in zip(self.hyperplane, names) if c]
        return " + ".join(terms)


MAX_COEFFICIENT = 3


def find_wavefront(vectors, extents) -> Wavefront | None:
    """The best hyperplane schedule for these dependences, or None when none is needed/possible."""
    vectors = [v for v in vectors if any(v)]
    carriers = sorted({carrying_dim(v) for v in vectors})
    if len(carriers) < 2 or any(v[carrying_dim(v)] < 0 for v in vectors):
        return None
    involved = sorted({k for v in vectors for k, x in enumerate(v) if x})
    best = None
    for coeffs in itertools.product(range(MAX_COEFFICIENT + 1), repeat=len(involved)):
        h = [0] * len(extents)
        for k, c in zip(involved, coeffs):
            h[k] = c
        if 1 not in h or not all(np.dot(h, v) >= 1 for v in vectors):
            continue
        steps = 1 + sum(c * (e - 1) for c, e in zip(h, extents) if e > 0)
        key = (steps, sum(h), [-c for c in h])
        if best is None or key < best[0]:
            best = (key, tuple(h))
    if best is None:
        return None
    h = best[1]
    pivot = max(k for k, c in enumerate(h) if c == 1)  # unimodular: drop the unit row of a coefficient-1 dim
    rows = [h] + [tuple(int(j == k) for j in range(len(h))) for k in range(len(h)) if k != pivot]
    return Wavefront(tuple(rows), best[0][0], max_points_per_step(h, extents))


def max_points_per_step(h, extents) -> int:
    """The largest number of box points on one hyperplane h . x = c (a product of indicator polynomials)."""
    counts = np.ones(1, dtype=np.int64)
    scale = 1
    for c, e in zip(h, extents):
        if e <= 0:
            return 0
        if c == 0:
            scale *= e
            continue
        poly = np.zeros(c * (e - 1) + 1, dtype=np.int64)
        poly[::c] = 1
        counts = np.convolve(counts, poly)
    return int(counts.max()) * scale
