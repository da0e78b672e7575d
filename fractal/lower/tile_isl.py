"""The tile IR as integer sets: iteration domains and access relations in isl's syntax.

Every question about which instances of which ops touch which elements (a pass's legality,
`verify()`'s contract checks) is asked of isl through the text built here, so there is one
translation of indices, loop bounds and regions into Presburger arithmetic.

A `Scope` is what encloses an op: its loops and stage dims, outermost first (each with its
bounds and step), and the `if` conditions on the way.  Variables are renamed `v0, v1, ...` by
position (isl has keywords of its own).  For `for s in 0:7 { stage cell(l in max(0, s - 5):
min(2, s + 1)) { h[l + 1, s - l + 1, 0:4] = ... } }` the write of `cell` is::

    { [v0, v1] -> B_h[e0, e1, e2] : 0 <= v0 < 7 and max(0, v0 - 5) <= v1 < min(2, v0 + 1)
                                    and e0 = v1 + 1 and e1 = v0 - v1 + 1 and v0 ... 0 <= e2 < 4 }

A gather's source (a scatter's destination) is read (written) along one axis at the rows its
index table holds; here that axis stands for the whole axis of the region (a sound
over-approximation), and `fractal.lower.dependences` makes it exact where the table is a
constant buffer with data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tile_affine import Aff, FloorDiv, Max, Min, Mod, aff, evaluate_many
from .tile_expr import Region
_NEGATE = {"<": ">=", "<=": ">", "==": "!=", "!=": "==", ">=": "<", ">": "<="}
_COMPARE = {"<": np.less, "<=": np.less_equal, "==": np.equal, "!=": np.not_equal, ">=": np.greater_equal,
            ">": np.greater}


def isl_index(x, names: dict) -> str:
    """An index in isl's syntax, variables renamed by `names`."""
    if isinstance(x, str):
        return names[x]
    if isinstance(x, Aff):
        return "(" + " + ".join([f"{c}*{isl_index(t, names)}" for t, c in x.terms] + [str(x.const)]) + ")"
    if isinstance(x, Max):
        return f"{'min' if isinstance(x, Min) else 'max'}({', '.join(isl_index(a, names) for a in x.args)})"
    if isinstance(x, Mod):
        return f"({isl_index(x.e, names)} mod {x.c})"
    if isinstance(x, FloorDiv):
        return f"floor({isl_index(x.e, names)}/{x.c})"
    raise TypeError(f"not an index: {x!r}")


@dataclass(frozen=True)
class ScopeDim:
    """A loop or stage variable with its bounds: `var in start:stop` (step `step`)."""

    var: str
    start: Aff
    stop: Aff
    step: int = 1


@dataclass(frozen=True)
class Scope:
    """What encloses an op: loop and stage variables (outermost first) and `if` conditions,
    each condition recorded with the number of variables in scope where it stands."""

    dims: tuple[ScopeDim, ...] = ()
    conds: tuple[tuple[Aff, str, Aff], ...] = ()

    @property
    def vars(self) -> tuple[str, ...]:
        return tuple(d.var for d in self.dims)

    def inner(self, var: str, start, stop, step: int = 1) -> "Scope":
        return Scope(self.dims + (ScopeDim(var, aff(start), aff(stop), step),), self.conds)

    def when(self, cond) -> "Scope":
        return Scope(self.dims, self.conds + (tuple(cond),))

    def unless(self, cond) -> "Scope":
        a, op, b = cond
        return Scope(self.dims, self.conds + ((a, _NEGATE[op], b),))

    def names(self) -> dict:
        return {v: f"v{k}" for k, v in enumerate(self.vars)}

    def ranges(self) -> dict | None:
        """Each variable's inclusive (lo, hi) by interval arithmetic over the bounds (sound),
        or None where some loop is seen to run no iteration."""
        out: dict = {}
        for d in self.dims:
            (s0, s1), (t0, t1) = d.start.bounds(out), d.stop.bounds(out)
            lo, hi = (s0, t1 - 1) if d.step > 0 else (t0 + 1, s1)
            if lo > hi:
                return None
            out[d.var] = (lo, hi)
        return out

    def points(self, limit: int, env: dict | None = None) -> dict[str, np.ndarray] | None:
        """Every instance, as one int64 array of values per variable (in row-major order), or
        None when there are more than `limit`; variables outside the scope take their `env` values."""
        cols: dict[str, np.ndarray] = {v: np.array([x], dtype=np.int64) for v, x in (env or {}).items()}
        n = 1
        for d in self.dims:
            lo = np.broadcast_to(evaluate_many(d.start, cols), (n,))
            hi = np.broadcast_to(evaluate_many(d.stop, cols), (n,))
            span = hi - lo if d.step > 0 else lo - hi
            counts = np.maximum(0, -(-span // abs(d.step)))
            total = int(counts.sum())
            if total > limit:
                return None
            rep = np.repeat(np.arange(n), counts)
            offset = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
            cols = {v: a[rep] for v, a in cols.items()}
            cols[d.var] = lo[rep] + d.step * offset
            n = total
        keep = np.ones(n, dtype=bool)
        for a, op, b in self.conds:
            keep &= _COMPARE[op](evaluate_many(a, cols), evaluate_many(b, cols))
        cols = {v: c for v, c in cols.items() if env is None or v not in env}
        return {v: c[keep] for v, c in cols.items()} if not keep.all() else cols

    def count(self, points: dict) -> int:
        """How many instances `points` (what `points()` gave, with no `env`) holds: without
        variables, one, or none where a condition fails (`if 0 < 0`: its arrays cannot say)."""
        if points:
            return len(next(iter(points.values())))
        return int(all(_COMPARE[op](a.evaluate({}), b.evaluate({})) for a, op, b in self.conds))

    def constraints(self) -> list[str]:
        """The domain, one isl constraint per bound, step and condition."""
        names, out = self.names(), []
        for k, d in enumerate(self.dims):
            v, a, b = f"v{k}", isl_index(d.start, names), isl_index(d.stop, names)
            out.append(f"{a} <= {v} < {b}" if d.step > 0 else f"{b} < {v} <= {a}")
            if abs(d.step) != 1:
                out.append(f"exists (q{k} : {v} = {a} + {d.step}*q{k})")
        for a, op, b in self.conds:
            out.append(f"{isl_index(a, names)} {'=' if op == '==' else op} {isl_index(b, names)}")
        return out


def buffer_tag(name: str) -> str:
    """The isl tuple name of a buffer's element space."""
    return "B_" + "".join(c if c.isalnum() else "_" for c in name)


@dataclass(frozen=True)
class Indirect:
    """A region axis whose elements come from an index table: along range axis `axis` of the
    region (counting range axes only, as `Gather.axis` does), the elements are the region's
    start plus stride times the table's values (negative ones counted from the end), the table
    read at the elements of `index` (a one-range-axis region of the index buffer, whose data
    `table` holds when it is a constant, else None)."""

    axis: int
    index: Region
    table: np.ndarray | None = None

    def __hash__(self):
        return hash((self.axis, self.index))

    def __eq__(self, other):
        return isinstance(other, Indirect) and (self.axis, self.index) == (other.axis, other.index) and \
            _same_array(self.table, other.table)

    def buffer_axis(self, r: Region) -> int:
        """The buffer axis of region `r` the table indexes."""
        return [k for k, n in enumerate(r.size) if n is not None][self.axis]


def _same_array(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return a.shape == b.shape and a.dtype == b.dtype and bool(np.array_equal(a, b))


def element_constraints(r: Region, names: dict, skip: int | None = None) -> tuple[list[str], list[str]]:
    """(existential variables, constraints) tying `e0, e1, ...` to the elements of region `r`,
    over variables renamed by `names`; axis `skip` is left free."""
    ex, cons = [], []
    for k, (start, size, stride) in enumerate(zip(r.start, r.size, r.stride)):
        if k == skip:
            continue
        s = isl_index(start, names)
        if size is None:
            cons.append(f"e{k} = {s}")
        elif stride == 1:
            cons.append(f"{s} <= e{k} < {s} + {size}")
        else:
            ex.append(f"t{k}")
            cons.append(f"e{k} = {s} + {stride}*t{k} and 0 <= t{k} < {size}")
    return ex, cons


def arithmetic_runs(values: np.ndarray, limit: int | None = None):
    """`values` cut into maximal runs `(lo, hi, first, step)`, greedily from the left:
    `values[k] == first + step*(k - lo)` for `lo <= k < hi`.  None past `limit` runs."""
    n = len(values)
    diff = np.diff(values)
    changes = np.flatnonzero(diff[1:] != diff[:-1]) + 1  # k where diff[k] != diff[k - 1]
    runs, lo = [], 0
    while lo < n:
        if limit is not None and len(runs) >= limit:
            return None
        if lo == n - 1:
            runs.append((lo, n, int(values[lo]), 0))
            break
        # diff is constant from lo up to the next change: the run ends at that change's index
        at = int(np.searchsorted(changes, lo, side="right"))
        hi = int(changes[at]) + 1 if at < len(changes) else n
        runs.append((lo, hi, int(values[lo]), int(diff[lo])))
        lo = hi
    return runs
