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
compute-shift plans of the stages that are one big product).  Points go to PEs in blocks of
`K` (as many as the SRAM left after the homes holds; more points than `K` per PE run in
rounds), PEs in the homes' Z order (`home.pe_order`), so that consecutive points run near
their consecutive home blocks.  A window every point reads alike and the stage does not
write (a weight its points share) has a single slot, fetched once per PE (`shared`).
"""

from __future__ import annotations

import itertools

import numpy as np

from fractal.backends.pointwise import region_starts, stage_point_values
from fractal.lower.tile_affine import aff
from fractal.lower.tile_ir import Dim, Region, Scatter, Stage
from fractal.lower.rewrite import map_regions

from .errors import SramCapacityError
from .home import Home, pe_order
from .mesh_ir import Alloc, Compute, Free, Pes, Superstep, covering, rectangles, sends_table
from .operand import box_moves
from .plan_copy import index_tables

SLOT = "slot"


def _slot_runs(lo, hi, offset, pes, slots):
    """Runs of points in consecutive slots of one PE whose boxes are the next one-element slice
    of the buffer along one axis (all axes before it one element wide, the same place in their
    windows): a run moves as one box, its slots a range.  Returns the runs' (box lo, box hi,
    offset in the window, (first slot, its point), the axis it grows along or -1)."""
    n, d = lo.shape
    join = np.zeros(n, bool)
    axis = np.full(n, -1, np.int64)
    if n > 1 and d:
        prev, cur = slice(0, -1), slice(1, None)
        ext = hi - lo
        meets = (lo[cur] == hi[prev]) & (ext[cur] == 1) & (ext[prev] == 1)
        along = np.argmax(meets, 1)
        others = (lo[cur] == lo[prev]) | meets
        before = np.cumprod(np.concatenate([np.ones((n - 1, 1), bool), ext[cur][:, :-1] == 1], 1), 1).astype(bool)
        join[1:] = (pes[cur] == pes[prev]) & (slots[cur] == slots[prev] + 1) & meets.any(1) & others.all(1) & \
            (meets.sum(1) == 1) & (ext[cur] == ext[prev]).all(1) & (offset[cur] == offset[prev]).all(1) & \
            before[np.arange(n - 1), along]
        axis[1:] = np.where(join[1:], along, -1)
        join[1:] &= ~(join[1:] & join[:-1] & (axis[1:] != axis[:-1]))   # one axis per run
    first = np.flatnonzero(~join)
    last = np.append(first[1:], n) - 1
    grows = np.where(last > first, axis[np.minimum(first + 1, n - 1)], -1)
    hi_run = hi[first].copy()
    rows = np.flatnonzero(grows >= 0)
    hi_run[rows, grows[rows]] = hi[last[rows], grows[rows]]
    return lo[first], hi_run, offset[first], (slots[first], first), grows


def _window_keys(buffer: str, occurrences) -> list[str]:
    """The window of each region occurrence of `buffer` in a stage: one window for all (the
    bounding box of the point's regions), unless that box is more than twice the regions'
    own: then occurrences that never overlap at a point get windows of their own (`buffer#j`:
    a cell reading row t of a state and writing row t + 256 needs two rows, not 257).
    Occurrences that overlap at some point share a window (a write then a read of the same
    element must meet)."""
    if len(occurrences) == 1:
        return [buffer]
    lo = [starts for _, _, starts, _, _, _ in occurrences]
    hi = [starts + ext for _, _, starts, ext, _, _ in occurrences]
    union = np.prod((np.maximum.reduce(hi) - np.minimum.reduce(lo)).max(0), dtype=np.int64) if lo[0].size else 1
    own = sum(int(np.prod(ext, dtype=np.int64)) for _, _, _, ext, _, _ in occurrences)
    if union <= 2 * own:
        return [buffer] * len(occurrences)
    parent = list(range(len(occurrences)))

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i
    for i in range(len(occurrences)):
        for j in range(i):
            if ((lo[i] < hi[j]) & (lo[j] < hi[i])).all(1).any():
                parent[root(i)] = root(j)
    roots = sorted({root(i) for i in range(len(occurrences))})
    if len(roots) == 1:
        return [buffer] * len(occurrences)
    return [f"{buffer}#{roots.index(root(i))}" for i in range(len(occurrences))]


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
        self.values, n = stage_point_values(stage.dims, env)
        self.n = n
        self.serial = any(isinstance(op, Scatter) and not planner.is_const(op.index.buffer) for op in stage.body)
        self.boxes = {}       # window key -> dict(buffer, lo=(n, d), hi=(n, d), read_lo, read_hi)
        self.occ = []         # (op index, region, starts (n, d), is written, window key)
        self.empty = {}       # (op index, region) -> the 0-byte local buffer standing in for it
        self.key_of = {}      # (op index, region) -> its window key
        found: dict = {}      # buffer -> [(op index, region, starts, extents, is read, is written)]
        for k, op in enumerate(stage.body if n else ()):   # (a run with no points moves nothing)
            for r, is_read, is_write in _regions(op):
                ext = np.array([_extent(s, st) for s, st in zip(r.size, r.stride)], dtype=np.int64)
                if planner.home(r.buffer) is None or (ext == 0).any():
                    # an empty region (a list with no elements): it touches nothing, but its op
                    # still runs (a reduction of nothing writes its identity) on a 0-byte stand-in
                    self.empty[(k, r)] = planner.declare(
                        f"e_{r.buffer}" + "".join(f"_{0 if s is None else s}" for s in r.size),
                        tuple(1 if s is None else s for s in r.size), planner.buffers[r.buffer].dtype)
                    continue
                starts = region_starts(r, self.values, n)
                found.setdefault(r.buffer, []).append((k, r, starts, ext, is_read, is_write))
        for buffer, occurrences in found.items():
            for key, (k, r, starts, ext, is_read, is_write) in zip(_window_keys(buffer, occurrences), occurrences):
                self.occ.append((k, r, starts, is_write, key))
                self.key_of[(k, r)] = key
                self._widen(key, buffer, starts, starts + ext, is_read)

    def _widen(self, key, buffer, lo, hi, is_read):
        b = self.boxes.setdefault(key, {"buffer": buffer, "lo": lo, "hi": hi, "read_lo": None, "read_hi": None})
        b["lo"], b["hi"] = np.minimum(b["lo"], lo), np.maximum(b["hi"], hi)
        if is_read:
            b["read_lo"] = lo if b["read_lo"] is None else np.minimum(b["read_lo"], lo)
            b["read_hi"] = hi if b["read_hi"] is None else np.maximum(b["read_hi"], hi)

    def slot_bytes(self) -> dict[str, tuple[tuple[int, ...], int]]:
        """Per window, its shape (without the slot axis) and its bytes per slot."""
        out = {}
        for key, b in self.boxes.items():
            shape = tuple(int(x) for x in (b["hi"] - b["lo"]).max(axis=0)) if self.n else ()
            out[key] = shape, int(np.prod(shape, dtype=np.int64)) * self.planner.itemsize(b["buffer"])
        return out

    def steps(self) -> list[Superstep]:
        if not self.n:
            return []
        p, spec = self.planner, self.planner.spec
        windows = self.slot_bytes()
        residency = p.residency(self.stage)
        if residency is not None and not self.serial:
            resident = self._resident(residency, windows)
            if resident is not None:
                return resident
        shared = self.shared()
        per_slot = sum(b for key, (_, b) in windows.items() if key not in shared)
        once = sum(b for key, (_, b) in windows.items() if key in shared)
        free = p.free() - once                        # per PE id: SRAM left beside homes and residents
        order = pe_order(spec.rows, spec.cols)        # consecutive points near consecutive home blocks
        eligible = order[free[order] >= per_slot]
        if not len(eligible):
            q = int(np.argmax(free))
            raise SramCapacityError((q // spec.cols, q % spec.cols), self.label,
                                    f"the windows of one point of {self.stage.name}", per_slot + once,
                                    spec.usable_bytes - int(free[q]) - once, spec.usable_bytes)
        K = max(1, min(-(-self.n // len(eligible)), int(free[eligible].min()) // max(per_slot, 1)))
        if self.serial:   # a scatter whose rows are known only at run time: one point at a time
            K, eligible = 1, eligible[:1]
        out, per_round = [], K * len(eligible)
        for start in range(0, self.n, per_round):
            points = np.arange(start, min(self.n, start + per_round))
            out += self._round(points, eligible[(points - start) // K], (points - start) % K, K, windows, None, shared)
        return out

    def shared(self) -> frozenset[str]:
        """The windows every point reads alike and the stage does not write (a weight all its
        points share): one copy per PE, fetched once per round, not one per slot."""
        if self.n < 2:
            return frozenset()
        written = {key for _, _, _, is_write, key in self.occ if is_write}
        return frozenset(key for key, b in self.boxes.items()
                         if key not in written and b["read_lo"] is not None
                         and (b["lo"] == b["lo"][:1]).all() and (b["hi"] == b["hi"][:1]).all())

    def _resident(self, res, windows):
        """The run with its read-only boxes kept on their key's PEs (`residency`), or None."""
        if not res.usable:
            return None
        kept = sorted(res.buffers & set(self.boxes))
        if len(kept) < len(res.buffers & {b["buffer"] for b in self.boxes.values()}):
            return None   # a read-only buffer read through two windows: not one resident box
        if not kept:
            return None
        if not res.declare({b: tuple(int(x) for x in (self.boxes[b]["hi"] - self.boxes[b]["lo"]).max(axis=0))
                            for b in kept}):
            return None
        # the points by key (their read-only boxes), keys in order of first sight
        table = np.concatenate([self.boxes[b][side] for b in kept for side in ("lo", "hi")], 1)
        _, first, inverse = np.unique(table, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        rank = np.empty(len(first), np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(len(first))
        key_of = rank[inverse]                       # each point's key, numbered by first sight
        order = np.argsort(key_of, kind="stable")    # points grouped by key, ascending within
        counts = np.bincount(key_of, minlength=len(first))
        starts = np.cumsum(counts) - counts
        table = np.ascontiguousarray(table, np.int64)
        groups = [res.group((tuple(kept), table[i].tobytes())) for i in np.sort(first).tolist()]   # (boxes as bytes: fast to hash)
        if any(g is None for g in groups):
            return None
        sizes = np.array([len(g) for g in groups], np.int64)
        per = -(-counts // sizes)                    # points per PE of each key's group
        key = np.repeat(np.arange(len(counts)), counts)
        j = np.arange(self.n) - starts[key]          # each point's place among its key's
        pes, slots, K = np.empty(self.n, np.int64), np.empty(self.n, np.int64), max(1, int(per.max()))
        pes[order] = np.fromiter(itertools.chain.from_iterable(groups), np.int64, int(sizes.sum()))[
            np.cumsum(sizes)[key] - sizes[key] + j // per[key]]
        slots[order] = j % per[key]
        transient = {b: w for b, w in windows.items() if b not in res.buffers}
        free = self.planner.free()
        need = K * sum(b for _, b in transient.values())
        extra = np.full(len(free), res.bytes_per_pe(), np.int64)
        extra[sorted(res.loaded)] = 0
        if ((free - extra)[pes] < need).any():
            return None
        return self._round(np.arange(self.n), pes, slots, K, transient, res)

    def _round(self, points, pes, slots, K: int, windows, res, shared=frozenset()) -> list[Superstep]:
        """One round: point `points[j]` on PE id `pes[j]` in slot `slots[j]`; fetch, compute,
        write back.  The messages of every point are built at once (`home.pieces_many`); only
        resident boxes and scatters through const tables go point by point.  A `shared` window
        has one slot, fetched once per PE, which all the PE's points read."""
        p, cols = self.planner, self.planner.spec.cols
        wnames = {key: p.window(self.stage.name, self.boxes[key]["buffer"], (1 if key in shared else K,) + shape,
                                key.partition("#")[2])
                  for key, (shape, _) in windows.items()}
        rnames = res.names() if res is not None else {}
        scratch = tuple(wnames.values()) + tuple(sorted(set(self.empty.values())))
        used, counts = np.unique(pes, return_counts=True)
        groups = rectangles(dict(zip(used.tolist(), counts.tolist())), cols)
        allocs = [Alloc(scratch, rect) for rect, _ in groups] if scratch else []
        fetch, back, loading = [], [], []
        for key, b in self.boxes.items():
            if key in rnames:
                continue
            if b["read_lo"] is not None and key in shared:
                _, one = np.unique(pes, return_index=True)   # (the first point on each PE)
                at = points[one]
                fetch += self._moves(p.home(b["buffer"]), wnames[key], b["read_lo"][at], b["read_hi"][at],
                                     b["lo"][at], pes[one], np.zeros(len(one), np.int64), into_window=True)
            elif b["read_lo"] is not None:
                fetch += self._moves(p.home(b["buffer"]), wnames[key], b["read_lo"][points], b["read_hi"][points],
                                     b["lo"][points], pes, slots, into_window=True)
        if rnames:   # the resident boxes, into each PE not holding them yet (its first point's)
            first_pes, first = np.unique(pes, return_index=True)
            new = ~np.isin(first_pes, np.fromiter(res.loaded, np.int64, len(res.loaded)))
            loading, at = first_pes[new].tolist(), points[first[new]]
            allocs += [Alloc(tuple(rnames.values()), rect) for rect in covering(loading, cols)]
            for name in sorted(rnames.keys() & self.boxes.keys()):
                fetch += box_moves(p.home(name), rnames[name], self.boxes[name]["lo"][at],
                                   self.boxes[name]["hi"][at], first_pes[new], cols, True)
        for key, (lo, hi, at) in self._write_boxes(points).items():
            back += self._moves(p.home(self.boxes[key]["buffer"]), wnames[key], lo, hi, self.boxes[key]["lo"][points][at],
                                pes[at], slots[at], into_window=False)
        back += self._scatter_rows(points, pes, slots, wnames)
        if res is not None:
            res.loaded |= set(loading)
            for q in loading:
                p.resident_live[q // cols, q % cols] += res.bytes_per_pe()
        computes = self._computes(points, pes, slots, groups, wnames, rnames, shared)
        frees = tuple(Free(scratch, rect) for rect, _ in groups) if scratch else ()
        return [Superstep(f"{self.label} fetch", allocs=tuple(allocs), transfers=tuple(fetch)),
                Superstep(self.label, computes=tuple(computes), transfers=tuple(back), frees=frees)]

    def _moves(self, home: Home, window: str, lo, hi, win_lo, pes, slots, into_window: bool):
        """The messages between `home` and the windows of boxes `[lo[j], hi[j])` (window j starts
        at `win_lo[j]`, on PE `pes[j]` in slot `slots[j]`), as `Sends` tables.  Points in
        consecutive slots of a PE whose boxes are consecutive one-element slices of the buffer
        (rows of a list) move together: one message per home block for the run."""
        lo, hi, offset, slot, axis = _slot_runs(lo, hi, lo - win_lo, pes, slots)
        box, owner, part_lo, part_hi, block_lo = home.pieces_many(lo, hi)
        if not len(box):
            return ()
        cols = self.planner.spec.cols
        pe = pes[slot[1][box]]
        k, ax, merged = np.arange(len(box)), axis[box], axis[box] >= 0
        along = np.where(merged, ax, 0)
        first = slot[0][box] + np.where(merged, part_lo[k, along] - lo[box, along], 0)
        n = np.where(merged, part_hi[k, along] - part_lo[k, along], 1)
        at = offset[box] + part_lo - lo[box]
        size = part_hi - part_lo
        at[k[merged], along[merged]] = offset[box][k[merged], along[merged]]   # each slot's own row
        size[k[merged], along[merged]] = 1
        at_window, window_size = np.concatenate([first[:, None], at], 1), np.concatenate([n[:, None], size], 1)
        at_home, home_size = part_lo - block_lo, part_hi - part_lo
        there = np.stack([owner // cols, owner % cols], 1)
        here = np.stack([pe // cols, pe % cols], 1)
        if into_window:
            return sends_table(home.local, window, np.concatenate([there, here], 1), at_home, at_window,
                               home_size, window_size)
        return sends_table(window, home.local, np.concatenate([here, there], 1), at_window, at_home,
                           window_size, home_size)

    def _write_boxes(self, points) -> dict:
        """Per written buffer, the boxes the round's points write back (each once), as arrays
        (lo, hi, which of `points`); scatters through const tables are `_scatter_rows`'."""
        found: dict = {}
        for k, r, starts, is_write, key in self.occ:
            op = self.stage.body[k]
            if not is_write or (isinstance(op, Scatter) and self.planner.is_const(op.index.buffer)):
                continue
            ext = np.array([_extent(s, st) for s, st in zip(r.size, r.stride)], np.int64)
            lo = starts[points]
            found.setdefault(key, []).append(np.concatenate([np.arange(len(points))[:, None], lo, lo + ext], 1))
        out = {}
        for name, parts in found.items():
            rows = np.unique(np.concatenate(parts), axis=0) if len(parts) > 1 else parts[0]
            d = (rows.shape[1] - 1) // 2
            out[name] = (rows[:, 1:1 + d], rows[:, 1 + d:], rows[:, 0])
        return out

    def _scatter_rows(self, points, pes, slots, wnames) -> tuple:
        """Write-back of scatters through const tables: only the rows the table names
        (`_table_rows`), for every point at once, as `Sends` tables."""
        p, out = self.planner, ()
        for k, r, starts, is_write, key in self.occ:
            op = self.stage.body[k]
            if not is_write or not (isinstance(op, Scatter) and p.is_const(op.index.buffer)):
                continue
            axis = r.range_axes[op.axis]
            size, stride = r.size[axis], r.stride[axis]
            which, row = _table_rows(p, op.index, self.values, self.n, points, size)   # (point j, row) pairs
            lo = starts[points][which].copy()
            lo[:, axis] += row * stride
            ext = np.array([_extent(n, st) for n, st in zip(r.size, r.stride)], np.int64)
            hi = lo + ext
            hi[:, axis] = lo[:, axis] + 1
            win_lo = self.boxes[key]["lo"][points][which]
            out += self._moves(p.home(r.buffer), wnames[key], lo, hi, win_lo, pes[which], slots[which],
                               into_window=False)
        return out

    def _computes(self, points, pes, slots, groups, wnames, rnames, shared) -> list[Compute]:
        """One SPMD compute per rectangle when offsets are the same at every point, else per point."""
        rebased, uniform = {}, True
        for k, r, starts, _, key in self.occ:
            offsets = starts[points] - self.boxes[key]["lo"][points]
            uniform &= bool((offsets == offsets[:1]).all())
            rebased[(k, r)] = offsets
        if uniform:
            ops = tuple(self._rebase(op, k, rebased, wnames, rnames, shared, 0, None) for k, op in enumerate(self.stage.body))
            return [Compute(rect, ops, (Dim(SLOT, 0, n),), self.stage.name) for rect, n in groups]
        cols = self.planner.spec.cols
        return [Compute(Pes.one(q // cols, q % cols),
                        tuple(self._rebase(op, k, rebased, wnames, rnames, shared, j, slot)
                              for k, op in enumerate(self.stage.body)),
                        (), self.stage.name)
                for j, (q, slot) in enumerate(zip(pes.tolist(), slots.tolist()))]   # (points ascend)

    def _rebase(self, op, k, rebased, wnames, rnames, shared, j, slot):
        """`op` on a PE's windows: slot `slot` (None: the compute's slot variable) of the round's
        point `j` (slot 0 of a shared window)."""
        def move(r: Region) -> Region:
            if (k, r) in self.empty:
                return Region(self.empty[(k, r)], (0,) * len(r.size), r.size, r.stride)
            offsets = rebased.get((k, r))
            key = self.key_of.get((k, r))
            if key in rnames:   # resident: one box per PE, no slot axis
                at = (0,) * len(r.size) if offsets is None else tuple(int(x) for x in offsets[j])
                return Region(rnames[key], at, r.size, r.stride)
            if key not in wnames:
                return r
            at = (0,) * len(r.size) if offsets is None else tuple(int(x) for x in offsets[j])
            here = 0 if key in shared else aff(SLOT) if slot is None else slot
            return Region(wnames[key], (here,) + at, (None,) + r.size, (1,) + r.stride)
        return map_regions(op, move)


def _table_rows(planner, index: Region, values: dict, n: int, points, size: int):
    """The rows a const index table names at each of `points` (`plan_copy.index_tables`):
    (which of `points`, row) pairs, each point's rows distinct and ascending, negative entries
    counted from the end, entries outside [-size, size) dropped: a scatter writes only those
    rows (it keeps the others), so only those go home.  (An index computed at run time makes
    the stage run point by point instead: `WindowPlan.serial`.)"""
    tables, which = index_tables(planner, index, values, n)
    entries = tables[which[points]]
    rows = np.where(entries < 0, entries + size, entries)
    ok = (rows >= 0) & (rows < size)
    point = np.broadcast_to(np.arange(len(points))[:, None], rows.shape)[ok]
    keyed = np.unique(point * size + rows[ok])                              # distinct, ascending per point
    return keyed // size, keyed % size
