"""The general plan of a stage: its points spread over the PEs, each with windows of its data.

Every stage of every tile program has this plan, whatever its ops.  A stage run (a stage at
one iteration of the loops around it) becomes two supersteps:

1. *fetch*: the PEs allocate a window per buffer for each point they run (the bounding box of
   the point's regions of that buffer, one slot per point), and every home block (`home.Home`)
   sends each window the part of the point's read box it holds;
2. *compute*: each PE runs the stage's ops on its windows, slot by slot, the regions rebased
   to the windows (one SPMD compute over rectangles of PEs when every point's regions sit
   at the same offsets in its windows, else one compute per point), then sends the written
   regions back to their homes and frees the windows.

This is correct because a stage's points are independent (the tile IR's contract): no point
reads what another writes, so fetching everything first and writing everything back after
is the stage's own semantics.  It is the "virtual global memory" plan T10 improves on:
general, but every stage pays a round trip through the homes (`plan_gemm` has the
compute-shift plans of the stages that are one big product).  Points go to PEs in row-major
blocks of `K` (as many as the SRAM left after the homes holds; more points than `K` per PE
run in rounds).
"""

from __future__ import annotations

import numpy as np

from fractal.backends.pointwise import stage_points
from fractal.lower.tile_affine import aff, evaluate_many
from fractal.lower.tile_ir import Dim, Region, Scatter, Stage
from fractal.lower.rewrite import map_regions

from .errors import SramCapacityError
from .home import Box, Home
from .mesh_ir import Alloc, Compute, Free, Pes, Superstep, sends

SLOT = "slot"


def _extent(size, stride) -> int:
    return 1 if size is None else (size - 1) * stride + 1 if size > 0 else 0


def _regions(op):
    """(region, is read, is written) of an op; a scatter reads its destination (it keeps the rows
    it does not name, so the window must hold them)."""
    out = [(r, True, False) for r in op.reads] + [(r, False, True) for r in op.writes]
    if isinstance(op, Scatter):
        out.append((op.dst, True, False))
    return out


class WindowPlan:
    """The window plan of one stage run (module docstring): `steps()` gives its supersteps."""

    def __init__(self, planner, stage: Stage, env: dict, label: str):
        self.planner, self.stage, self.label = planner, stage, label
        self.points = list(stage_points(stage.dims, env))
        n = len(self.points)
        names = sorted({v for p in self.points[:1] for v in p})
        self.values = {v: np.array([p[v] for p in self.points], dtype=np.int64) for v in names}
        self.n = n
        self.serial = any(isinstance(op, Scatter) and not planner.is_const(op.index.buffer) for op in stage.body)
        # per region occurrence: its buffer, starts (n, ndim) and extents (ndim,)
        self.boxes = {}       # buffer -> dict(lo=(n, d), hi=(n, d), read_lo, read_hi, has_read)
        self.occ = []         # (op index, region, starts array)
        for k, op in enumerate(stage.body):
            for r, is_read, is_write in _regions(op):
                ext = np.array([_extent(s, st) for s, st in zip(r.size, r.stride)], dtype=np.int64)
                if planner.home(r.buffer) is None or (ext == 0).any():
                    continue
                starts = np.stack([np.broadcast_to(evaluate_many(a, self.values), (n,)) for a in r.start], 1) \
                    if r.start else np.zeros((n, 0), np.int64)
                self.occ.append((k, r, starts, is_write))
                self._widen(r.buffer, starts, starts + ext, is_read)

    def _widen(self, buffer, lo, hi, is_read):
        b = self.boxes.setdefault(buffer, {"lo": lo, "hi": hi, "read_lo": None, "read_hi": None})
        b["lo"], b["hi"] = np.minimum(b["lo"], lo), np.maximum(b["hi"], hi)
        if is_read:
            b["read_lo"] = lo if b["read_lo"] is None else np.minimum(b["read_lo"], lo)
            b["read_hi"] = hi if b["read_hi"] is None else np.maximum(b["read_hi"], hi)

    def slot_bytes(self) -> dict[str, tuple[tuple[int, ...], int]]:
        """Per buffer, the window shape (without the slot axis) and its bytes per slot."""
        out = {}
        for name, b in self.boxes.items():
            shape = tuple(int(x) for x in (b["hi"] - b["lo"]).max(axis=0)) if self.n else ()
            out[name] = shape, int(np.prod(shape, dtype=np.int64)) * self.planner.itemsize(name)
        return out

    def steps(self) -> list[Superstep]:
        if not self.n:
            return []
        p, spec = self.planner, self.planner.spec
        windows = self.slot_bytes()
        per_slot = sum(b for _, b in windows.values())
        room = spec.usable_bytes - p.home_peak
        if per_slot > room:
            raise SramCapacityError((0, 0), self.label, f"the windows of one point of {self.stage.name}", per_slot,
                                    p.home_peak, spec.usable_bytes)
        pes = spec.pes
        K = max(1, min(-(-self.n // pes), room // max(per_slot, 1)))
        if self.serial:   # a scatter whose rows are known only at run time: one point at a time
            K, pes = 1, 1
        out = []
        for start in range(0, self.n, K * pes):
            out += self._round(start, min(self.n, start + K * pes), K, windows)
        return out

    def _round(self, first: int, last: int, K: int, windows) -> list[Superstep]:
        p, cols = self.planner, self.planner.spec.cols
        count = last - first
        used = -(-count // K)
        wnames = {name: p.window(self.stage.name, name, (K,) + shape) for name, (shape, _) in windows.items()}
        groups = self._rectangles(count, K, used, cols)
        allocs = tuple(Alloc(tuple(wnames.values()), rect) for rect, _ in groups)
        fetch, back = [], []
        for i in range(first, last):
            q, slot = divmod(i - first, K)
            pe = (q // cols, q % cols)
            for name, b in self.boxes.items():
                home, win_lo = p.home(name), b["lo"][i]
                if b["read_lo"] is not None:
                    box = tuple(zip(b["read_lo"][i], b["read_hi"][i]))
                    fetch += [(owner, pe, _home_part(home, part, blk), _window_part(wnames[name], slot, part, win_lo))
                              for owner, part, blk in home.pieces(box)]
            seen = set()
            for k, r, starts, is_write in self.occ:
                if not is_write:
                    continue
                home, win_lo = p.home(r.buffer), self.boxes[r.buffer]["lo"][i]
                for box in self._written(self.stage.body[k], r, starts[i], i):
                    if (r.buffer, box) in seen:
                        continue
                    seen.add((r.buffer, box))
                    back += [(pe, owner, _window_part(wnames[r.buffer], slot, part, win_lo), _home_part(home, part, blk))
                             for owner, part, blk in home.pieces(box)]
        computes = self._computes(first, last, K, groups, wnames)
        frees = tuple(Free(tuple(wnames.values()), rect) for rect, _ in groups)
        return [Superstep(f"{self.label} fetch", allocs=allocs, transfers=sends(fetch)),
                Superstep(self.label, computes=tuple(computes), transfers=sends(back), frees=frees)]

    def _written(self, op, r: Region, starts, i: int) -> list[Box]:
        """The boxes a write region really writes at point i: all of it, except a scatter's,
        which writes only the rows its index names when the index is a const table (read at
        plan time; an index computed at run time makes the stage run point by point)."""
        ext = [_extent(s, st) for s, st in zip(r.size, r.stride)]
        box = tuple((int(a), int(a) + e) for a, e in zip(starts, ext))
        if not isinstance(op, Scatter) or not self.planner.is_const(op.index.buffer):
            return [box]
        axis = [a for a, s in enumerate(r.size) if s is not None][op.axis]
        size, stride = r.size[axis], r.stride[axis]
        index = self.planner.const_region(op.index, {v: int(x[i]) for v, x in self.values.items()})
        rows = sorted({int(i) % size if i < 0 else int(i) for i in index if -size <= i < size})
        out = []
        for row in rows:
            lo = box[axis][0] + row * stride
            out.append(box[:axis] + ((lo, lo + 1),) + box[axis + 1:])
        return out

    @staticmethod
    def _rectangles(count, K, used, cols) -> list[tuple[Pes, int]]:
        """The used PEs (0..used-1 in row-major order) as rectangles, with the points each PE runs."""
        full = count // K                      # PEs with K points
        out = []
        if full // cols:
            out.append((Pes(0, full // cols, 0, cols), K))
        if full % cols:
            out.append((Pes(full // cols, full // cols + 1, 0, full % cols), K))
        if used > full:
            out.append((Pes.one(full // cols, full % cols), count - full * K))
        return out

    def _computes(self, first, last, K, groups, wnames) -> list[Compute]:
        """One SPMD compute per rectangle when offsets are the same at every point, else per point."""
        rebased, uniform = {}, True
        for k, r, starts, _ in self.occ:
            offsets = starts[first:last] - self.boxes[r.buffer]["lo"][first:last]
            if (offsets != offsets[:1]).any():
                uniform = False
            rebased[(k, r)] = offsets
        if uniform:
            ops = tuple(self._rebase(op, k, rebased, wnames, None) for k, op in enumerate(self.stage.body))
            return [Compute(rect, ops, (Dim(SLOT, 0, n),), self.stage.name) for rect, n in groups]
        out, cols = [], self.planner.spec.cols
        for i in range(first, last):
            q, slot = divmod(i - first, K)
            ops = tuple(self._rebase(op, k, rebased, wnames, (i - first, slot)) for k, op in enumerate(self.stage.body))
            out.append(Compute(Pes.one(q // cols, q % cols), ops, (), self.stage.name))
        return out

    def _rebase(self, op, k, rebased, wnames, point):
        def move(r: Region) -> Region:
            offsets = rebased.get((k, r))
            if offsets is None:      # an empty region: it touches nothing, anywhere
                return Region(wnames.get(r.buffer, r.buffer), (0,) * (len(r.size) + 1), (None,) + r.size,
                              (1,) + r.stride) if r.buffer in wnames else r
            row, slot = (0, aff(SLOT)) if point is None else point
            return Region(wnames[r.buffer], (slot,) + tuple(int(x) for x in offsets[row]), (None,) + r.size,
                          (1,) + r.stride)
        return map_regions(op, move)


def _home_part(home: Home, part: Box, block: Box) -> tuple:
    """A message's side in a home block: (buffer, starts, sizes)."""
    return (home.local, tuple(lo - blo for (lo, _), (blo, _) in zip(part, block)), tuple(hi - lo for lo, hi in part))


def _window_part(window: str, slot: int, part: Box, win_lo) -> tuple:
    """A message's side in a point's window slot (the slot axis is an index)."""
    return (window, (slot,) + tuple(int(lo - w) for (lo, _), w in zip(part, win_lo)),
            (None,) + tuple(hi - lo for lo, hi in part))
