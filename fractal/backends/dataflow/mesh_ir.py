"""The mesh IR: what the dataflow planner emits and every executor (BSP, event, MPI) runs.

A `MeshProgram` is SPMD code for a `MeshSpec` (`fractal.backends.dataflow.spec`): host arrays
(the tile program's inputs, outputs and consts), local buffers that PEs allocate in their
private SRAM, `Load`s from host arrays before the first step, a list of `Superstep`s, and
`Store`s to the host after the last.  A superstep runs, in order: its `Alloc`s; its
`Compute`s (each PE of a compute's `Pes` runs the tile ops (`fractal.lower.tile_ir`'s
`Copy`, `Gemm`, `Elementwise`...) on its own buffers, once per point of the compute's
local loop nest `dims`); its transfers, which read every source after the computes and
write every destination after all reads (a rotation may send and receive the same buffer);
its `Free`s.  Region starts are indices (`Aff`s) that may read the PE's row and column
`pr` and `pc` and the compute's dims; a PE touches only its own buffers (a compute that
names a host array is a remote load, rejected by `verify`).

Transfers: `Send` is one point-to-point message between two PEs on a channel; `Shift` and
`Multicast` are collectives over a rectangle of PEs that executors may run whole (the BSP
engine rolls a grid axis) and that expand to `Send`s (`expand`): a shift moves every PE's
region `by` places along its row or column ring, a multicast sends the region of the PE at
`root` of every line to the whole line.  A ring is embedded on its line `"wrap"` (logical
order = physical order: one hop per step and one long wrap-around path) or `"interleaved"`
(0, 2, 4, ..., 5, 3, 1: every logical neighbour at most two hops away, WaferLLM's MeshGEMM).

Printed (`fractal.backends.dataflow.mesh_printer`; `mesh_parser` reads it back), a Cannon
product of two 4x4 matrices on 2x2 PEs::

    mesh @cannon {
      machine "tiny-2x2" {
        rows 2 "user"
        cols 2 "user"
        kind mesh "tests"
        sram_bytes 65536 "tests"
        reserved_bytes 0 "tests"
        flops_per_cycle [float32 1.0] "tests"
        sram_bytes_per_cycle 4.0 "tests"
        kernel_overhead_cycles 0 "tests"
        link_bytes_per_cycle 4.0 "tests"
        hop_latency_cycles 1 "tests"
        inject_latency_cycles 0 "not modelled by this preset (the default)"
        max_packet_bytes 0 "not modelled by this preset (the default)"
        packet_header_bytes 0 "not modelled by this preset (the default)"
        routing xy "not modelled by this preset (the default)"
        max_channels_per_router 0 "not modelled by this preset (the default)"
        sync_cycles 0 "tests"
        clock_hz 1000000000.0 "tests"
      }
      array a: f32[4,4] input
      array b: f32[4,4] input
      array c: f32[4,4] output
      buffer ta: f32[2,2]
      buffer tb: f32[2,2]
      buffer tc: f32[2,2]
      alloc ta, tb, tc on pes[0:2, 0:2]
      load pes[0:2, 0:2]: ta[0:2, 0:2] = a[2*pr:2*pr + 2, 2*((pc + pr) mod 2):2*((pc + pr) mod 2) + 2]
      load pes[0:2, 0:2]: tb[0:2, 0:2] = b[2*((pc + pr) mod 2):2*((pc + pr) mod 2) + 2, 2*pc:2*pc + 2]
      superstep "step 0" {
        compute pes[0:2, 0:2] {
          tc[0:2, 0:2] = gemm(ta[0:2, 0:2], tb[0:2, 0:2])
        }
        shift pes[0:2, 0:2] row by -1 wrap channel 0: ta[0:2, 0:2] -> ta[0:2, 0:2]
        shift pes[0:2, 0:2] col by -1 wrap channel 1: tb[0:2, 0:2] -> tb[0:2, 0:2]
      }
      superstep "step 1" {
        compute pes[0:2, 0:2] {
          tc[0:2, 0:2] += gemm(ta[0:2, 0:2], tb[0:2, 0:2])
        }
      }
      store pes[0:2, 0:2]: c[2*pr:2*pr + 2, 2*pc:2*pc + 2] = tc[0:2, 0:2]
    }
"""

from __future__ import annotations

import functools

from dataclasses import dataclass, field
from typing import Iterator, Union

import numpy as np

from fractal.lang.ir_nodes import Const as ArrayConst
from fractal.lower.tile_ir import Dim, Region, TileOp
from fractal.lower.tile_affine import aff

from .spec import MeshSpec

PE_VARS = ("pr", "pc")          # a PE's row and column, readable by region starts
AXES = ("row", "col", "all")    # along a row (columns change), a column; "all": a multicast to a rectangle
RINGS = ("wrap", "interleaved")
ROLES = ("input", "output", "const")


def _set(obj, name, value) -> None:
    object.__setattr__(obj, name, value)


@dataclass(frozen=True)
class Pes:
    """A rectangle of PEs: rows `r0:r1`, columns `c0:c1` (half-open), printed `pes[r0:r1, c0:c1]`."""

    r0: int
    r1: int
    c0: int
    c1: int

    def __post_init__(self):
        for name in ("r0", "r1", "c0", "c1"):
            _set(self, name, int(getattr(self, name)))

    @classmethod
    def one(cls, r: int, c: int) -> "Pes":
        return cls(r, r + 1, c, c + 1)

    @property
    def shape(self) -> tuple[int, int]:
        return max(0, self.r1 - self.r0), max(0, self.c1 - self.c0)

    @property
    def count(self) -> int:
        return self.shape[0] * self.shape[1]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for r in range(self.r0, self.r1):
            for c in range(self.c0, self.c1):
                yield r, c

    def __contains__(self, pe) -> bool:
        r, c = pe
        return self.r0 <= r < self.r1 and self.c0 <= c < self.c1

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Every PE's row and column as two arrays of the rectangle's shape."""
        return np.meshgrid(np.arange(self.r0, self.r1), np.arange(self.c0, self.c1), indexing="ij")


def rectangles(counts: dict, cols: int) -> list[tuple[Pes, int]]:
    """PEs (ids) with their point counts as rectangles of equal counts: runs along each row."""
    out, run = [], None
    for q in sorted(counts):
        r, c = divmod(q, cols)
        if run and run[0] == r and run[2] == c and run[3] == counts[q]:
            run[2] += 1
        else:
            if run:
                out.append(run)
            run = [r, c, c + 1, counts[q]]
    if run:
        out.append(run)
    merged = []   # stack equal runs of consecutive rows into one rectangle
    for r, c0, c1, n in out:
        if merged and merged[-1][1] == r and merged[-1][2:] == [c0, c1, n]:
            merged[-1][1] = r + 1
        else:
            merged.append([r, r + 1, c0, c1, n])
    return [(Pes(r0, r1, c0, c1), n) for r0, r1, c0, c1, n in merged]


def covering(ids, cols: int) -> list[Pes]:
    """Rectangles that cover exactly the PEs `ids` (row-major ids), as few as `rectangles` finds."""
    return [rect for rect, _ in rectangles(dict.fromkeys(sorted(set(int(q) for q in ids)), 1), cols)]


@dataclass(frozen=True)
class HostArray:
    """A host-side array: a tile program's input, output or const (with its `data`)."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    role: str = "input"
    data: ArrayConst | None = None

    def __post_init__(self):
        _set(self, "shape", tuple(int(d) for d in self.shape))
        _set(self, "dtype", np.dtype(self.dtype))
        if self.data is not None and not isinstance(self.data, ArrayConst):
            _set(self, "data", ArrayConst(self.data))

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


@dataclass(frozen=True)
class LocalBuffer:
    """A buffer in SRAM: every PE that allocates it holds one array of `shape`."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype

    def __post_init__(self):
        _set(self, "shape", tuple(int(d) for d in self.shape))
        _set(self, "dtype", np.dtype(self.dtype))

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


@dataclass(frozen=True)
class Alloc:
    buffers: tuple[str, ...]
    pes: Pes

    def __post_init__(self):
        _set(self, "buffers", tuple(self.buffers))


@dataclass(frozen=True)
class Free:
    buffers: tuple[str, ...]
    pes: Pes

    def __post_init__(self):
        _set(self, "buffers", tuple(self.buffers))


@dataclass(frozen=True)
class Load:
    """Every PE of `pes` copies the host array's region `src` into its local region `dst`."""

    pes: Pes
    dst: Region
    src: Region


@dataclass(frozen=True)
class Store:
    """Every PE of `pes` copies its local region `src` into the host array's region `dst`."""

    pes: Pes
    dst: Region
    src: Region


@dataclass(frozen=True)
class Compute:
    """Every PE of `pes` runs `ops` on its own buffers at each point of `dims` (nested like a
    stage's; bounds may read `pr`, `pc`).  `label` names what it came from (a tile-IR stage)."""

    pes: Pes
    ops: tuple[TileOp, ...]
    dims: tuple[Dim, ...] = ()
    label: str = ""

    def __post_init__(self):
        _set(self, "ops", tuple(self.ops))
        _set(self, "dims", tuple(Dim(v, aff(a), aff(b)) for v, a, b in self.dims))


@dataclass(frozen=True)
class Send:
    """One message: PE `src`'s region `src_region` into PE `dst`'s `dst_region` (equal sizes,
    row-major element order), on `channel`."""

    src: tuple[int, int]
    dst: tuple[int, int]
    src_region: Region
    dst_region: Region
    channel: int = 0

    def __post_init__(self):
        _set(self, "src", tuple(int(x) for x in self.src))
        _set(self, "dst", tuple(int(x) for x in self.dst))


@dataclass(frozen=True)
class Shift:
    """Every PE of `pes` sends `src` to the PE `by` places further along its line's ring
    (`axis="row"`: the PEs of its row in `pes`), which receives it into `dst`."""

    pes: Pes
    src: Region
    dst: Region
    axis: str = "row"
    by: int = 1
    ring: str = "wrap"
    channel: int = 0


@dataclass(frozen=True)
class Multicast:
    """In every line of `pes` along `axis`, the PE at offset `root` sends `src` to every PE of
    the line (itself included), which receives it into `dst`; `axis="all"`: the PE at offset
    `root` of the rectangle (row-major) sends to every PE of the rectangle (a broadcast)."""

    pes: Pes
    src: Region
    dst: Region
    axis: str = "row"
    root: int = 0
    channel: int = 0


@dataclass(frozen=True, eq=False)
class Sends:
    """Many messages of one shape between two buffers, as a table (a plan's fetches and
    write-backs: thousands of them): message i copies the region of `src`'s buffer, sizes
    and strides at `src_starts[i]` on PE `routes[i][:2]` into `dst`'s at `dst_starts[i]` on
    PE `routes[i][2:]`.  `src` and `dst` are templates (their own starts are zeros); `expand`
    gives the `Send`s.  The table is three read-only int64 arrays, `routes` (n, 4) and the
    starts (n, ndim): a plan builds them whole with NumPy (`sends_table`) or from rows (`sends`)."""

    src: Region
    dst: Region
    routes: np.ndarray
    src_starts: np.ndarray
    dst_starts: np.ndarray
    channel: int = 0

    def __post_init__(self):
        _set(self, "routes", _table(self.routes, 4))
        _set(self, "src_starts", _table(self.src_starts, len(self.src.size)))
        _set(self, "dst_starts", _table(self.dst_starts, len(self.dst.size)))

    def __len__(self) -> int:
        return len(self.routes)

    def __eq__(self, other) -> bool:
        return isinstance(other, Sends) and (self.src, self.dst, self.channel) == (other.src, other.dst, other.channel) \
            and all(np.array_equal(getattr(self, f), getattr(other, f)) for f in ("routes", "src_starts", "dst_starts"))

    def __hash__(self) -> int:
        return hash((self.src, self.dst, self.channel, self.routes.tobytes(), self.src_starts.tobytes(),
                     self.dst_starts.tobytes()))


def _table(rows, width: int) -> np.ndarray:
    """Rows (a sequence of tuples or an array) as a read-only (n, width) int64 array."""
    a = np.asarray(rows, np.int64)   # (no copy of a plan's fresh int64 table: big plans hold millions of rows)
    a = a.reshape(len(a), width) if a.size or width else a.reshape(len(a), 0)
    a = a.view()
    a.flags.writeable = False
    return a


@functools.lru_cache(maxsize=1 << 14)
def _template(buffer: str, size, stride) -> Region:
    return Region(buffer, (0,) * len(size), size, stride)   # (immutable: plans ask for the same ones again)


def sends(rows, channel: int = 0) -> tuple[Sends, ...]:
    """Message rows `(src PE, dst PE, src buffer, src starts, dst buffer, dst starts, sizes...)`
    as `Sends` tables, one per (buffers, sizes): each row is `(src_pe, dst_pe, (src buffer,
    src starts, src sizes), (dst buffer, dst starts, dst sizes))` with unit strides."""
    groups: dict = {}
    for src_pe, dst_pe, (sbuf, sstart, ssize), (dbuf, dstart, dsize) in rows:
        g = groups.setdefault((sbuf, tuple(ssize), dbuf, tuple(dsize)), ([], [], []))
        g[0].append((int(src_pe[0]), int(src_pe[1]), int(dst_pe[0]), int(dst_pe[1])))
        g[1].append(tuple(int(x) for x in sstart))
        g[2].append(tuple(int(x) for x in dstart))
    return tuple(Sends(_template(sb, ss, (1,) * len(ss)), _template(db, ds, (1,) * len(ds)), r, a, b, channel)
                 for (sb, ss, db, ds), (r, a, b) in groups.items())


def sends_table(src: str, dst: str, routes: np.ndarray, src_starts: np.ndarray, dst_starts: np.ndarray,
                src_sizes: np.ndarray, dst_sizes: np.ndarray | None = None, src_index_axes: int = 0,
                dst_index_axes: int = 0, channel: int = 0) -> tuple[Sends, ...]:
    """Messages given as arrays, one `Sends` per distinct pair of sizes: message i copies
    `src_sizes[i]` elements of `src` at `src_starts[i]` into `dst_sizes[i]` (the same when
    None; equal counts, row-major order) of `dst` at `dst_starts[i]`, a side with index axes
    first (a window's slot: size None) starting with them.  The batch builder of plans that
    place thousands of points at once (`plan_window`, `plan_grouped`)."""
    n = len(routes)
    if not n:
        return ()
    ss = np.asarray(src_sizes, np.int64).reshape(n, -1)
    ds = ss if dst_sizes is None else np.asarray(dst_sizes, np.int64).reshape(n, -1)
    sizes = np.concatenate([ss, ds], 1)
    if (sizes == sizes[:1]).all():
        first, inverse = np.zeros(1, np.int64), np.zeros(n, np.int64)
    else:   # rows as one mixed-radix key each: a 1-D unique is much faster than unique(axis=0)
        keys = np.ravel_multi_index(tuple(sizes.T), tuple(int(m) + 1 for m in sizes.max(0)))
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    out = []
    order = np.argsort(inverse, kind="stable")   # (the rows of group g: order[ends[g] - counts[g]:ends[g]])
    counts = np.bincount(inverse, minlength=len(first))
    ends = np.cumsum(counts)
    for g, row in enumerate(first):
        rows = order[ends[g] - counts[g]:ends[g]] if len(first) > 1 else slice(None)
        ssize = (None,) * src_index_axes + tuple(int(x) for x in ss[row])
        dsize = (None,) * dst_index_axes + tuple(int(x) for x in ds[row])
        out.append(Sends(_template(src, ssize, (1,) * len(ssize)), _template(dst, dsize, (1,) * len(dsize)),
                         routes[rows], src_starts[rows], dst_starts[rows], channel))
    return tuple(out)


Transfer = Union[Send, Shift, Multicast, Sends]


@dataclass(frozen=True)
class Superstep:
    """Allocs, then computes, then transfers (all reads before any write), then frees."""

    label: str = ""
    allocs: tuple[Alloc, ...] = ()
    computes: tuple[Compute, ...] = ()
    transfers: tuple[Transfer, ...] = ()
    frees: tuple[Free, ...] = ()

    def __post_init__(self):
        for name in ("allocs", "computes", "transfers", "frees"):
            _set(self, name, tuple(getattr(self, name)))


@dataclass(frozen=True)
class MeshProgram:
    """SPMD code for `spec` (module docstring): host arrays, local buffers, loads, steps, stores.
    `allocs` run before the loads (buffers that hold data from the start)."""

    name: str
    spec: MeshSpec
    arrays: tuple[HostArray, ...]
    buffers: tuple[LocalBuffer, ...]
    allocs: tuple[Alloc, ...] = ()
    loads: tuple[Load, ...] = ()
    steps: tuple[Superstep, ...] = ()
    stores: tuple[Store, ...] = ()
    frees: tuple[Free, ...] = ()
    _index: dict = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        for name in ("arrays", "buffers", "allocs", "loads", "steps", "stores", "frees"):
            _set(self, name, tuple(getattr(self, name)))
        _set(self, "_index", {**{a.name: a for a in self.arrays}, **{b.name: b for b in self.buffers}})

    def array(self, name: str) -> HostArray:
        return self._lookup(name, HostArray, "host array")

    def buffer(self, name: str) -> LocalBuffer:
        return self._lookup(name, LocalBuffer, "local buffer")

    def _lookup(self, name, kind, what):
        found = self._index.get(name)
        if not isinstance(found, kind):
            raise KeyError(f"{self.name}: no {what} {name!r}")
        return found

    @property
    def inputs(self) -> tuple[HostArray, ...]:
        return tuple(a for a in self.arrays if a.role == "input")

    @property
    def outputs(self) -> tuple[HostArray, ...]:
        return tuple(a for a in self.arrays if a.role == "output")
