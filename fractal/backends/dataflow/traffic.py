"""Bytes on links, for many messages at once: the BSP engine's exchange accounting.

`LinkLoads` keeps, per direction, the bytes each directed link carried: `east[r, c]` is the
link from (r, c) to (r, c + 1), `west[r, c]` the one back from (r, c + 1) to (r, c), `south[r, c]`
from (r, c) to (r + 1, c) and `north[r, c]` back (a torus has the wrap-around links too, column
`cols - 1` and row `rows - 1`).  `add(src_r, src_c, dst_r, dst_c, nbytes)` routes a batch of
messages along their dimension-ordered routes (`fractal.backends.dataflow.routes`: the same
links, computed with difference arrays instead of walked) and adds their bytes.
"""

from __future__ import annotations

import numpy as np

from .routes import Link
from .spec import MeshSpec


def _segments(a, b, size, torus):
    """Per message, the forward (+1) or backward (-1) run of links from coordinate a to b, as
    (direction, first link, count) arrays; a backward run's link x is the one from x + 1 to x."""
    if torus:
        forward = (b - a) % size
        fwd = forward <= size - forward
        count = np.where(fwd, forward, size - forward)
        first = np.where(fwd, a, (b) % size)
    else:
        fwd = b >= a
        count = np.abs(b - a)
        first = np.minimum(a, b)
    return np.where(fwd, 1, -1), first, count


def _accumulate(out_fwd, out_bwd, line, direction, first, count, nbytes, size, torus):
    """Add nbytes on `count` links from `first` of each message's line (row or column index)."""
    for out, sign in ((out_fwd, 1), (out_bwd, -1)):
        pick = (direction == sign) & (count > 0)
        if not pick.any():
            continue
        ln, lo, n, w = line[pick], first[pick], count[pick], nbytes[pick]
        width = out.shape[1]
        diff = np.zeros((out.shape[0], width + 1), dtype=np.float64)
        hi = lo + n
        if torus:
            wraps = hi > width
            np.add.at(diff, (ln, lo), w)
            np.add.at(diff, (ln, np.where(wraps, width, hi)), -w)
            np.add.at(diff, (ln[wraps], np.zeros(int(wraps.sum()), dtype=int)), w[wraps])
            np.add.at(diff, (ln[wraps], hi[wraps] - width), -w[wraps])
        else:
            np.add.at(diff, (ln, lo), w)
            np.add.at(diff, (ln, hi), -w)
        out += np.cumsum(diff, axis=1)[:, :width]


class LinkLoads:
    """Bytes per directed link of a mesh or torus (module docstring)."""

    def __init__(self, spec: MeshSpec):
        self.spec = spec
        torus = spec.kind == "torus"
        R, C = spec.rows, spec.cols
        self.east = np.zeros((R, C if torus else max(C - 1, 0)))
        self.west = np.zeros_like(self.east)
        self.south = np.zeros((R if torus else max(R - 1, 0), C))
        self.north = np.zeros_like(self.south)

    def add(self, src_r, src_c, dst_r, dst_c, nbytes) -> None:
        if self.spec.kind == "crossbar":
            return
        src_r, src_c, dst_r, dst_c = (np.asarray(x, dtype=np.int64) for x in (src_r, src_c, dst_r, dst_c))
        nbytes = np.broadcast_to(np.asarray(nbytes, dtype=np.float64), src_r.shape)
        torus = self.spec.kind == "torus"
        R, C = self.spec.rows, self.spec.cols
        row_first = self.spec.routing == "xy"
        turn_r = src_r if row_first else dst_r        # the row the horizontal leg runs in
        turn_c = dst_c if row_first else src_c        # the column the vertical leg runs in
        d, first, count = _segments(src_c, dst_c, C, torus)
        _accumulate(self.east, self.west, turn_r, d, first, count, nbytes, C, torus)
        d, first, count = _segments(src_r, dst_r, R, torus)
        _accumulate(self.south.T, self.north.T, turn_c, d, first, count, nbytes, R, torus)

    def __iadd__(self, other: "LinkLoads") -> "LinkLoads":
        for name in ("east", "west", "south", "north"):
            getattr(self, name).__iadd__(getattr(other, name))
        return self

    def busiest(self) -> float:
        return max((float(a.max()) for a in (self.east, self.west, self.south, self.north) if a.size), default=0.0)

    def as_dict(self) -> dict[Link, float]:
        """The links that carried anything: ((r, c), (r2, c2)) -> bytes."""
        R, C = self.spec.rows, self.spec.cols
        out = {}
        steps = (("east", 0, 1), ("west", 0, 1), ("south", 1, 0), ("north", 1, 0))
        for name, dr, dc in steps:
            a = getattr(self, name)
            for r, c in zip(*np.nonzero(a)):
                near, far = (int(r), int(c)), ((int(r) + dr) % R, (int(c) + dc) % C)
                out[(near, far) if name in ("east", "south") else (far, near)] = float(a[r, c])
        return out
