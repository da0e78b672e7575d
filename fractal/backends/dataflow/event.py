"""The event-driven engine: every PE runs its own instruction stream, asynchronously.

Each PE is a Python generator of instructions (`streams.pe_stream` derives them from a `MeshProgram`):
per superstep its allocs, its computes, an `Isend` per message it sends (transfers expanded to
`Send`s, in program order), a `Recv` per message it receives, a `WaitSends`, its frees.  No
barrier joins the PEs: the superstep only orders each PE's own instructions.  A send copies its
region when it is posted and every PE posts its sends before its receives, so a PE reads all
its outgoing data of a superstep before any incoming data overwrites it (a rotation may send and
receive the same buffer).  Host loads run at time 0 and stores after the last PE finishes;
host I/O is charged no cycles.

Time (section 6.2 of dataflow.md): a heap of `(time, pe, seq)` resumes PEs in a deterministic
order.  A compute costs its roofline (`cost.compute_cycles` of its ops' `op_work` summed over
its points, in its first output's dtype).  A message leaves when its channel lets it (below) and
walks its route reserving links: it starts at `max(ready, free_at)` of its links, holds each for
`wire_bytes / link_bytes_per_cycle` and arrives, cut-through, at start + inject latency + hops x
hop latency + wire / bandwidth, so a message alone costs exactly `cost.message_cycles`.  A
crossbar reserves the sender's injection port and the receiver's ejection port instead.  A
message to oneself is a local copy: no cycles, no link, not counted in bytes or messages.  The
copies of a multicast load each link of their line once (a router forwards each flit once):
`bytes_hops` counts them so, and equals the bytes on the links when packets add no headers.

Channels are FIFO per (src, dst, channel).  `capacity=None` lets every message leave at once;
`k >= 1` lets at most k messages of a channel be in flight or queued at the receiver; `0` is a
rendezvous (a message leaves once its receiver has posted the matching receive).  A PE blocks in
`Recv` until its message arrives and in `WaitSends` until its channels have taken all its
messages; both count as communication cycles.  When no PE can move and some have not finished,
`DeadlockError` prints the wait-for graph's cycle (`fractal.backends.dataflow.waitfor`).

SRAM: live bytes per PE grow with allocs and, while a PE receives into a buffer it also sends
from in that superstep, with a receive buffer of the message's size (until the message lands);
the high-water mark and the superstep and buffer that set it go into the `CostSummary`;
exceeding `spec.usable_bytes` raises `SramCapacityError`.  The program's final frees follow the
stores and cannot raise a high-water mark: they are not replayed.
"""

from __future__ import annotations

import heapq
import math
from collections import deque

import numpy as np

from fractal.backends.pointwise import region, stage_points
from fractal.lang.errors import ArgumentError

from .cost import CostSummary, compute_cycles, op_work, wire_bytes
from .errors import SramCapacityError
from .host import host_arrays
from .local import pe_env, read, run_compute, write
from .mesh_ir import Compute, Load, MeshProgram, Send
from .routes import route
from .streams import Allocate, Begin, Isend, Recv, Release, WaitSends, messages_by_step, pe_stream
from .waitfor import deadlock


class _Channel:
    __slots__ = ("queue", "departed", "waiting")

    def __init__(self):
        self.queue = deque()   # posted, not yet received: [data, arrival, send, multicast]; the departed first
        self.departed = 0
        self.waiting = False   # the receiver has posted a receive for the head


class _PE:
    __slots__ = ("id", "at", "gen", "memory", "clock", "label", "live", "blocked", "since", "pending", "staged",
                 "outbox", "done")

    def __init__(self, i, at, gen, memory):
        self.id, self.at, self.gen, self.memory = i, at, gen, memory
        self.clock, self.label, self.live, self.since, self.staged = 0.0, "load", 0, None, 0
        self.blocked = self.pending = None
        self.outbox, self.done = [], False


class EventEngine:
    """One run of instruction streams on `spec` (module docstring); `host` holds the host arrays."""

    def __init__(self, spec, streams: dict, host: dict, capacity: int | None = None):
        if capacity is not None and capacity < 0:
            raise ArgumentError(f"channel capacity must be None or at least 0, not {capacity}")
        self.spec, self.host, self.capacity = spec, host, capacity
        self.pes = {at: _PE(i, at, iter(gen), {}) for i, (at, gen) in enumerate(sorted(streams.items()))}
        self.by_id = [self.pes[at] for at in sorted(self.pes)]
        self.heap, self.seq, self.chans, self.free_at, self.routers = [], 0, {}, {}, {}
        self.costs, self.multicasts = {}, {}
        self.summary = CostSummary(spec, "event")

    def run(self) -> CostSummary:
        for pe in self.by_id:
            self._push(pe, 0.0)
        while self.heap:
            t, i, _ = heapq.heappop(self.heap)
            pe = self.by_id[i]
            pe.clock = t
            if pe.since is not None:
                self.summary.comm_cycles[pe.at] += t - pe.since
                pe.since = None
            if pe.pending is not None:
                self._consume(pe)
            self._advance(pe)
        stuck = [pe for pe in self.by_id if not pe.done]
        if stuck:
            raise deadlock({pe.at: self._waits_for(pe) for pe in stuck})
        s = self.summary
        s.makespan_cycles = max((pe.clock for pe in self.by_id), default=0.0)
        for node, channels in self.routers.items():
            s.router_channels[node] = len(channels)
        return s

    def _push(self, pe, t):
        self.seq += 1
        heapq.heappush(self.heap, (t, pe.id, self.seq))

    def _advance(self, pe):
        for ins in pe.gen:
            if RULES[type(ins)](self, pe, ins):
                return   # the PE waits: on the heap, or blocked until a message moves
        pe.done = True

    # --- instructions: True when the PE gives up the processor -----------------------------------

    def _begin(self, pe, ins):
        pe.label = ins.label

    def _allocate(self, pe, ins):
        self._grow(pe, ins.buffer.nbytes, ins.buffer.name)
        pe.memory[ins.buffer.name] = np.zeros(ins.buffer.shape, ins.buffer.dtype)

    def _release(self, pe, ins):
        pe.live -= ins.buffer.nbytes
        del pe.memory[ins.buffer.name]

    def _load(self, pe, ins):
        write(ins.dst, pe.at, pe.memory, region(ins.src, pe_env(pe.at), self.host))

    def _compute(self, pe, ins):
        run_compute(ins, pe.at, pe.memory)
        cycles = self._compute_cycles(ins, pe)
        self.summary.compute_cycles[pe.at] += cycles
        self._push(pe, pe.clock + cycles)
        return True

    def _isend(self, pe, ins):
        key = self._key(pe, ins.send, "sends", ins.send.src)
        message = [read(ins.send.src_region, pe.at, pe.memory), None, ins.send, ins.multicast]
        self.chans.setdefault(key, _Channel()).queue.append(message)
        pe.outbox.append(message)
        self._pump(key, pe.clock)

    def _recv(self, pe, ins):
        key = self._key(pe, ins.send, "receives", ins.send.dst)
        chan = self.chans.setdefault(key, _Channel())
        if ins.staged:
            pe.staged = math.prod(ins.send.dst_region.shape) * pe.memory[ins.send.dst_region.buffer].itemsize
            self._grow(pe, pe.staged, f"{ins.send.dst_region.buffer} (incoming)")
        chan.waiting = True
        self._pump(key, pe.clock)
        pe.pending, pe.since = (key, ins.send), pe.clock
        if chan.departed == 0:
            pe.blocked = ("recv", key)
            return True
        if chan.queue[0][1] <= pe.clock:
            pe.since = None
            self._consume(pe)
            return False
        self._push(pe, chan.queue[0][1])
        return True

    def _wait_sends(self, pe, ins):
        pe.outbox = [m for m in pe.outbox if m[1] is None]
        if not pe.outbox:
            return False
        pe.blocked, pe.since = ("send",), pe.clock
        return True

    # --- messages -------------------------------------------------------------------------------

    @staticmethod
    def _key(pe, send, verb, own):
        if own != pe.at:
            raise ArgumentError(f"PE ({pe.at[0]},{pe.at[1]}) {verb} a message of ({own[0]},{own[1]}) "
                                f"(from ({send.src[0]},{send.src[1]}) to ({send.dst[0]},{send.dst[1]}))")
        return send.src, send.dst, send.channel

    def _consume(self, pe):
        (key, send), pe.pending = pe.pending, None
        chan = self.chans[key]
        data = chan.queue.popleft()[0]
        chan.departed -= 1
        chan.waiting = False
        write(send.dst_region, pe.at, pe.memory, data)
        pe.live -= pe.staged
        pe.staged = 0
        if send.src != send.dst:
            self.summary.bytes_received += data.nbytes
            self.summary.pe_received[pe.at] += data.nbytes
        self._pump(key, pe.clock)   # a slot of a bounded channel is free again

    def _pump(self, key, t):
        """Let the channel's waiting messages leave at time `t`, as far as its capacity allows."""
        chan, cap = self.chans[key], self.capacity
        while chan.departed < len(chan.queue) and (
                cap is None or chan.departed < cap or (chan.waiting and chan.departed == 0)):
            message = chan.queue[chan.departed]
            message[1] = self._depart(message[2], message[0].nbytes, t, message[3])
            chan.departed += 1
            sender, receiver = self.pes[key[0]], self.pes[key[1]]
            if sender.blocked == ("send",) and all(m[1] is not None for m in sender.outbox):
                sender.blocked, sender.outbox = None, []
                self._push(sender, t)
            if receiver.blocked == ("recv", key) and chan.departed == 1:
                receiver.blocked = None
                self._push(receiver, max(t, message[1]))

    def _depart(self, send: Send, nbytes: int, t: float, multicast=None) -> float:
        """Reserve the message's links (or crossbar ports) from `t`; its arrival time.  The copies of
        a multicast line reserve and load each link (a crossbar: the root's port) once, as a chain."""
        spec, s = self.spec, self.summary
        if send.src == send.dst:
            return t
        crossbar = spec.kind == "crossbar"
        links = () if crossbar else route(send.src, send.dst, spec)
        ports = (("out", send.src), ("in", send.dst)) if crossbar else links
        if multicast is not None:
            carried = self.multicasts.setdefault(multicast, set())
            ports = tuple(p for p in ports if p not in carried)
            carried.update(ports)
        hops = 1 if crossbar else len(links)
        wire = wire_bytes(nbytes, spec)
        busy = wire / spec.link_bytes_per_cycle
        start = max([t] + [self.free_at.get(p, 0.0) for p in ports])
        for p in ports:
            self.free_at[p] = start + busy
        for link in ports if not crossbar else ():
            s.link_bytes[link] = s.link_bytes.get(link, 0) + wire
        for node in (send.src,) + tuple(b for _, b in links):
            self.routers.setdefault(node, set()).add(send.channel)
        s.bytes_sent += nbytes
        s.pe_sent[send.src] += nbytes
        s.bytes_hops += nbytes * (1 if crossbar else len(ports))
        s.messages += 1
        return start + spec.inject_latency_cycles + hops * spec.hop_latency_cycles + busy

    def _waits_for(self, pe):
        """The blocked PE's edge of the wait-for graph: (the PE it waits for, channel, kind)."""
        if pe.blocked[0] == "recv":
            src, _, channel = pe.blocked[1]
            return src, channel, "recv"
        send = next(m[2] for m in pe.outbox if m[1] is None)
        return send.dst, send.channel, "send"

    # --- costs ----------------------------------------------------------------------------------

    def _grow(self, pe, nbytes, buffer):
        usable = self.spec.usable_bytes
        if pe.live + nbytes > usable:
            raise SramCapacityError(pe.at, pe.label, buffer, nbytes, pe.live, usable)
        pe.live += nbytes
        if pe.live > self.summary.sram_peak[pe.at]:
            self.summary.sram_peak[pe.at] = pe.live
            self.summary.sram_peak_at[pe.at] = (pe.label, buffer)

    def _compute_cycles(self, compute: Compute, pe) -> float:
        key = (id(compute), pe.at)   # the compute is kept with its cost: its id is not reused
        if key not in self.costs:
            points = sum(1 for _ in stage_points(compute.dims, pe_env(pe.at)))
            itemsize = lambda name: pe.memory[name].itemsize  # noqa: E731
            work = [op_work(op, itemsize) for op in compute.ops]
            dtype = pe.memory[compute.ops[0].writes[0].buffer].dtype if compute.ops else np.float32
            self.costs[key] = compute, compute_cycles(points * sum(f for f, _ in work),
                                                      points * sum(b for _, b in work), dtype, self.spec)
        return self.costs[key][1]


RULES = {Begin: EventEngine._begin, Allocate: EventEngine._allocate, Release: EventEngine._release,
         Load: EventEngine._load, Compute: EventEngine._compute, Isend: EventEngine._isend,
         Recv: EventEngine._recv, WaitSends: EventEngine._wait_sends}


def run_event(program: MeshProgram, inputs: dict, *, capacity: int | None = None):
    """Run `program` on the event-driven engine: (outputs by name, `CostSummary`)."""
    host = host_arrays(program, inputs)
    spec, messages = program.spec, messages_by_step(program)
    streams = {(r, c): pe_stream(program, (r, c), messages) for r in range(spec.rows) for c in range(spec.cols)}
    engine = EventEngine(spec, streams, host, capacity)
    summary = engine.run()
    summary.supersteps = len(program.steps)
    for st in program.stores:
        for pe in st.pes:
            view = region(st.dst, pe_env(pe), host)
            view[...] = read(st.src, pe, engine.pes[pe].memory).reshape(view.shape)
    return {a.name: host[a.name] for a in program.outputs}, summary
