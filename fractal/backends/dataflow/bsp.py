"""The vectorised BSP engine: the default executor of a `MeshProgram`, exact and fast.

Every local buffer is one NumPy array whose two leading axes are the PE grid, `(rows, cols,
*shape)`, held only while some PE has the buffer allocated: the first `Alloc` that makes it
live creates it zeroed, the `Free` that leaves no PE holding it drops it, so the host holds
what the program has live, not every buffer it declares (a planner declares many that live
for a superstep).  A PE's buffer reads zero where it is allocated, as in the event engine.
A compute whose regions do not read the PE's coordinates runs as one batched NumPy call
over its rectangle (a GEMM as `matmul` over all PEs, an element-wise op as one expression
with the grid as trailing axes); other computes and gathers run PE by PE with the shared
semantics of `fractal.backends.dataflow.local`.  A shift whose regions do not read the PE's
coordinates is one permutation of a grid axis (a roll for a wrapped ring); other transfers run
message by message.  All transfers of a superstep read before any writes.

Time follows the BSP cost of `fractal.backends.dataflow.cost`: per superstep, the slowest
PE's compute, then the exchange (the busiest link's bytes over the link bandwidth plus the
longest route's latency; a crossbar: the busiest PE's injected or ejected bytes), then the
barrier.  Host loads and stores are not charged (they happen before and after the run).

    outputs, summary = run_bsp(program, {"a": a, "b": b})
"""

from __future__ import annotations

import numpy as np

from fractal.backends.pointwise import stage_points
from fractal.lang.errors import VerifyError

from . import local
from .cost import CostSummary, compute_cycles, op_work, wire_bytes
from .errors import SramCapacityError
from .host import host_arrays
from .mesh_ir import Compute, MeshProgram
from .mesh_resources import router_channels
from .batched import BATCHED, batched_op, reads_pe, trailing
from .messages import batches, gather, host_transfer, pieces, scatter
from .traffic import LinkLoads

PIECE_BYTES = 4 << 20    # the most a superstep's transfers copy at once where they may move in pieces


class BspRun:
    """One run of a program: the grid arrays, live SRAM and the costs so far."""

    def __init__(self, program: MeshProgram, inputs: dict | None):
        self.p, spec = program, program.spec
        self.spec = spec
        self.shape = (spec.rows, spec.cols)
        self.functional = inputs is not None    # else costs only: no data is kept or moved
        self.grid: dict[str, np.ndarray] = {}       # live buffer -> its grid (functional runs only)
        self.allocated: dict[str, np.ndarray] = {}  # live buffer -> where it is allocated
        self.grid_bytes = self.grid_peak_bytes = 0  # the grids' bytes now, and at most at once
        self.host = host_arrays(program, inputs) if self.functional else {}
        self.live = np.zeros(self.shape, np.int64)
        self.summary = CostSummary(spec, "bsp")
        self.links = LinkLoads(spec)

    # --- memory -------------------------------------------------------------------------------

    def _note_peak(self, where: str, buffer: str) -> None:
        higher = self.live > self.summary.sram_peak
        if higher.any():
            self.summary.sram_peak = np.maximum(self.summary.sram_peak, self.live)
            for r, c in zip(*np.nonzero(higher)):
                self.summary.sram_peak_at[(int(r), int(c))] = (where, buffer)

    def _grow(self, mask: np.ndarray, nbytes, where: str, buffer: str) -> None:
        need = self.live + np.where(mask, nbytes, 0)
        over = need > self.spec.usable_bytes
        if over.any():
            r, c = (int(x) for x in np.argwhere(over)[0])
            requested = int(np.broadcast_to(nbytes, self.shape)[r, c])
            raise SramCapacityError((r, c), where, buffer, requested, int(self.live[r, c]), self.spec.usable_bytes)
        self.live = need
        self._note_peak(where, buffer)

    def _held(self, name: str) -> np.ndarray:
        return self.allocated[name] if name in self.allocated else np.zeros(self.shape, bool)

    def alloc(self, allocs, where: str) -> None:
        """Allocate every buffer of `allocs` on its PEs (one mask per buffer: a home's blocks come
        as an alloc per rectangle of its owners, thousands on a big mesh)."""
        for name, mask in _masks(allocs, self.shape).items():
            held = self._held(name)
            fresh = mask & ~held
            self._grow(fresh, self.p.buffer(name).nbytes, where, name)
            self.allocated[name] = held | mask
            if not self.functional:
                continue
            if name in self.grid:
                self.grid[name][fresh] = 0      # allocated again after a free: zero, not what it held
            else:
                b = self.p.buffer(name)
                self.grid[name] = np.zeros(self.shape + b.shape, b.dtype)
                self.grid_bytes += self.grid[name].nbytes
                self.grid_peak_bytes = max(self.grid_peak_bytes, self.grid_bytes)

    def free(self, frees) -> None:
        for name, mask in _masks(frees, self.shape).items():
            held = self._held(name)
            mask &= held
            self.live -= np.where(mask, self.p.buffer(name).nbytes, 0)
            held = held & ~mask
            if held.any():
                self.allocated[name] = held
            else:                               # no PE holds it: its grid goes
                self.allocated.pop(name, None)
                if name in self.grid:
                    self.grid_bytes -= self.grid.pop(name).nbytes

    def memory(self, pe) -> dict:
        """One PE's buffers as views."""
        r, c = pe
        return {name: g[r, c] for name, g in self.grid.items()}

    # --- host I/O -----------------------------------------------------------------------------

    def host_io(self, moves, to_pes: bool) -> None:
        for m in moves:
            mask = np.zeros(self.shape, bool)
            mask[m.pes.r0:m.pes.r1, m.pes.c0:m.pes.c1] = True
            self._check_allocated((m.dst if to_pes else m.src).buffer, mask, "load" if to_pes else "store")
        host_transfer(self.grid, self.host, [(m.pes, m.dst, m.src) if to_pes else (m.pes, m.src, m.dst)
                                             for m in moves], to_pes)

    # --- compute ------------------------------------------------------------------------------

    def compute(self, cp: Compute, busy: np.ndarray) -> None:
        P = cp.pes
        if not self.functional:
            if (cp.dims and reads_pe(cp)):
                for pe in P:
                    busy[pe] += self._cycles(cp, sum(1 for _ in stage_points(cp.dims, local.pe_env(pe))))
            else:
                busy[P.r0:P.r1, P.c0:P.c1] += self._cycles(cp, sum(1 for _ in stage_points(cp.dims, {})))
        elif not reads_pe(cp) and all(isinstance(op, BATCHED) for op in cp.ops):
            arrays = {name: trailing(g[P.r0:P.r1, P.c0:P.c1]) for name, g in self.grid.items()}
            points = list(stage_points(cp.dims, {}))
            for env in points:
                for op in cp.ops:
                    batched_op(op, env, arrays)
            busy[P.r0:P.r1, P.c0:P.c1] += self._cycles(cp, len(points))
        else:
            for pe in P:
                points = list(stage_points(cp.dims, local.pe_env(pe)))
                local.run_compute(cp, pe, self.memory(pe))
                busy[pe] += self._cycles(cp, len(points))

    def _cycles(self, cp: Compute, points: int) -> float:
        itemsize = lambda name: self.p.buffer(name).dtype.itemsize  # noqa: E731
        flops = nbytes = 0
        for op in cp.ops:
            f, b = op_work(op, itemsize)
            flops, nbytes = flops + f, nbytes + b
        dtype = self.p.buffer(cp.ops[0].writes[0].buffer).dtype if cp.ops else np.float32
        return compute_cycles(flops * points, nbytes * points, dtype, self.spec) if points else 0.0

    # --- exchange -----------------------------------------------------------------------------

    def _check_allocated(self, buffer: str, mask: np.ndarray, where: str) -> None:
        missing = mask & ~self._held(buffer)
        if missing.any():
            r, c = (int(x) for x in np.argwhere(missing)[0])
            raise VerifyError(f"{where}: PE ({r}, {c}) uses {buffer}, which it has not allocated")

    def exchange(self, transfers, where: str):
        """Run a superstep's transfers (all reads, then all writes); (cycles, which PEs took part)."""
        groups = batches(transfers)
        recv = {}              # buffer -> bytes each PE receives into it
        sends_from = {}        # buffer -> which PEs send from it
        for g in groups:
            nbytes = g.elements * self.p.buffer(g.src_buffer).dtype.itemsize
            src_mask, dst_mask = np.zeros(self.shape, bool), np.zeros(self.shape, bool)
            src_mask[g.sr, g.sc], dst_mask[g.dr, g.dc] = True, True
            self._check_allocated(g.src_buffer, src_mask, where)
            self._check_allocated(g.dst_buffer, dst_mask, where)
            sends_from[g.src_buffer] = sends_from.get(g.src_buffer, np.zeros(self.shape, bool)) | src_mask
            got = recv.setdefault(g.dst_buffer, np.zeros(self.shape, np.int64))
            _add_at(got, g.dr, g.dc, nbytes)
        if self.functional:
            self._move(groups)
        transient = sum((recv[b] * sends_from.get(b, np.zeros(self.shape, bool)) for b in recv),
                        np.zeros(self.shape, np.int64))
        if np.any(transient):
            self._grow(transient > 0, transient, where, "a receive buffer")
            self.live -= transient
        return self._charge(groups)

    def _move(self, groups) -> None:
        """Every read first, then every write; where no buffer written is read, the same bits
        moved a piece at a time (holding one piece's copy, not the superstep's)."""
        if {g.dst_buffer for g in groups}.isdisjoint(g.src_buffer for g in groups):
            for g in groups:
                for piece in pieces(g, PIECE_BYTES, self.p.buffer(g.src_buffer).dtype.itemsize):
                    scatter(self.grid, piece, gather(self.grid, piece))
            return
        data = [gather(self.grid, g) for g in groups]
        for g, d in zip(groups, data):
            scatter(self.grid, g, d)

    def _charge(self, groups):
        """The exchange's cycles from its messages, and which PEs took part; adds to the summary.
        Bytes and messages count every copy; links carry a multicast line's bytes once (a router
        forwards each flit once, as the event engine models it; a crossbar: the root injects once)."""
        active = np.zeros(self.shape, bool)
        logical, physical = [], []
        for g in groups:
            nbytes = np.full(len(g.sr), g.elements * self.p.buffer(g.src_buffer).dtype.itemsize)
            logical.append((g.sr, g.sc, g.dr, g.dc, nbytes))
            physical.append(_chains(g, nbytes) if g.multicast else (g.sr, g.sc, g.dr, g.dc, nbytes))
        sr, sc, dr, dc, nbytes = _remote(logical)
        if not sr.size:
            return 0.0, active
        spec, s = self.spec, self.summary
        _add_at(s.pe_sent, sr, sc, nbytes)
        _add_at(s.pe_received, dr, dc, nbytes)
        s.bytes_sent += int(nbytes.sum())
        s.bytes_received += int(nbytes.sum())
        s.messages += int(sr.size)
        active[sr, sc] = active[dr, dc] = True
        in_b = np.zeros(self.shape)
        wire_of = lambda n: np.array([wire_bytes(int(x), spec) for x in n]) if spec.max_packet_bytes else n  # noqa: E731
        _add_at(in_b, dr, dc, wire_of(nbytes))
        latency = spec.inject_latency_cycles + int(hops_many(sr, sc, dr, dc, spec).max()) * spec.hop_latency_cycles
        sr, sc, dr, dc, nbytes = _remote(physical)
        wire = wire_of(nbytes)
        s.bytes_hops += int((nbytes * hops_many(sr, sc, dr, dc, spec)).sum())
        if spec.kind == "crossbar":
            out_b = np.zeros(self.shape)
            _add_at(out_b, sr, sc, wire)
            return latency + max(out_b.max(), in_b.max()) / spec.link_bytes_per_cycle, active
        step = LinkLoads(spec)
        step.add(sr, sc, dr, dc, wire)
        self.links += step
        return latency + step.busiest() / spec.link_bytes_per_cycle, active

    # --- the run ------------------------------------------------------------------------------

    def run(self):
        p, s = self.p, self.summary
        self.alloc(p.allocs, "load")
        if self.functional:
            self.host_io(p.loads, to_pes=True)
        for i, step in enumerate(p.steps):
            where = step.label or f"superstep {i}"
            self.alloc(step.allocs, where)
            busy = np.zeros(self.shape)
            for cp in step.computes:
                for name in {r.buffer for op in cp.ops for r in op.reads + op.writes}:
                    mask = np.zeros(self.shape, bool)
                    mask[cp.pes.r0:cp.pes.r1, cp.pes.c0:cp.pes.c1] = True
                    self._check_allocated(name, mask, where)
                self.compute(cp, busy)
            cycles, active = self.exchange(step.transfers, where)
            self.free(step.frees)
            s.compute_cycles += busy
            s.comm_cycles += np.where(active, cycles, 0.0)
            s.makespan_cycles += float(busy.max()) + cycles + self.spec.sync_cycles
            s.step_cycles.append((where, float(busy.max()), float(cycles), float(self.spec.sync_cycles)))
        if self.functional:
            self.host_io(p.stores, to_pes=False)
        self.free(p.frees)
        s.supersteps = len(p.steps)
        s.link_bytes = self.links.as_dict()
        s.router_channels = router_channels(p)
        return ({a.name: self.host[a.name] for a in p.outputs} if self.functional else {}), s


def _masks(entries, shape) -> dict[str, np.ndarray]:
    """{buffer: where `entries` (allocs or frees) name it}, buffers in order of first sight."""
    out: dict[str, np.ndarray] = {}
    for e in entries:
        for name in e.buffers:
            mask = out.get(name)
            if mask is None:
                mask = out[name] = np.zeros(shape, bool)
            mask[e.pes.r0:e.pes.r1, e.pes.c0:e.pes.c1] = True
    return out


def _remote(msgs):
    """The messages (arrays) between distinct PEs: a PE's message to itself is a local copy."""
    if not msgs:
        return (np.zeros(0, np.int64),) * 5
    sr, sc, dr, dc, nbytes = (np.concatenate(x) for x in zip(*msgs))
    keep = (sr != dr) | (sc != dc)
    return sr[keep], sc[keep], dr[keep], dc[keep], nbytes[keep]


def _add_at(target: np.ndarray, rows, cols, values) -> None:
    """`np.add.at(target, (rows, cols), values)` by one `bincount` (many times faster; exact:
    the byte counts stay far below 2**53)."""
    flat = np.asarray(rows, np.int64) * target.shape[1] + np.asarray(cols, np.int64)
    weights = np.broadcast_to(np.asarray(values, np.float64), flat.shape)
    target += np.bincount(flat, weights=weights, minlength=target.size).reshape(target.shape).astype(target.dtype)


def _chains(g, nbytes):
    """A multicast batch's physical messages: the tree a router forwards along (the root's row
    to its farthest receivers on each side, then each receiving column from the root's row to
    its ends), every link of it carrying the bytes once."""
    if not len(g.sr):
        return (np.zeros(0, np.int64),) * 4 + (np.zeros(0, nbytes.dtype),)
    W = int(max(g.sr.max(), g.dr.max(), g.sc.max(), g.dc.max())) + 1
    roots, root_of = np.unique(g.sr * W + g.sc, return_inverse=True)
    r, c = np.divmod(roots, W)
    lo, hi = _extremes(root_of, len(roots), g.dc)
    # the root's row: to the farthest receiving column on each side (one message when both are one)
    row = [(r, c, r, lo, lo != c), (r, c, r, hi, (hi != c) & (hi != lo))]
    # each receiving column, from the root's row to its farthest receivers above and below
    cols, col_of = np.unique(root_of * W + g.dc, return_inverse=True)
    at, col = np.divmod(cols, W)
    down_lo, down_hi = _extremes(col_of, len(cols), g.dr)
    rr = r[at]
    column = [(rr, col, down_lo, col, down_lo != rr), (rr, col, down_hi, col, (down_hi != rr) & (down_hi != down_lo))]
    parts = [np.stack([a, b, x, y], 1)[keep] for a, b, x, y, keep in row + column]
    out = np.concatenate(parts)
    return out[:, 0], out[:, 1], out[:, 2], out[:, 3], np.full(len(out), nbytes[0] if len(nbytes) else 0)


def _extremes(group, n: int, values):
    """(min, max) of `values` per group id in [0, n)."""
    lo, hi = np.full(n, np.iinfo(np.int64).max), np.full(n, np.iinfo(np.int64).min)
    np.minimum.at(lo, group, values)
    np.maximum.at(hi, group, values)
    return lo, hi


def hops_many(sr, sc, dr, dc, spec) -> np.ndarray:
    """`routes.hops` for arrays of messages."""
    if spec.kind == "crossbar":
        return ((sr != dr) | (sc != dc)).astype(np.int64)
    dy, dx = np.abs(sr - dr), np.abs(sc - dc)
    if spec.kind == "torus":
        dy, dx = np.minimum(dy, spec.rows - dy), np.minimum(dx, spec.cols - dx)
    return dy + dx


def run_bsp(program: MeshProgram, inputs: dict | None):
    """(outputs, CostSummary) of running `program` on `inputs` (host array name -> array);
    `inputs=None` only costs it (no data moves; the costs never depend on the data)."""
    return BspRun(program, inputs).run()
