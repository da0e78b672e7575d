"""Where messages go: ring embeddings, dimension-ordered routes, hop counts.

A message from PE (r0, c0) to (r1, c1) on a mesh follows the XY route (along its row to
column c1, then along that column; `routing="yx"` the other way round): deadlock-free at the
network level and the same on every run.  On a torus each leg takes the shorter way round.
A crossbar (the IPU's exchange) has no links: a message costs its source's injection and its
destination's ejection, one hop of latency whatever the distance.

A logical ring over the n PEs of a line is embedded `"wrap"` (position i on PE i: one hop per
step except the long way back from n-1 to 0) or `"interleaved"` (0, 2, 4, ..., 5, 3, 1: every
step at most two hops, WaferLLM's MeshGEMM)::

    >>> ring_order(6, "interleaved")
    (0, 2, 4, 5, 3, 1)
    >>> max_ring_hops(6, "wrap"), max_ring_hops(6, "interleaved")
    (5, 2)
"""

from __future__ import annotations

from functools import lru_cache

from .spec import MeshSpec

Link = tuple[tuple[int, int], tuple[int, int]]   # a directed link between neighbouring PEs


@lru_cache(maxsize=None)
def ring_order(n: int, ring: str) -> tuple[int, ...]:
    """The physical offsets of a ring's logical positions 0..n-1."""
    if ring == "wrap":
        return tuple(range(n))
    if ring == "interleaved":
        return tuple(range(0, n, 2)) + tuple(range(n - 1 - (n % 2 == 1), 0, -2))
    raise ValueError(f"unknown ring embedding {ring!r}")


@lru_cache(maxsize=None)
def ring_position(n: int, ring: str) -> tuple[int, ...]:
    """The inverse of `ring_order`: each physical offset's logical position."""
    out = [0] * n
    for logical, physical in enumerate(ring_order(n, ring)):
        out[physical] = logical
    return tuple(out)


def ring_neighbour(offset: int, n: int, ring: str, by: int) -> int:
    """The physical offset `by` logical places after physical `offset` on the ring."""
    return ring_order(n, ring)[(ring_position(n, ring)[offset] + by) % n]


def max_ring_hops(n: int, ring: str) -> int:
    order = ring_order(n, ring)
    return max((abs(order[i] - order[(i + 1) % n]) for i in range(n)), default=0) if n > 1 else 0


def _leg(a: int, b: int, size: int, torus: bool) -> list[int]:
    """The coordinates visited from a to b along one dimension (a excluded)."""
    if a == b:
        return []
    if torus:  # the shorter way round (ties go forward)
        forward = (b - a) % size
        step = 1 if forward <= size - forward else -1
    else:
        step = 1 if b > a else -1
    out, x = [], a
    while x != b:
        x = (x + step) % size if torus else x + step
        out.append(x)
    return out


def route(src: tuple[int, int], dst: tuple[int, int], spec: MeshSpec) -> tuple[Link, ...]:
    """The directed links a message crosses (none on a crossbar or to itself)."""
    if spec.kind == "crossbar" or src == dst:
        return ()
    torus = spec.kind == "torus"
    (r0, c0), (r1, c1) = src, dst
    links, here = [], (r0, c0)
    legs = (("c", c1), ("r", r1)) if spec.routing == "xy" else (("r", r1), ("c", c1))
    for axis, target in legs:
        if axis == "c":
            for c in _leg(here[1], target, spec.cols, torus):
                links.append((here, (here[0], c)))
                here = (here[0], c)
        else:
            for r in _leg(here[0], target, spec.rows, torus):
                links.append((here, (r, here[1])))
                here = (r, here[1])
    return tuple(links)


def hops(src: tuple[int, int], dst: tuple[int, int], spec: MeshSpec) -> int:
    """Links crossed (a crossbar: one exchange hop between distinct PEs)."""
    if src == dst:
        return 0
    if spec.kind == "crossbar":
        return 1
    dr, dc = abs(src[0] - dst[0]), abs(src[1] - dst[1])
    if spec.kind == "torus":
        dr, dc = min(dr, spec.rows - dr), min(dc, spec.cols - dc)
    return dr + dc
