"""Each PE's instruction stream, derived from a `MeshProgram`: what an asynchronous executor runs.

Per superstep a PE runs its allocs, its computes, an `Isend` per message it sends (the
transfers expanded to `Send`s by `collectives.expand`, in program order), a `Recv` per message
it receives, a `WaitSends` (when it sent anything), and its frees; before the first superstep
its allocs and loads.  Posting every send (which copies its data) before any receive keeps the
superstep's rule "all transfer reads before any write" on each PE without a barrier, and a
receive into a buffer the PE also sends from in that superstep is marked `staged`: it needs a
receive buffer; the copies of one multicast line share a `multicast` key (the engine loads each
link of the line once).  The 2x2 Cannon product of `mesh_ir`'s docstring gives PE (0,1)::

    Begin('load') Allocate(ta) Allocate(tb) Allocate(tc) Load Load
    Begin('step 0') Compute Isend(ta to (0,0)) Isend(tb to (1,1)) Recv(ta from (0,0), staged)
        Recv(tb from (1,1), staged) WaitSends
    Begin('step 1') Compute
"""

from __future__ import annotations

from typing import NamedTuple

from .collectives import expand
from .mesh_ir import LocalBuffer, MeshProgram, Multicast, Send


class Begin(NamedTuple):      # a superstep starts (names where SRAM peaks)
    label: str


class Allocate(NamedTuple):
    buffer: LocalBuffer


class Release(NamedTuple):
    buffer: LocalBuffer


class Isend(NamedTuple):      # post a message: its data is copied now
    send: Send
    multicast: tuple | None = None   # the copies of one multicast line share this key: a link carries them once


class Recv(NamedTuple):       # block until the message arrives, then write it
    send: Send
    staged: bool = False      # the PE also sends from this buffer in this superstep: a receive buffer counts


class WaitSends(NamedTuple):  # block until the channels have taken every message this PE posted
    pass


def messages_by_step(program: MeshProgram) -> list[tuple[dict, dict]]:
    """Per superstep, its transfers' messages in program order: `Isend`s by sender, `Send`s by receiver."""
    out, expanded = [], {}   # steps often repeat a transfer (a rotation): expand it once
    for i, step in enumerate(program.steps):
        by_src, by_dst = {}, {}
        for j, t in enumerate(step.transfers):
            if t not in expanded:
                expanded[t] = expand(t)
            for send in expanded[t]:
                group = (i, j, send.src) if isinstance(t, Multicast) else None
                by_src.setdefault(send.src, []).append(Isend(send, group))
                by_dst.setdefault(send.dst, []).append(send)
        out.append((by_src, by_dst))
    return out


def pe_stream(program: MeshProgram, pe, messages):
    """The instructions of the PE at `pe` (module docstring); `messages` is `messages_by_step(program)`."""
    def buffers(nodes, kind):
        return [kind(program.buffer(b)) for node in nodes if pe in node.pes for b in node.buffers]
    yield Begin("load")
    yield from buffers(program.allocs, Allocate)
    yield from (ld for ld in program.loads if pe in ld.pes)
    for i, step in enumerate(program.steps):
        yield Begin(step.label or f"step {i}")
        yield from buffers(step.allocs, Allocate)
        yield from (c for c in step.computes if pe in c.pes)
        mine, theirs = messages[i][0].get(pe, ()), messages[i][1].get(pe, ())
        yield from mine
        sources = {m.send.src_region.buffer for m in mine}
        yield from (Recv(s, s.dst_region.buffer in sources) for s in theirs)
        if mine:
            yield WaitSends()
        yield from buffers(step.frees, Release)
