"""The wait-for graph of a deadlocked run, and the cycle a `DeadlockError` prints.

Each blocked PE waits for exactly one other PE (the sender of the message it is receiving, or
the receiver that has not taken a message it sent), so the graph is a function: following it
from a blocked PE ends in a cycle or at a PE that has finished (a receive nobody sends)::

    >>> edges = {(0, 0): ((0, 1), 3, "recv"), (0, 1): ((0, 0), 4, "recv")}
    >>> deadlock(edges).message
    'deadlock: 2 PEs are blocked and no message is on its way; PE (0,0) waits for (0,1) on channel 3 <- PE (0,1) waits for (0,0) on channel 4'
"""

from __future__ import annotations

from .errors import DeadlockError

WHAT = {"recv": "", "send": " to receive"}   # a blocked receive / a send nobody takes (bounded channels)


def _pe(pe) -> str:
    return f"({pe[0]},{pe[1]})"


def describe(pe, edge) -> str:
    waits_for, channel, kind = edge
    return f"PE {_pe(pe)} waits for {_pe(waits_for)}{WHAT[kind]} on channel {channel}"


def _walk(start, edges) -> tuple[list, bool]:
    """The PEs from `start` along the waits, and whether they close a cycle (then the list is the cycle)."""
    path, seen = [], {}
    pe = start
    while pe in edges and pe not in seen:
        seen[pe] = len(path)
        path.append(pe)
        pe = edges[pe][0]
    if pe in seen:
        cycle = path[seen[pe]:]
        first = cycle.index(min(cycle))   # the same cycle prints the same way wherever the walk began
        return cycle[first:] + cycle[:first], True
    return path, False


def deadlock(edges: dict) -> DeadlockError:
    """The error for blocked PEs `edges` (pe -> (waits_for, channel, "recv" | "send")): one cycle of
    the wait-for graph, found from the first blocked PE that leads to one."""
    head = f"deadlock: {len(edges)} PE{'s' * (len(edges) != 1)} {'are' if len(edges) != 1 else 'is'} " \
           "blocked and no message is on its way; "
    for start in sorted(edges):
        pes, is_cycle = _walk(start, edges)
        if is_cycle:
            cycle = tuple((pe, edges[pe][0], edges[pe][1]) for pe in pes)
            return DeadlockError(head + " <- ".join(describe(pe, edges[pe]) for pe in pes), cycle=cycle, chain=cycle)
    pes, _ = _walk(min(edges), edges)
    chain = tuple((pe, edges[pe][0], edges[pe][1]) for pe in pes)
    return DeadlockError(head + " <- ".join(describe(pe, edges[pe]) for pe in pes)
                         + f"; {_pe(chain[-1][1])} has finished", chain=chain)
