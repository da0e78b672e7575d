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
message; a superstep runs its computes on the rank's PEs, then its transfers as `Send`s
(`collectives.expand`) in program order: the rank reads the data of every send from its
PEs, calls its `exchange` with the messages that cross to or from other ranks (every rank
calls it once per superstep, with no messages when it has none), which returns the data its
PEs receive from other ranks, and then writes every message its PEs receive in program
order (a message between two of its own PEs is a local copy, read as it is written where
the superstep's transfers write no buffer they read).  Stores are read where the PEs live
and applied on one rank in program order (`apply_stores`).

`run_local(program, inputs)` is the whole run on one rank in this process: the reference
the MPI runs are compared with, and a way to run a plan without MPI.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Callable

import numpy as np

from fractal.backends.pointwise import region
from fractal.lang.errors import ArgumentError, VerifyError

from . import local
from .collectives import expand
from .host import host_arrays
from .mesh_ir import MeshProgram, Pes, Send

# A superstep's messages in program order: (index, transfer index, send).
Message = tuple[int, int, Send]
# exchange(step index, messages, data of the rank's own sends by index, owner) -> data received by index
Exchange = Callable[[int, list, dict, Callable], dict]


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
            for pe in self.mine(cp.pes):
                local.run_compute(cp, pe, self.memory(pe))
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
        for f in step.frees:
            self.free(f)


def apply_stores(program: MeshProgram, host: dict, pieces) -> dict[str, np.ndarray]:
    """The outputs, from every rank's stored pieces applied in program order (stores in turn,
    each one's PEs row by row: where two PEs store to the same place the later one wins)."""
    by_place = {(k, pe): data for k, pe, data in pieces}
    for k, st in enumerate(program.stores):
        for pe in st.pes:
            view = region(st.dst, local.pe_env(pe), host)
            view[...] = by_place[(k, pe)].reshape(view.shape)
    return {a.name: host[a.name] for a in program.outputs}


def _no_exchange(index, messages, sent, owner) -> dict:
    assert not messages, f"superstep {index}: one rank holds every PE, yet {len(messages)} messages leave it"
    return {}


def run_local(program: MeshProgram, inputs: dict) -> dict[str, np.ndarray]:
    """The program's outputs, every PE run in this process (one rank holds the whole mesh)."""
    host = host_arrays(program, inputs)
    grid = RankGrid(program.spec.rows, program.spec.cols)
    return apply_stores(program, host, BlockRun(program, host, grid, 0).run(_no_exchange))
