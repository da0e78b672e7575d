"""A mesh program run by blocks of PEs: the part of an MPI run that one rank does.

The mesh's rows and columns are cut into contiguous blocks over a 2-D grid of ranks
(`RankGrid`; the MPI executor takes the grid's shape from `MPI.Compute_dims`), and a rank
runs the one-PE semantics of `fractal.backends.dataflow.local` for the PEs of its block.
Its memory is one array per local buffer of shape `(block rows, block cols, *shape)`, held
only while some of its PEs have the buffer allocated (as in the BSP engine: created zeroed
by the `Alloc` that makes it live on the rank, dropped by the `Free` that leaves none of its
PEs holding it), so a rank holds its own PEs' live buffers, not every buffer on every PE.  A
PE's buffer reads zero where it is allocated, in every executor, so all compute the same
bits; a PE that uses a buffer it has not allocated is a `VerifyError`.

Every rank reads every host array (the plan file carries the inputs), so a `Load` needs no
message.  A superstep runs its computes on the rank's PEs (on the whole block at once where
a compute does the same on each PE: `batched`), then its transfers as batches of messages in
program order (`messages.batches`): the rank reads every batch's rows its PEs send (one
fancy index per batch), hands its `exchange` the rows bound for other ranks packed per peer
rank, batch by batch (every rank calls it once per superstep, with nothing to send when it
has nothing), gets back the rows its PEs receive from other ranks in the same order, and
writes every batch's rows its PEs receive.  A strict exchange (`strict = True`: one
synchronous send per message, to catch a run that relies on MPI buffering) gets the
messages one by one instead (`collectives.expand`).  Stores are read where the PEs live and
applied on one rank in program order (`apply_stores`).

`run_local(program, inputs)` is the whole run on one rank in this process: the reference
the MPI runs are compared with, and a way to run a plan without MPI.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from fractal.backends.pointwise import region, stage_points
from fractal.lang.errors import ArgumentError, VerifyError

from . import local
from .batched import BATCHED, batched_op, reads_pe, trailing
from .collectives import expand
from .host import host_arrays
from .mesh_ir import MeshProgram, Pes, Send
from .messages import batches, gather, scatter

# A superstep's messages in program order: (index, transfer index, send).
Message = tuple[int, int, Send]
# exchange(step index, {peer rank: arrays to it}, {peer rank: [(elements, dtype)] expected from it})
#   -> {peer rank: arrays from it}, both sides in batch order; a strict exchange (`strict = True`):
# exchange(step index, messages, data of the rank's own sends by index, owner) -> data received by index
Exchange = Callable[..., dict]


@dataclass(frozen=True)
class RankGrid:
    """A `rows` x `cols` mesh cut into `dims[0]` x `dims[1]` blocks of PEs, one per rank, ranks
    numbered row-major (as `MPI.Comm.Create_cart` numbers them).  With more ranks than PEs along
    an axis some blocks are empty: those ranks take part in the run with nothing to do."""

    rows: int
    cols: int
    dims: tuple[int, int] = (1, 1)

    def __post_init__(self):
        object.__setattr__(self, "dims", tuple(int(d) for d in self.dims))
        if len(self.dims) != 2 or min(self.dims) < 1:
            raise ArgumentError(f"a rank grid needs two positive dimensions, not {self.dims}")

    @classmethod
    def oriented(cls, rows: int, cols: int, dims) -> "RankGrid":
        """The grid with the larger of `dims` along the mesh's longer side."""
        big, small = max(dims), min(dims)
        return cls(rows, cols, (big, small) if rows >= cols else (small, big))

    @property
    def ranks(self) -> int:
        return self.dims[0] * self.dims[1]

    def _cuts(self, axis: int) -> list[int]:
        n, parts = (self.rows, self.cols)[axis], self.dims[axis]
        return [i * n // parts for i in range(parts + 1)]

    def block(self, rank: int) -> Pes:
        """The PEs of `rank`."""
        i, j = divmod(rank, self.dims[1])
        rows, cols = self._cuts(0), self._cuts(1)
        return Pes(rows[i], rows[i + 1], cols[j], cols[j + 1])

    def owner(self, pe) -> int:
        """The rank that holds the PE (the last block that starts at or before it: empty blocks
        start where the next one does)."""
        i = bisect.bisect_right(self._cuts(0), pe[0]) - 1
        j = bisect.bisect_right(self._cuts(1), pe[1]) - 1
        return i * self.dims[1] + j

    def owners(self, rows, cols) -> np.ndarray:
        """`owner` of many PEs at once (arrays of their rows and columns)."""
        i = np.searchsorted(self._cuts(0), rows, side="right") - 1
        j = np.searchsorted(self._cuts(1), cols, side="right") - 1
        return i * self.dims[1] + j


def step_messages(step) -> list[Message]:
    """A superstep's transfers as numbered messages, in program order."""
    sends = [(t, s) for t, transfer in enumerate(step.transfers) for s in expand(transfer)]
    return [(i, t, s) for i, (t, s) in enumerate(sends)]


class _Memory(dict):
    """One PE's allocated buffers (name -> view); a buffer it has not allocated is an error."""

    def __init__(self, pe):
        super().__init__()
        self.pe = pe

    def __missing__(self, name):
        raise VerifyError(f"PE ({self.pe[0]}, {self.pe[1]}) uses {name}, which it has not allocated")


class BlockRun:
    """One rank's part of a run: its PEs' memory and what they do.  `arrays` holds the
    buffers some of its PEs have allocated now; `array_peak_bytes` the most bytes they held at once."""

    def __init__(self, program: MeshProgram, host: dict, grid: RankGrid, rank: int):
        self.program, self.host, self.grid, self.rank = program, host, grid, rank
        self.pes = grid.block(rank)
        self.arrays: dict[str, np.ndarray] = {}
        self.held: dict[str, np.ndarray] = {}   # live buffer -> which of the block's PEs hold it
        self.array_bytes = self.array_peak_bytes = 0
        self._memory = {pe: _Memory(pe) for pe in self.pes}

    def memory(self, pe) -> dict[str, np.ndarray]:
        """One of the rank's PEs' allocated buffers, as views."""
        return self._memory[pe]

    def mine(self, pes: Pes):
        return (pe for pe in pes if pe in self.pes)

    def _overlap(self, pes: Pes) -> Pes:
        b = self.pes
        return Pes(max(pes.r0, b.r0), min(pes.r1, b.r1), max(pes.c0, b.c0), min(pes.c1, b.c1))

    def alloc(self, a) -> None:
        mine = self._overlap(a.pes)
        if not mine.count:
            return
        r0, c0 = self.pes.r0, self.pes.c0
        for name in a.buffers:
            fresh = name not in self.arrays     # (np.zeros: no need to zero it again)
            if fresh:
                b = self.program.buffer(name)
                self.arrays[name] = np.zeros(self.pes.shape + b.shape, b.dtype)
                self.held[name] = np.zeros(self.pes.shape, bool)
                self.array_bytes += self.arrays[name].nbytes
                self.array_peak_bytes = max(self.array_peak_bytes, self.array_bytes)
            array, held = self.arrays[name], self.held[name]
            for r, c in mine:
                if not held[r - r0, c - c0]:
                    if not fresh:               # allocated again after a free: zero, not what it held
                        array[r - r0, c - c0] = 0
                    held[r - r0, c - c0] = True
                    self._memory[(r, c)][name] = array[r - r0, c - c0]

    def free(self, f) -> None:
        mine = self._overlap(f.pes)
        if not mine.count:
            return
        r0, c0 = self.pes.r0, self.pes.c0
        for name in f.buffers:
            if name not in self.held:
                continue
            held = self.held[name]
            for r, c in mine:
                held[r - r0, c - c0] = False
                self._memory[(r, c)].pop(name, None)
            if not held.any():                  # none of the rank's PEs holds it: its array goes
                del self.held[name]
                self.array_bytes -= self.arrays.pop(name).nbytes

    def run(self, exchange: Exchange) -> list[tuple[int, tuple[int, int], np.ndarray]]:
        """Loads, supersteps, then what the rank's PEs store: (store index, PE, data) in order."""
        for a in self.program.allocs:
            self.alloc(a)
        for ld in self.program.loads:
            for pe in self.mine(ld.pes):
                local.write(ld.dst, pe, self.memory(pe), region(ld.src, local.pe_env(pe), self.host))
        for index, step in enumerate(self.program.steps):
            self.superstep(index, step, exchange)
        stored = [(k, pe, local.read(st.src, pe, self.memory(pe)))
                  for k, st in enumerate(self.program.stores) for pe in self.mine(st.pes)]
        for f in self.program.frees:
            self.free(f)
        return stored

    def superstep(self, index: int, step, exchange: Exchange) -> None:
        for a in step.allocs:
            self.alloc(a)
        for cp in step.computes:
            self.compute(cp)
        if getattr(exchange, "strict", False):
            self._messages(index, step, exchange)
        else:
            self._batches(index, step, exchange)
        for f in step.frees:
            self.free(f)

    def compute(self, cp) -> None:
        """The compute on the rank's PEs: on the block at once (`batched`) where it does the same
        on each PE and they all hold its buffers, else PE by PE (`local`, which names a PE using
        a buffer it has not allocated)."""
        P = self._overlap(cp.pes)
        if not P.count:
            return
        names = {r.buffer for op in cp.ops for r in op.reads + op.writes}
        r0, c0 = P.r0 - self.pes.r0, P.c0 - self.pes.c0
        held = all(n in self.held and self.held[n][r0:r0 + P.shape[0], c0:c0 + P.shape[1]].all() for n in names)
        if held and not reads_pe(cp) and all(isinstance(op, BATCHED) for op in cp.ops):
            arrays = {n: trailing(self.arrays[n][r0:r0 + P.shape[0], c0:c0 + P.shape[1]]) for n in names}
            for env in stage_points(cp.dims, {}):
                for op in cp.ops:
                    batched_op(op, env, arrays)
            return
        for pe in self.mine(cp.pes):
            local.run_compute(cp, pe, self.memory(pe))

    def _batches(self, index: int, step, exchange) -> None:
        """The superstep's transfers as batches of messages (`messages.batches`, in program
        order; every read before any write), each moved with a few NumPy calls: each batch's
        rows that leave the rank's PEs go out packed per peer rank, batch by batch, and come in
        on the peer in the same order."""
        b = self.pes
        grid = self.grid
        moves, outgoing, incoming = [], {}, {}
        for g in batches(step.transfers, ordered=True):
            src_in = (g.sr >= b.r0) & (g.sr < b.r1) & (g.sc >= b.c0) & (g.sc < b.c1)
            dst_in = (g.dr >= b.r0) & (g.dr < b.r1) & (g.dc >= b.c0) & (g.dc < b.c1)
            if not (src_in.any() or dst_in.any()):
                continue
            data = None
            if src_in.any():
                self._check_held(g.src_buffer, g.sr[src_in], g.sc[src_in])
                data = gather(self.arrays, _shifted(g, src_in, b))
                away = ~dst_in[src_in]
                if away.any():
                    peers = grid.owners(g.dr[src_in][away], g.dc[src_in][away])
                    for peer in np.unique(peers).tolist():
                        outgoing.setdefault(peer, []).append(data[away][peers == peer])
            arriving = dst_in & ~src_in
            peers = grid.owners(g.sr[arriving], g.sc[arriving]) if arriving.any() else np.zeros(0, np.int64)
            dtype = self.program.buffer(g.src_buffer).dtype
            for peer in np.unique(peers).tolist():
                incoming.setdefault(peer, []).append((int((peers == peer).sum()) * g.elements, dtype))
            moves.append((g, src_in, dst_in, data, peers))
        received = {peer: iter(arrays) for peer, arrays in exchange(index, outgoing, incoming).items()}
        for g, src_in, dst_in, data, peers in moves:
            if not dst_in.any():
                continue
            self._check_held(g.dst_buffer, g.dr[dst_in], g.dc[dst_in])
            rows = np.empty((len(g.sr), g.elements), self.program.buffer(g.src_buffer).dtype)
            if data is not None:
                rows[src_in] = data
            arriving = dst_in & ~src_in
            for peer in np.unique(peers).tolist():
                where = np.flatnonzero(arriving)[peers == peer]
                rows[where] = next(received[peer]).reshape(len(where), -1)
            scatter(self.arrays, _shifted(g, dst_in, b), rows[dst_in])

    def _check_held(self, name: str, rows, cols) -> None:
        held = self.held.get(name)
        ok = np.zeros(len(rows), bool) if held is None else held[rows - self.pes.r0, cols - self.pes.c0]
        if not ok.all():
            k = int(np.argmin(ok))
            raise VerifyError(f"PE ({int(rows[k])}, {int(cols[k])}) uses {name}, which it has not allocated")

    def _messages(self, index: int, step, exchange) -> None:
        """The superstep's transfers message by message, in program order (a strict exchange:
        one synchronous send per message)."""
        messages = step_messages(step)
        # where no buffer the transfers write is one they read, a message between two of the
        # rank's PEs is read when it is written (the same bits, without a copy of them all)
        late = {s.dst_region.buffer for _, _, s in messages}.isdisjoint(s.src_region.buffer for _, _, s in messages)
        mine = lambda s: s.src in self.pes and s.dst in self.pes  # noqa: E731
        sent = {i: local.read(s.src_region, s.src, self.memory(s.src)) for i, _, s in messages
                if s.src in self.pes and not (late and mine(s))}
        remote = [(i, t, s) for i, t, s in messages if (s.src in self.pes) != (s.dst in self.pes)]
        received = exchange(index, remote, sent, self.grid.owner)  # every rank, every superstep
        for i, _, s in messages:
            if s.dst in self.pes:
                data = sent[i] if i in sent else received[i] if i in received else \
                    local.read(s.src_region, s.src, self.memory(s.src))
                local.write(s.dst_region, s.dst, self.memory(s.dst), data)


def apply_stores(program: MeshProgram, host: dict, pieces) -> dict[str, np.ndarray]:
    """The outputs, from every rank's stored pieces applied in program order (stores in turn,
    each one's PEs row by row: where two PEs store to the same place the later one wins)."""
    by_place = {(k, pe): data for k, pe, data in pieces}
    for k, st in enumerate(program.stores):
        for pe in st.pes:
            view = region(st.dst, local.pe_env(pe), host)
            view[...] = by_place[(k, pe)].reshape(view.shape)
    return {a.name: host[a.name] for a in program.outputs}


def _shifted(g, rows, block: Pes):
    """Batch `g`'s rows `rows` (a mask), its PEs counted from the block's first."""
    return replace(g, sr=g.sr[rows] - block.r0, sc=g.sc[rows] - block.c0, dr=g.dr[rows] - block.r0,
                   dc=g.dc[rows] - block.c0, src_starts=g.src_starts[rows], dst_starts=g.dst_starts[rows])


def _no_exchange(index, outgoing, incoming) -> dict:
    assert not outgoing and not incoming, f"superstep {index}: one rank holds every PE, yet messages leave it"
    return {}


def run_local(program: MeshProgram, inputs: dict) -> dict[str, np.ndarray]:
    """The program's outputs, every PE run in this process (one rank holds the whole mesh)."""
    host = host_arrays(program, inputs)
    grid = RankGrid(program.spec.rows, program.spec.cols)
    return apply_stores(program, host, BlockRun(program, host, grid, 0).run(_no_exchange))
