"""The vectorised BSP engine: the default executor of a `MeshProgram`, exact and fast.

Every local buffer is one NumPy array whose two leading axes are the PE grid, `(rows, cols,
*shape)`.  A compute whose regions do not read the PE's coordinates runs as one batched NumPy
call over its rectangle (a GEMM as `matmul` over all PEs, an element-wise op as one expression
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

from fractal.backends.pointwise import RULES, region, stage_points
from fractal.lang.errors import VerifyError
from fractal.lower.tile_ir import Convert, Copy, Elementwise, Gemm, Reduce

from . import local
from .collectives import expand
from .cost import CostSummary, compute_cycles, op_work, wire_bytes
from .errors import SramCapacityError
from .mesh_ir import Compute, MeshProgram, Multicast, Shift
from .routes import ring_neighbour
from .traffic import LinkLoads

BATCHED = (Copy, Convert, Elementwise, Gemm, Reduce)


def _reads_pe(compute: Compute) -> bool:
    names = {"pr", "pc"}
    regions = [r for op in compute.ops for r in op.reads + op.writes]
    return any(r.vars() & names for r in regions) or any(
        (d.start.vars() | d.stop.vars()) & names for d in compute.dims)


def _trailing(view: np.ndarray) -> np.ndarray:
    """A (rows, cols, *shape) view with the grid axes moved last: NumPy broadcasting then
    aligns the buffer axes as a single PE's would (loads broadcast from the right)."""
    return np.moveaxis(view, (0, 1), (-2, -1))


def _batched_op(op, env, arrays) -> None:
    get = lambda r: region(r, env, arrays)  # noqa: E731 (the rules' accessor)
    if isinstance(op, Gemm):
        lead = lambda x: np.moveaxis(x, (-2, -1), (0, 1))  # noqa: E731 (grid first for matmul)
        a, b, c = lead(get(op.a)), lead(get(op.b)), lead(get(op.c))
        product = np.matmul(np.swapaxes(a, -1, -2) if op.trans_a else a, np.swapaxes(b, -1, -2) if op.trans_b else b)
        c[...] = c + product if op.accumulate else product
    elif isinstance(op, Copy) and op.perm:
        src, dst = get(op.src), get(op.dst)
        dst[...] = np.reshape(np.transpose(src, op.perm + (src.ndim - 2, src.ndim - 1)), dst.shape)
    else:
        RULES[type(op)](op, get, env, arrays)


class BspRun:
    """One run of a program: the grid arrays, live SRAM and the costs so far."""

    def __init__(self, program: MeshProgram, inputs: dict):
        self.p, spec = program, program.spec
        self.spec = spec
        self.shape = (spec.rows, spec.cols)
        self.grid = {b.name: np.zeros(self.shape + b.shape, b.dtype) for b in program.buffers}
        self.allocated = {b.name: np.zeros(self.shape, bool) for b in program.buffers}
        self.host = {a.name: (np.asarray(a.data.value) if a.role == "const" else
                              np.array(inputs[a.name], dtype=a.dtype) if a.role == "input" else
                              np.zeros(a.shape, a.dtype)) for a in program.arrays}
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

    def alloc(self, a, where: str) -> None:
        mask = np.zeros(self.shape, bool)
        mask[a.pes.r0:a.pes.r1, a.pes.c0:a.pes.c1] = True
        for name in a.buffers:
            self._grow(mask & ~self.allocated[name], self.p.buffer(name).nbytes, where, name)
            self.allocated[name] |= mask

    def free(self, f) -> None:
        for name in f.buffers:
            mask = np.zeros(self.shape, bool)
            mask[f.pes.r0:f.pes.r1, f.pes.c0:f.pes.c1] = True
            mask &= self.allocated[name]
            self.live -= np.where(mask, self.p.buffer(name).nbytes, 0)
            self.allocated[name] &= ~mask

    def memory(self, pe) -> dict:
        """One PE's buffers as views."""
        r, c = pe
        return {name: g[r, c] for name, g in self.grid.items()}

    # --- host I/O -----------------------------------------------------------------------------

    def load(self, ld) -> None:
        for pe in ld.pes:
            local.write(ld.dst, pe, self.memory(pe), region(ld.src, local.pe_env(pe), self.host))

    def store(self, st) -> None:
        for pe in st.pes:
            region(st.dst, local.pe_env(pe), self.host)[...] = \
                local.read(st.src, pe, self.memory(pe)).reshape(region(st.dst, local.pe_env(pe), self.host).shape)

    # --- compute ------------------------------------------------------------------------------

    def compute(self, cp: Compute, busy: np.ndarray) -> None:
        P = cp.pes
        if not _reads_pe(cp) and all(isinstance(op, BATCHED) for op in cp.ops):
            arrays = {name: _trailing(g[P.r0:P.r1, P.c0:P.c1]) for name, g in self.grid.items()}
            points = list(stage_points(cp.dims, {}))
            for env in points:
                for op in cp.ops:
                    _batched_op(op, env, arrays)
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
        missing = mask & ~self.allocated[buffer]
        if missing.any():
            r, c = (int(x) for x in np.argwhere(missing)[0])
            raise VerifyError(f"{where}: PE ({r}, {c}) uses {buffer}, which it has not allocated")

    def exchange(self, transfers, where: str):
        """Run a superstep's transfers; (cycles, which PEs took part)."""
        reads, msgs = [], []   # (dst region, dst PEs or PE, data); (sr, sc, dr, dc, bytes) arrays
        recv = {}              # buffer -> bytes each PE receives into it
        sends_from = {}        # buffer -> which PEs send from it
        for t in transfers:
            whole = isinstance(t, (Shift, Multicast)) and not ((t.src.vars() | t.dst.vars()) & {"pr", "pc"})
            pieces = self._collective(t) if whole else self._messages(t)
            for src_mask, dst_mask, item, apply, coords in pieces:
                self._check_allocated(item[0], src_mask, where)
                self._check_allocated(item[1], dst_mask, where)
                sends_from[item[0]] = sends_from.get(item[0], np.zeros(self.shape, bool)) | src_mask
                recv[item[1]] = recv.get(item[1], np.zeros(self.shape, np.int64)) + np.where(dst_mask, item[2], 0)
                reads.append(apply)
                msgs.append(coords)
        for apply in [read() for read in reads]:   # every read first, then every write
            apply()
        transient = sum((recv[b] * sends_from.get(b, np.zeros(self.shape, bool)) for b in recv),
                        np.zeros(self.shape, np.int64))
        if np.any(transient):
            self._grow(transient > 0, transient, where, "a receive buffer")
            self.live -= transient
        return self._charge(msgs)

    def _collective(self, t):
        """A shift or multicast over a rectangle, all PEs at once: one piece."""
        P = t.pes
        key = (slice(P.r0, P.r1), slice(P.c0, P.c1))
        rows, cols = P.grid()                    # the receivers, in the rectangle's order
        if isinstance(t, Shift):                 # who sends to each receiver: the ring's inverse step
            n = P.shape[1] if t.axis == "row" else P.shape[0]
            back = np.array([ring_neighbour(i, n, t.ring, -t.by) for i in range(n)])
            from_r, from_c = (rows, P.c0 + back[cols - P.c0]) if t.axis == "row" else (P.r0 + back[rows - P.r0], cols)
        else:
            from_r, from_c = (rows, np.full_like(cols, P.c0 + t.root)) if t.axis == "row" else \
                (np.full_like(rows, P.r0 + t.root), cols)
        nbytes = local.region_elements(t.src) * self.p.buffer(t.src.buffer).dtype.itemsize
        src_mask = np.zeros(self.shape, bool)
        src_mask[from_r, from_c] = True
        dst_mask = np.zeros(self.shape, bool)
        dst_mask[key] = True

        def read():
            sent = region(t.src, {}, {t.src.buffer: _trailing(self.grid[t.src.buffer])})   # (*shape, rows, cols)
            moved = np.array(sent[..., from_r, from_c], copy=True)                         # (*shape, nr, nc)

            def write():
                view = region(t.dst, {}, {t.dst.buffer: _trailing(self.grid[t.dst.buffer][key])})
                view[...] = moved.reshape(view.shape)
            return write

        coords = (from_r.ravel(), from_c.ravel(), rows.ravel(), cols.ravel(), np.full(rows.size, nbytes))
        return [(src_mask, dst_mask, (t.src.buffer, t.dst.buffer, nbytes), read, coords)]

    def _messages(self, t):
        """Transfers run message by message (a send, or a collective whose regions read pr/pc)."""
        out = []
        for s in expand(t):
            nbytes = local.region_elements(s.src_region) * self.p.buffer(s.src_region.buffer).dtype.itemsize
            src_mask, dst_mask = np.zeros(self.shape, bool), np.zeros(self.shape, bool)
            src_mask[s.src], dst_mask[s.dst] = True, True

            def read(s=s):
                data = local.read(s.src_region, s.src, self.memory(s.src))
                return lambda: local.write(s.dst_region, s.dst, self.memory(s.dst), data)
            coords = (np.array([s.src[0]]), np.array([s.src[1]]), np.array([s.dst[0]]), np.array([s.dst[1]]),
                      np.array([nbytes]))
            out.append((src_mask, dst_mask, (s.src_region.buffer, s.dst_region.buffer, nbytes), read, coords))
        return out

    def _charge(self, msgs):
        """The exchange's cycles from its messages, and which PEs took part; adds to the summary."""
        active = np.zeros(self.shape, bool)
        if not msgs:
            return 0.0, active
        sr, sc, dr, dc, nbytes = (np.concatenate(x) for x in zip(*msgs))
        remote = (sr != dr) | (sc != dc)                      # a PE's message to itself is a local copy
        sr, sc, dr, dc, nbytes = sr[remote], sc[remote], dr[remote], dc[remote], nbytes[remote]
        if not sr.size:
            return 0.0, active
        spec, s = self.spec, self.summary
        wire = np.array([wire_bytes(int(n), spec) for n in nbytes]) if spec.max_packet_bytes else nbytes
        nhops = hops_many(sr, sc, dr, dc, spec)
        np.add.at(s.pe_sent, (sr, sc), nbytes)
        np.add.at(s.pe_received, (dr, dc), nbytes)
        s.bytes_sent += int(nbytes.sum())
        s.bytes_received += int(nbytes.sum())
        s.bytes_hops += int((nbytes * nhops).sum())
        s.messages += int(sr.size)
        active[sr, sc] = active[dr, dc] = True
        latency = spec.inject_latency_cycles + int(nhops.max()) * spec.hop_latency_cycles
        if spec.kind == "crossbar":
            out_b, in_b = np.zeros(self.shape), np.zeros(self.shape)
            np.add.at(out_b, (sr, sc), wire)
            np.add.at(in_b, (dr, dc), wire)
            return latency + max(out_b.max(), in_b.max()) / spec.link_bytes_per_cycle, active
        step = LinkLoads(spec)
        step.add(sr, sc, dr, dc, wire)
        self.links += step
        return latency + step.busiest() / spec.link_bytes_per_cycle, active

    # --- the run ------------------------------------------------------------------------------

    def run(self):
        p, s = self.p, self.summary
        for a in p.allocs:
            self.alloc(a, "load")
        for ld in p.loads:
            self.load(ld)
        for i, step in enumerate(p.steps):
            where = step.label or f"superstep {i}"
            for a in step.allocs:
                self.alloc(a, where)
            busy = np.zeros(self.shape)
            for cp in step.computes:
                for name in {r.buffer for op in cp.ops for r in op.reads + op.writes}:
                    mask = np.zeros(self.shape, bool)
                    mask[cp.pes.r0:cp.pes.r1, cp.pes.c0:cp.pes.c1] = True
                    self._check_allocated(name, mask, where)
                self.compute(cp, busy)
            cycles, active = self.exchange(step.transfers, where)
            for f in step.frees:
                self.free(f)
            s.compute_cycles += busy
            s.comm_cycles += np.where(active, cycles, 0.0)
            s.makespan_cycles += float(busy.max()) + cycles + self.spec.sync_cycles
        for st in p.stores:
            self.store(st)
        for f in p.frees:
            self.free(f)
        s.supersteps = len(p.steps)
        s.link_bytes = self.links.as_dict()
        return {a.name: self.host[a.name] for a in p.outputs}, s


def hops_many(sr, sc, dr, dc, spec) -> np.ndarray:
    """`routes.hops` for arrays of messages."""
    if spec.kind == "crossbar":
        return ((sr != dr) | (sc != dc)).astype(np.int64)
    dy, dx = np.abs(sr - dr), np.abs(sc - dc)
    if spec.kind == "torus":
        dy, dx = np.minimum(dy, spec.rows - dy), np.minimum(dx, spec.cols - dx)
    return dy + dx


def run_bsp(program: MeshProgram, inputs: dict):
    """(outputs, CostSummary) of running `program` on `inputs` (host array name -> array)."""
    return BspRun(program, inputs).run()
