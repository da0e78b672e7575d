"""What a mesh program needs of its machine: SRAM per PE over the program, channels per router.

`walk(program, capacity)` follows the program in the order executors run it (the initial
allocs and the loads, then per superstep its allocs, computes, transfers and frees, then the
stores and the final frees) with one boolean grid per buffer (where it is allocated) and the
live bytes per PE, a whole rectangle at a time.  A buffer used where it is not allocated,
allocated where it already is, or freed where it is not is a `VerifyError`.  A PE that sends
from a buffer and receives into it in one superstep (a rotation) needs, while the transfers
run, room for what it receives besides: those bytes count at that point, then go.  With a
`capacity` (`spec.usable_bytes`), live bytes above it raise `SramCapacityError`: a plan that
needs exactly the capacity fits.  `sram_high_water` gives each PE's peak and what set it
(where and which buffer first reached it), for the cost report.

Channels: a message crosses the routers on its route (`routes.route`), its source's and its
destination's.  Routes are configured for the whole program (a WSE color, a virtual channel),
so `router_channels` counts, per router, the distinct channels of every message of the
program (collectives expanded as `collectives.expand` does, one line of a rectangle at a time:
a line's messages stay on its row or column); `check_channels` raises `RouteLimitError` where
that exceeds `spec.max_channels_per_router` (when it is above 0).
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import lru_cache

import numpy as np

from fractal.lang.errors import VerifyError

from .collectives import multicast_pairs, shift_pairs
from .errors import RouteLimitError, SramCapacityError
from .mesh_ir import Multicast, Pes, Send, Sends, Shift
from .traffic import LinkLoads
from .routes import route
from .spec import MeshSpec


def walk(program, capacity: int | None = None) -> tuple[np.ndarray, dict]:
    """The per-PE high-water mark (an int64 array of the mesh's shape) and, per PE that holds
    anything, the (where, buffer) that set it; raises as the module docstring says."""
    m = _Memory(program, capacity)
    m.where, m.place = "load", "the initial allocs"
    for a in program.allocs:
        m.alloc(a)
    m.place = "the loads"
    for x in program.loads:
        m.use(x.dst.buffer, x.pes, "a load", x)
    for k, step in enumerate(program.steps):
        m.where = step.label or f"superstep {k}"
        m.place = f"superstep {step.label!r}" if step.label else f"superstep {k}"
        for a in step.allocs:
            m.alloc(a)
        for c in step.computes:
            for name in dict.fromkeys(r.buffer for op in c.ops for r in op.reads + op.writes):
                m.use(name, c.pes, "a compute", c)
        m.transfers(step.transfers)
        for f in step.frees:
            m.free(f)
    m.where, m.place = "store", "the stores"
    for x in program.stores:
        m.use(x.src.buffer, x.pes, "a store", x)
    m.place = "the final frees"
    for f in program.frees:
        m.free(f)
    at = {(int(r), int(c)): m.causes[m.peak_at[r, c]] for r, c in np.argwhere(m.peak_at >= 0)}
    return m.peak, at


def sram_high_water(program) -> tuple[np.ndarray, dict]:
    """Each PE's peak live bytes (rows, cols) and {pe: (where, buffer)} that set it, with no
    capacity check (the report shows a plan that does not fit too)."""
    return walk(program, None)


def _sel(p: Pes) -> tuple[slice, slice]:
    return slice(p.r0, p.r1), slice(p.c0, p.c1)


def _first(mask: np.ndarray, p: Pes) -> tuple[int, int]:
    r, c = np.argwhere(mask)[0]
    return int(r) + p.r0, int(c) + p.c0


class _Memory:
    def __init__(self, program, capacity):
        self.p, self.capacity = program, capacity
        self.shape = (program.spec.rows, program.spec.cols)
        self.held: dict[str, np.ndarray] = {}
        self.live = np.zeros(self.shape, np.int64)
        self.peak = np.zeros(self.shape, np.int64)
        self.peak_at = np.full(self.shape, -1, np.int64)   # index into causes
        self.causes: list[tuple[str, str]] = []
        self.where = self.place = ""  # where in the program the walk is: for the report, for messages

    def grid(self, name: str) -> np.ndarray:
        if name not in self.held:
            self.held[name] = np.zeros(self.shape, bool)
        return self.held[name]

    def fail(self, message: str, node) -> VerifyError:
        return VerifyError(f"{message}\n  in {self.place}: {str(node).split(chr(10))[0]}")

    def alloc(self, a) -> None:
        for name in a.buffers:
            held = self.grid(name)[_sel(a.pes)]
            if held.any():
                raise self.fail(f"buffer {name!r} is allocated twice on PE {_first(held, a.pes)}", a)
            held[...] = True
            extra = np.zeros(self.shape, np.int64)
            extra[_sel(a.pes)] = self.p.buffer(name).nbytes
            self.live = self.need(extra, name, self.live)

    def free(self, f) -> None:
        for name in f.buffers:
            held = self.grid(name)[_sel(f.pes)]
            if not held.all():
                raise self.fail(f"buffer {name!r} is freed on PE {_first(~held, f.pes)}, where it is not allocated", f)
            held[...] = False
            self.live[_sel(f.pes)] -= self.p.buffer(name).nbytes

    def use(self, name: str, pes: Pes, what: str, node) -> None:
        held = self.grid(name)[_sel(pes)]
        if not held.all():
            raise self.fail(f"{what} uses buffer {name!r} on PE {_first(~held, pes)}, where it is not allocated", node)

    def transfers(self, transfers) -> None:
        sends: dict[str, np.ndarray] = {}
        received: dict[str, np.ndarray] = {}
        for t in transfers:
            if isinstance(t, Sends):   # a table: masks of its senders and receivers
                if not len(t):
                    continue
                r = np.array(t.routes, np.int64)
                for name, rows, cols in ((t.src.buffer, r[:, 0], r[:, 1]), (t.dst.buffer, r[:, 2], r[:, 3])):
                    held = self.grid(name)[rows, cols]
                    if not held.all():
                        i = int(np.argmin(held))
                        raise self.fail(f"a transfer (sends) uses buffer {name!r} on PE ({rows[i]}, {cols[i]}), where it "
                                        f"is not allocated", t)
                sends.setdefault(t.src.buffer, np.zeros(self.shape, bool))[r[:, 0], r[:, 1]] = True
                np.add.at(received.setdefault(t.dst.buffer, np.zeros(self.shape, np.int64)), (r[:, 2], r[:, 3]),
                          _nbytes(t.dst, self.p))
                continue
            for senders, src, receivers, dst, nbytes in _moves(t, self.p):
                self.use(src, senders, f"a transfer ({_kind(t)})", t)
                self.use(dst, receivers, f"a transfer ({_kind(t)})", t)
                if src not in sends:
                    sends[src] = np.zeros(self.shape, bool)
                if dst not in received:
                    received[dst] = np.zeros(self.shape, np.int64)
                sends[src][_sel(senders)] = True
                received[dst][_sel(receivers)] += nbytes
        live = self.live
        for name, incoming in received.items():  # a rotation: room for the incoming piece too
            if name in sends:
                live = self.need(np.where(sends[name], incoming, 0), name, live)

    def need(self, extra: np.ndarray, name: str, base: np.ndarray) -> np.ndarray:
        """`base + extra`, checked against the capacity; raises the high-water marks it passes."""
        total = base + extra
        if self.capacity is not None and (total > self.capacity).any():
            r, c = np.argwhere(total > self.capacity)[0]
            raise SramCapacityError((r, c), self.where, name, extra[r, c], base[r, c], self.capacity)
        higher = total > self.peak
        if higher.any():
            self.peak = np.where(higher, total, self.peak)
            self.peak_at[higher] = len(self.causes)
            self.causes.append((self.where, name))
        return total


def _kind(t) -> str:
    return type(t).__name__.lower()


def _moves(t, program):
    """(senders, source buffer, receivers, destination buffer, bytes each receiver gets) of a transfer."""
    if isinstance(t, Send):
        r = t.dst_region
        return [(Pes.one(*t.src), t.src_region.buffer, Pes.one(*t.dst), r.buffer, _nbytes(r, program))]
    senders = t.pes
    if isinstance(t, Multicast) and t.axis == "all":
        width = t.pes.c1 - t.pes.c0
        senders = Pes.one(t.pes.r0 + t.root // width, t.pes.c0 + t.root % width)
    elif isinstance(t, Multicast):
        line = t.pes.c0 + t.root if t.axis == "row" else t.pes.r0 + t.root
        senders = replace(t.pes, c0=line, c1=line + 1) if t.axis == "row" else replace(t.pes, r0=line, r1=line + 1)
    return [(senders, t.src.buffer, t.pes, t.dst.buffer, _nbytes(t.dst, program))]


def _nbytes(r, program) -> int:
    return math.prod(r.shape) * program.buffer(r.buffer).dtype.itemsize


# --- channels -------------------------------------------------------------------------------------

def router_channels(program) -> np.ndarray:
    """The number of distinct channels whose messages cross each router (rows, cols)."""
    masks = _channel_masks(program)
    out = np.zeros((program.spec.rows, program.spec.cols), np.int64)
    for mask in masks.values():
        out += mask
    return out


def check_channels(program) -> None:
    limit = program.spec.max_channels_per_router
    if limit <= 0:
        return
    masks = _channel_masks(program)
    counts = sum(masks.values(), np.zeros((program.spec.rows, program.spec.cols), np.int64))
    if counts.max() > limit:
        r, c = (int(x) for x in np.argwhere(counts > limit)[0])
        raise RouteLimitError((r, c), counts[r, c], limit, tuple(sorted(k for k, m in masks.items() if m[r, c])))


def _channel_masks(program) -> dict[int, np.ndarray]:
    spec, masks = program.spec, {}
    for step in program.steps:
        for t in step.transfers:
            mask = masks.setdefault(t.channel, np.zeros((spec.rows, spec.cols), bool))
            if isinstance(t, Sends):
                if len(t):
                    mask |= _touched_many(np.array(t.routes, np.int64), spec)
                continue
            if isinstance(t, Send):
                for r, c in _touched(t.src, t.dst, spec):
                    mask[r, c] = True
                continue
            if t.axis == "all":   # a broadcast's tree reaches every PE of its rectangle
                mask[_sel(t.pes)] = True
                continue
            line = _line_touched(type(t), t.axis, t.by if isinstance(t, Shift) else t.root,
                                 getattr(t, "ring", "wrap"), t.pes, spec)
            if t.axis == "row":
                mask[t.pes.r0:t.pes.r1, list(line)] = True
            else:
                mask[list(line), t.pes.c0:t.pes.c1] = True
    return masks


def _touched_many(routes: np.ndarray, spec: MeshSpec) -> np.ndarray:
    """The routers many messages (rows of src r, c, dst r, c) cross, as a mask: their ends and
    the ends of every link their routes load (`traffic.LinkLoads`, the same routes)."""
    out = np.zeros((spec.rows, spec.cols), bool)
    out[routes[:, 0], routes[:, 1]] = out[routes[:, 2], routes[:, 3]] = True
    loads = LinkLoads(spec)
    loads.add(routes[:, 0], routes[:, 1], routes[:, 2], routes[:, 3], 1.0)
    for (a, b) in loads.as_dict():
        out[a] = out[b] = True
    return out


def _touched(src, dst, spec: MeshSpec) -> set[tuple[int, int]]:
    """The routers a message crosses: its source, its destination and every link's ends."""
    out = {tuple(src), tuple(dst)}
    for a, b in route(tuple(src), tuple(dst), spec):
        out |= {a, b}
    return out


@lru_cache(maxsize=4096)
def _line_touched(kind, axis: str, by_or_root: int, ring: str, pes: Pes, spec: MeshSpec) -> tuple[int, ...]:
    """The offsets along `axis` (columns of a row, rows of a column) that the messages of one line
    of a shift or multicast cross: every line of the rectangle crosses the same ones."""
    if axis == "row":
        line = replace(pes, r1=pes.r0 + 1)
    else:
        line = replace(pes, c1=pes.c0 + 1)
    if kind is Shift:
        pairs = shift_pairs(Shift(line, None, None, axis, by_or_root, ring))
    else:
        pairs = multicast_pairs(Multicast(line, None, None, axis, by_or_root))
    touched = set().union(*(_touched(a, b, spec) for a, b in pairs))
    return tuple(sorted({c if axis == "row" else r for r, c in touched}))
