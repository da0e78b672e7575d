"""Lowering rules for the combinators: `map` (a parallel loop) and `scan` / `fold` / `reduce`
(a sequential loop over state slots).

The body is lowered once for all points of the inner domain `D + (v: m)`, `m` the longest
list.  A tensor state `j` has a buffer with `m + 1` slots per outer point: slot 0 holds the
initial value, step `v` reads slot `v` and writes slot `v + 1`; a list state keeps its
(fixed) structure and copies the yielded list's rows into the next slot.  Elements and
final states of ragged points are read at their own positions through tables.
"""

from __future__ import annotations

from collections import ChainMap

import numpy as np

from ..lang.combinators import common_length
from ..lang.errors import UnsupportedError
from ..lang.types import FractalTensorType, TensorType
from ..lang.values import FractalTensor
from .lower_gather import lower_segment_reduce
from .lower_ragged import active_prefix, length_order, permuted, unpermute
from .lower_values import (ROW_BITS, ROW_MASK, Domain, LVal, Pending, TVal, axis_coords, broadcast_ids,
                           element_gids, element_ids, id_list, id_type, lengths, row_region)
from .tile_affine import Aff, aff
from .tile_expr import Region
from .tile_ir import Buffer, Copy, Gather, Loop, Scatter


def _real(ids: np.ndarray) -> np.ndarray:
    """Per point: whether it holds a list (None: a padding point of a ragged domain)."""
    return np.array([x is not None for x in ids.flat], dtype=bool).reshape(ids.shape)


def _lists(walker, eqn, env, first: int):
    em = walker.em
    lists = []
    for v in eqn.inputs[first:]:
        x = env[v]
        lists.append(broadcast_ids(x.ids, em.domain.extents))
    # a point is real only where every list is (padding points of a ragged domain hold None
    # in lists of this domain, but values broadcast from an outer domain in the others)
    valid = np.logical_and.reduce([_real(xs) for xs in lists])
    lens = np.where(valid, lengths(lists[0]), 0)
    for other in lists[1:]:
        bad = np.argwhere(valid & (lengths(other) != lens))
        if len(bad):  # the interpreter's own check and message, at the first offending point
            pt = tuple(bad[0])
            common_length(eqn.op, [xs[pt] for xs in lists])
    m = int(lens.max()) if lens.size else 0
    return lists, lens, m


def _enter(walker, eqn, env, var: str, lists, lens, m, reverse=False):
    """The inner domain and the body's element values (pending tensors or id lists)."""
    em = walker.em
    inner = em.domain.inner(var, m, lens, parallel=eqn.op == "map")
    params = []
    for xs, p in zip(lists, eqn.regions[0].params[len(eqn.regions[0].params) - len(lists):]):
        if reverse:  # step v reads element len - 1 - v of each point's own list
            xs = xs.copy()
            for pt, x in np.ndenumerate(xs):
                if x is not None:
                    xs[pt] = x[::-1]
        if isinstance(p.type, FractalTensorType):
            params.append(LVal(element_ids(xs, m), p.type))
        else:
            gids = element_gids(xs, m)
            params.append(Pending(gids, p.type, inner))
    return inner, params


def _is_pending(x) -> bool:
    return isinstance(x, Pending)


def _fresh(em, x: TVal, domain: Domain, at) -> TVal:
    """`x` stored at row `at` of a buffer of `domain` (copied there unless it already is, as
    the whole row: a view of part of each row, `t[at, 0:2]` of rows of 3, is copied, since the
    list's elements are then read by row)."""
    name = x.region.buffer
    known = em.domains.get(name)
    if (known is not None and known.vars == domain.vars and x.region == row_region(name, at, x.shape)
            and em.rows_of(name) == domain.size and em.buffers[em.numbers[name]].shape[1:] == x.shape):
        return x
    out = em.buffer("t", (domain.size,) + x.shape, x.dtype, domain=domain)
    em.emit([Copy(x.region, row_region(out, at, x.shape))])
    return TVal(row_region(out, at, x.shape), x.dtype)


def lower_map(walker, eqn, env):
    em = walker.em
    var = f"m{eqn.outputs[0].name}"
    lists, lens, m = _lists(walker, eqn, env, 0)
    order = length_order(lists, em.domain)  # a ragged batch: longest first (see lower_ragged)
    if order is not None:
        lists = [permuted(xs, order) for xs in lists]
    inner, params = _enter(walker, eqn, env, var, lists, lens, m)
    outer = em.domain
    em.domain = inner
    em.stack.append([])
    results = walker.region(eqn.regions[0], ChainMap(dict(zip(eqn.regions[0].params, params)), env))
    stored = []
    for v, r in zip(eqn.regions[0].results, results):
        if isinstance(r, LVal):
            stored.append(r)
        else:
            r = walker.tensor(v, ChainMap({v: r}, {})) if _is_pending(r) else r
            stored.append(_fresh(em, r, inner, inner.flat()))
    body = em.stack.pop()
    em.domain = outer
    em.stack[-1].append(Loop(var, 0, m, 1, "parallel", "host", tuple(body)))
    outs = []
    for r, o in zip(stored, eqn.outputs):
        ids = np.empty(outer.extents, dtype=object)
        if isinstance(r, LVal):
            elems = broadcast_ids(r.ids, inner.extents)
            for pt in np.ndindex(*outer.extents):
                if outer.valid[pt]:
                    ids[pt] = FractalTensor.from_elements(id_type(o.type.elem), [
                        elems[pt + (int(i),)] for i in unpermute(order, pt, lens[pt])])
        else:
            # rows of element i at pt: base[pt] + i * step (not a grid of every inner point)
            base = inner.ravel(axis_coords(outer.extents) + [np.zeros((), np.int64)])
            step = inner.strides[-1]
            for pt in np.ndindex(*outer.extents):
                if outer.valid[pt]:
                    ids[pt] = id_list(em.gid(r.region.buffer, base[pt] + step * unpermute(order, pt, lens[pt])))
        outs.append(LVal(ids, o.type))
    return outs


def lower_aggregate(walker, eqn, env):
    em = walker.em
    k = eqn.attrs["n_state"]
    segments = lower_segment_reduce(walker, eqn, env)  # a reduce of gathered runs: no loop (lower_gather)
    if segments is not None:
        return segments
    if not any(isinstance(env[v], LVal) for v in eqn.inputs[:k]):
        return _aggregate(walker, eqn, env, None)[0]
    # A list state (a fold over layers carrying the batch): lower once copying each step's
    # list into the next slot, then, when every yielded list lives in one scan's state
    # buffer at the same places step after step, lower again with that buffer given one
    # more slot for the initial list: step v then reads the rows step v - 1 wrote (no copy,
    # no barrier between steps: the wavefront stays open).
    snap = em.snapshot()
    cached = em.alias_plans.get(id(eqn))  # found when an enclosing fold lowered its body before
    if cached is not None:
        outs = _aliased(walker, eqn, env, cached)
        if outs is not None:
            return outs
        em.restore(snap)
    outs, states = _aggregate(walker, eqn, env, None)
    plans = [s.alias_plan() if isinstance(s, _ListState) else None for s in states]
    if not all(p is not None for p, s in zip(plans, states) if isinstance(s, _ListState)):
        return outs
    em.alias_plans[id(eqn)] = plans  # plans are in logical coordinates: valid in any layout
    copied = em.snapshot()
    em.restore(snap)
    aliased = _aliased(walker, eqn, env, plans)
    if aliased is not None:
        return aliased
    em.restore(copied)
    return outs


def _aliased(walker, eqn, env, plans):
    """The aggregate lowered with its list states in place, or None if a step's list did not
    land where the plan said (the caller restores the emitter)."""
    try:
        outs, states = _aggregate(walker, eqn, env, plans)
    except UnsupportedError:
        return None
    return outs if all(s.aliased_ok for s in states if isinstance(s, _AliasedListState)) else None


def _aggregate(walker, eqn, env, plans):
    em = walker.em
    k = eqn.attrs["n_state"]
    reverse = eqn.attrs.get("reverse", False)
    var = f"{eqn.op[0]}{eqn.outputs[0].name}"
    lists, lens, m = _lists(walker, eqn, env, k)
    outer = em.domain
    slots = outer.extended(var, m + 1)
    inits = [env[v] for v in eqn.inputs[:k]]
    plans = plans or [None] * k
    states = [_TensorState(em, walker, v, x, slots, outer) if not isinstance(x, LVal)
              else _ListState(em, x, slots, outer) if plan is None
              else _AliasedListState(em, x, slots, outer, plan)
              for v, x, plan in zip(eqn.inputs[:k], inits, plans)]
    inner, params = _enter(walker, eqn, env, var, lists, lens, m, reverse)
    em.domain = inner
    em.stack.append([])
    state_params = [s.param(inner) for s in states]
    results = walker.region(eqn.regions[0], ChainMap(dict(zip(eqn.regions[0].params, state_params + params)), env))
    for s, v, r in zip(states, eqn.regions[0].results, results):
        if _is_pending(r):
            r = walker.tensor(v, ChainMap({v: r}, {}))
        s.store(r, inner)
    body = em.stack.pop()
    em.domain = outer
    # a reduce's steps may be re-associated by a backend (its combiner is declared associative)
    em.stack[-1].append(Loop(var, 0, m, 1, "sequential", "host", tuple(body), active_prefix(inner),
                             associative=eqn.op == "reduce"))
    if eqn.op != "scan":
        return [s.final(lens) for s in states], states
    return [s.sequence(lens, reverse, o.type) for s, o in zip(states, eqn.outputs)], states


class _TensorState:
    """A tensor state: buffer rows = outer points x (m + 1) slots.  When an enclosing fold
    carries this state's sequence as its own list state, the buffer is laid out with one
    more slot of that fold (`em.overrides`): its slot 0 then holds the fold's initial list."""

    def __init__(self, em, walker, v, init, slots: Domain, outer: Domain):
        init = walker.tensor(v, ChainMap({v: init}, {})) if _is_pending(init) else walker.plain(init)
        self.em, self.var, self.shape, self.dtype = em, slots.vars[-1], init.shape, init.dtype
        self.name = em.buffer("st", (slots.size,) + init.shape, init.dtype, domain=slots)
        self.slot_extents = slots.extents
        em.logical[self.name] = slots
        # enclosing folds/scans that keep their list state here give their dims one more slot
        self.layout, self.shift = layout_with(slots, em.overrides.get(self.name, ()))
        em.op_name = "init"
        em.emit([Copy(init.region, self.at(self._flat().substitute({self.var: aff(0)})))])

    def _flat(self, extra=None) -> Aff:
        return self.layout.flat({**self.shift, **(extra or {})})

    def _rows(self) -> np.ndarray:
        """The row of every (outer point, slot), an array over the logical slot extents."""
        grid = self.layout.rows_grid()
        return grid[tuple(slice(self.shift.get(v, 0), self.shift.get(v, 0) + n)
                          for v, n in zip(self.layout.vars, self.slot_extents))]

    def at(self, row) -> Region:
        return row_region(self.name, row, self.shape)

    def param(self, inner: Domain) -> TVal:
        return TVal(self.at(self._flat()), self.dtype)

    def store(self, r: TVal, inner: Domain) -> None:
        self.em.op_name = "next"
        self.em.emit([Copy(r.region, self.at(self._flat({self.var: 1})))])

    def _rows_at(self, slots: np.ndarray) -> np.ndarray:
        """The row of every outer point at its slot (`slots`: an array over the outer extents),
        without the rows of all slots."""
        outer = zip(self.layout.vars, axis_coords(self.slot_extents[:-1]))
        return self.layout.ravel([c + self.shift.get(v, 0) for v, c in outer]
                                 + [np.asarray(slots, dtype=np.int64) + self.shift.get(self.var, 0)])

    def final(self, lens) -> TVal:
        em = self.em
        rows = self._rows_at(lens)
        gids = np.where(em.domain.valid, em.gid(self.name, rows), -1)
        return Pending(gids, _tensor_type(self.shape, self.dtype), em.domain)

    def sequence(self, lens, reverse, t) -> LVal:
        em = self.em
        ids, rows = np.empty(lens.shape, dtype=object), self._rows()
        for pt in np.ndindex(*lens.shape):
            if em.domain.valid[pt]:
                n = int(lens[pt])
                slot = (n - np.arange(n)) if reverse else np.arange(1, n + 1)
                ids[pt] = id_list(em.gid(self.name, rows[pt][slot]))
        return LVal(ids, t)


def layout_with(slots: Domain, extra_vars) -> tuple[Domain, dict]:
    """A state buffer's layout: its slots with one more slot for each of `extra_vars`."""
    layout, shift = slots, {}
    for var in extra_vars:
        k = slots.vars.index(var)
        layout, shift = layout.resized(var, layout.extents[k] + 1), {**shift, var: 1}
    return layout, shift


def _tensor_type(shape, dtype):
    return TensorType(tuple(shape), np.dtype(dtype))


class _ListState:
    """A list state with the initial list's structure: `width` rows per slot, copied per step."""

    def __init__(self, em, init: LVal, slots: Domain, outer: Domain):
        self.em, self.slots, self.type, self.var = em, slots, init.type, slots.vars[-1]
        ids = broadcast_ids(init.ids, outer.extents)
        self.structure = np.empty(outer.extents, dtype=object)
        widths = [0]
        for pt in np.ndindex(*outer.extents):
            if outer.valid[pt]:
                self.structure[pt] = ids[pt].compact()
                widths.append(len(self.structure[pt][0]))
        self.width = max(widths)
        leaf = init.type.leaf
        self.leaf_shape = leaf.shape
        self.name = em.buffer("st", (slots.size * self.width,) + leaf.shape, leaf.dtype, domain=slots)
        em.op_name = "init"
        self._copy_rows({pt: s[0] for pt, s in np.ndenumerate(self.structure) if s is not None},
                        outer, slots.flat().substitute({self.var: aff(0)}))

    def _copy_rows(self, leaves_by_point, domain: Domain, slot_row) -> None:
        """Gather each point's leaf rows into its slot (one gather per point, batched later)."""
        em, w = self.em, self.width
        if w == 0:
            return
        bufs = set()
        for leaves in leaves_by_point.values():
            bufs.update(np.unique(leaves >> ROW_BITS).tolist())
        if len(bufs) > 1:
            raise UnsupportedError("the cpu backend cannot yet carry a list state whose elements come from "
                                   "different buffers")
        src = em.buffers[bufs.pop() if bufs else 0]
        # slots past a point's leaves (and points without any) read one past the end: zeros
        table = np.full(domain.extents + (w,), src.shape[0], dtype=np.int64)
        for pt, leaves in leaves_by_point.items():
            table[pt][:len(leaves)] = leaves & ROW_MASK
        name = em.const_rows(domain.in_row_order(table))
        flat = domain.flat()
        em.emit([Gather(Region(src.name, (0,) * src.ndim, src.shape), Region(name, (flat * w,), (w,)),
                        Region(self.name, (slot_row * w,) + (0,) * len(self.leaf_shape),
                               (w,) + self.leaf_shape), 0)])

    def _ids(self, pt, slot: int) -> FractalTensor:
        leaves, offsets = self.structure[pt]
        base = self.slots.row(pt + (slot,)) * self.width
        gids = self.em.gid(self.name, base + np.arange(len(leaves)))
        return FractalTensor.from_storage(id_type(self.type), gids, offsets,
                                          range(len(offsets[0]) - 1 if offsets else len(leaves)))

    def param(self, inner: Domain) -> LVal:
        ids = np.empty(inner.extents, dtype=object)
        for pt in np.ndindex(*inner.extents):
            if inner.valid[pt]:
                ids[pt] = self._ids(pt[:-1], pt[-1])
        return LVal(ids, self.type)

    def store(self, r, inner: Domain) -> None:
        if not isinstance(r, LVal):
            raise UnsupportedError("a list state must be yielded as a list")
        ids = broadcast_ids(r.ids, inner.extents)
        leaves = {}
        for pt in np.ndindex(*inner.extents):
            if inner.valid[pt]:
                got, offsets = ids[pt].compact()
                want_leaves, want = self.structure[pt[:-1]]
                if len(got) != len(want_leaves) or len(offsets) != len(want) or \
                        any(not np.array_equal(a, b) for a, b in zip(offsets, want)):
                    raise UnsupportedError("the cpu backend needs a list state to keep its lengths from step "
                                           "to step")
                leaves[pt] = got
        self.yields, self.inner = leaves, inner
        self.em.op_name = "next"
        self._copy_rows(leaves, inner, self.slots.flat({self.var: 1}))

    def final(self, lens) -> LVal:
        ids = np.empty(lens.shape, dtype=object)
        for pt in np.ndindex(*lens.shape):
            if self.em.domain.valid[pt]:
                ids[pt] = self._ids(pt, int(lens[pt]))
        return LVal(ids, self.type)

    def alias_plan(self):
        """Where each step's list lives, if it is one scan state buffer's rows at places that
        only move with the fold variable; else None (keep copying)."""
        em, var = self.em, self.var
        points = getattr(self, "yields", {})
        if not points or any(len(v) == 0 for v in points.values()):
            return None
        bufs = {int(b) for v in points.values() for b in np.unique(v >> ROW_BITS)}
        if len(bufs) != 1:
            return None
        name = em.buffers[bufs.pop()].name
        if not name.startswith("st") or name not in em.logical or var not in em.logical[name].vars:
            return None
        extra = tuple(em.overrides.get(name, ()))
        domain = em.domains[name]  # the layout the rows were written in: logical slots + extra
        shift = np.array([1 if v in extra else 0 for v in domain.vars], dtype=np.int64)[:, None]
        kf = domain.vars.index(var)
        base = {}
        for pt, leaves in points.items():
            coords = domain.unravel(leaves & ROW_MASK) - shift  # logical coordinates
            if not np.all(coords[kf] == pt[-1]):
                return None
            coords[kf] = 0
            if pt[:-1] in base and not np.array_equal(base[pt[:-1]], coords):
                return None
            base.setdefault(pt[:-1], coords)
        outer_valid = [pt for pt in np.ndindex(*self.structure.shape) if self.structure[pt] is not None]
        if any(pt not in base for pt in outer_valid):
            return None
        return dict(buffer=name, var=var, extra=extra, kf=kf, base=base)

    def sequence(self, lens, reverse, t) -> LVal:
        ids = np.empty(lens.shape, dtype=object)
        for pt in np.ndindex(*lens.shape):
            if self.em.domain.valid[pt]:
                n = int(lens[pt])
                slot = (n - np.arange(n)) if reverse else np.arange(1, n + 1)
                ids[pt] = FractalTensor.from_elements(t.elem, [self._ids(pt, int(s)) for s in slot])
        return LVal(ids, t)


class _AliasedListState(_ListState):
    """A list state living in the scan state buffer its steps yield (see `lower_aggregate`)."""

    def __init__(self, em, init: LVal, slots: Domain, outer: Domain, plan):
        self.em, self.slots, self.type, self.var, self.plan = em, slots, init.type, slots.vars[-1], plan
        ids = broadcast_ids(init.ids, outer.extents)
        self.structure = np.empty(outer.extents, dtype=object)
        for pt in np.ndindex(*outer.extents):
            if outer.valid[pt]:
                self.structure[pt] = ids[pt].compact()
        name = self.name = plan["buffer"]
        extra = tuple(dict.fromkeys(tuple(em.overrides.get(name, ())) + plan["extra"] + (self.var,)))
        em.overrides[name] = extra
        self.layout, shift = layout_with(em.logical[name], extra)
        # logical -> physical coordinates: +1 on the dims enclosing aliases gave a slot; this
        # state's own dim is addressed by physical slot (0: the initial list)
        self.shift = np.array([shift.get(v, 0) if v != self.var else 0 for v in self.layout.vars], dtype=np.int64)
        self._base = {}
        leaf = init.type.leaf
        buffer = Buffer(name, (self.layout.size,) + leaf.shape, leaf.dtype)
        if name in em.numbers and em.numbers[name] < len(em.buffers):  # an enclosing alias reserved it
            em.buffers[em.numbers[name]] = buffer
        else:
            em.numbers[name] = len(em.buffers)
            em.buffers.append(buffer)
        em.domains[name] = self.layout
        self.aliased_ok = True
        # the initial list goes to slot 0: gather its rows, scatter them to their places
        width = max((len(s[0]) for s in self.structure.flat if s is not None), default=0)
        if width == 0:
            return
        src = np.full(outer.extents + (width,), -1, dtype=np.int64)
        dst = np.full(outer.extents + (width,), self.layout.size, dtype=np.int64)  # padding: not written
        for pt in np.ndindex(*outer.extents):
            if self.structure[pt] is not None:
                leaves, rows = self.structure[pt][0], self._rows(pt, 0)
                if len(leaves) != len(rows) or len(leaves) == 0:
                    raise UnsupportedError("a list state whose initial list differs from its steps")
                src[pt + (slice(0, len(leaves)),)] = leaves
                dst[pt + (slice(0, len(rows)),)] = rows
        em.op_name = "init"
        tmp, k = em.gather_rows(src, leaf.shape, leaf.dtype)
        table = em.const_rows(outer.in_row_order(dst))
        flat = outer.flat()
        em.emit([Scatter(Region(tmp, (flat * k,) + (0,) * len(leaf.shape), (width,) + leaf.shape),
                         Region(table, (flat * width,), (width,)),
                         Region(name, (0,) * (1 + len(leaf.shape)), (self.layout.size,) + leaf.shape), 0)])

    def _rows(self, outer_pt, slot: int) -> np.ndarray:
        """The rows of point `outer_pt`'s list in slot `slot` (rows are linear in the slot)."""
        base = self._base.get(outer_pt)
        if base is None:  # slot 0's rows (the base coordinates have the slot dim at 0)
            base = self._base[outer_pt] = self.layout.ravel(tuple(self.plan["base"][outer_pt] + self.shift[:, None]))
        return base + slot * self.layout.strides[self.plan["kf"]]

    def _ids(self, pt, slot: int) -> FractalTensor:
        leaves, offsets = self.structure[pt]
        gids = self.em.gid(self.name, self._rows(pt, slot))
        return FractalTensor.from_storage(id_type(self.type), gids, offsets,
                                          range(len(offsets[0]) - 1 if offsets else len(leaves)))

    def store(self, r, inner: Domain) -> None:
        ids = broadcast_ids(r.ids, inner.extents) if isinstance(r, LVal) else None
        for pt in np.ndindex(*inner.extents):
            if inner.valid[pt] and ids is not None:
                got = ids[pt].compact()[0]
                if not np.array_equal(got, self.em.gid(self.name, self._rows(pt[:-1], pt[-1] + 1))):
                    self.aliased_ok = False
                    return
        self.aliased_ok = ids is not None
