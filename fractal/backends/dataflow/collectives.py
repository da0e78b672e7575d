"""Collectives as point-to-point messages: `expand(transfer)` gives a `Shift`'s or
`Multicast`'s `Send`s, with regions bound to each sender's and receiver's coordinates (and a
`Sends` table's rows as `Send`s).

Executors that cannot run a collective whole (the event engine, MPI) run its sends; the
BSP engine runs a shift as one roll of a grid axis and charges the same links, and the cost
of a collective is the cost of its sends (`fractal.backends.dataflow.cost`).

A multicast is sent as messages from the line's root to every other PE of the line (the
root's own copy is local).  The engines charge its links as a router that forwards each flit
once would: every link of the line from the root outwards carries the bytes once (a crossbar:
the root injects them once), while bytes and messages count every copy.
"""

from __future__ import annotations

from fractal.lower.tile_ir import Region

from .mesh_ir import Multicast, Send, Sends, Shift
from .routes import ring_neighbour


def bind(r: Region, pe: tuple[int, int]) -> Region:
    """`r` with the PE's coordinates substituted for `pr` and `pc`."""
    env = {"pr": pe[0], "pc": pe[1]}
    return Region(r.buffer, tuple(a.substitute(env) for a in r.start), r.size, r.stride)


def _at(template: Region, starts) -> Region:
    return Region(template.buffer, starts, template.size, template.stride)


def shift_pairs(t: Shift) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(sender, receiver) of every message of a shift (a ring of one PE sends to itself)."""
    pairs = []
    for r, c in t.pes:
        if t.axis == "row":
            n = t.pes.c1 - t.pes.c0
            pairs.append(((r, c), (r, t.pes.c0 + ring_neighbour(c - t.pes.c0, n, t.ring, t.by))))
        else:
            n = t.pes.r1 - t.pes.r0
            pairs.append(((r, c), (t.pes.r0 + ring_neighbour(r - t.pes.r0, n, t.ring, t.by), c)))
    return pairs


def multicast_pairs(t: Multicast) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(root, receiver) of every copy of a multicast, the root's own copy included."""
    if t.axis == "all":
        width = t.pes.c1 - t.pes.c0
        root = (t.pes.r0 + t.root // width, t.pes.c0 + t.root % width)
        return [(root, pe) for pe in t.pes]
    if t.axis == "row":
        return [((r, t.pes.c0 + t.root), (r, c)) for r, c in t.pes]
    return [((t.pes.r0 + t.root, c), (r, c)) for r, c in t.pes]


def expand(t) -> list[Send]:
    """The point-to-point messages of a transfer (a `Send` is its own)."""
    if isinstance(t, Send):
        return [t]
    if isinstance(t, Sends):
        return [Send(r[:2], r[2:], _at(t.src, a), _at(t.dst, b), t.channel)
                for r, a, b in zip(t.routes, t.src_starts, t.dst_starts)]
    pairs = shift_pairs(t) if isinstance(t, Shift) else multicast_pairs(t) if isinstance(t, Multicast) else None
    if pairs is None:
        raise TypeError(f"not a transfer: {type(t).__name__}")
    return [Send(src, dst, bind(t.src, src), bind(t.dst, dst), t.channel) for src, dst in pairs]
