"""What a program value is while it is being lowered to tile IR.

The lowering runs once per set of argument sizes, so every list length is known: a value
inside a combinator nest is lowered for *all* points of its iteration domain at once.

* `Domain`: the enclosing combinator dims (a loop variable and a padded extent each) and the
  mask of valid points (ragged lists make some padded points invalid).  A value defined in
  a domain has one instance per point; its storage rows are the points in row-major order.
* `TVal`: a tensor value: a tile `Region` template whose row index is an affine function of
  the domain's loop variables (`row = flat(point)` for values computed here).
* `LVal`: a list value: per domain point, a FractalTensor of *element ids* (`gid = buffer
  number << 40 | row`) that says which stored rows are its elements.  Access operators are
  run eagerly on these id lists with the language's own rules, so every operator and every
  ragged case lowers with exactly the interpreter's semantics; the lowering later turns the
  ids a loop reads into an affine row index (a view) or a gather from a constant table.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..lang.limits import check_points
from ..lang.types import FractalTensorType, TensorType
from ..lang.values import FractalTensor
from .tile_affine import Aff, evaluate_affine
from .tile_expr import Region

ROW_BITS = 40
ROW_MASK = (1 << ROW_BITS) - 1
ID_TYPE = TensorType((), np.dtype(np.int64))


@dataclass(frozen=True)
class Domain:
    """Enclosing combinator dims: variables, padded extents, valid points, and which dims are
    map (parallel) dims.  Rows are laid out with the sequential dims outermost and the map
    dims innermost (each group in nest order): the paper's `[depth, length, batch]` layout,
    so the points a stage batches over are consecutive rows (contiguous GEMM operands)."""

    vars: tuple[str, ...]
    extents: tuple[int, ...]
    valid: np.ndarray  # bool, shape == extents
    parallel: tuple[bool, ...] = ()  # () means all sequential

    @property
    def size(self) -> int:
        return int(np.prod(self.extents, dtype=np.int64))

    @cached_property
    def order(self) -> tuple[int, ...]:
        """Dims from outermost to innermost in the row layout."""
        par = self.parallel or (False,) * len(self.vars)
        return tuple(k for k in range(len(self.vars)) if not par[k]) + tuple(k for k in range(len(self.vars)) if par[k])

    @cached_property
    def strides(self) -> tuple[int, ...]:
        out, step = [0] * len(self.extents), 1
        for k in reversed(self.order):
            out[k], step = step, step * self.extents[k]
        return tuple(out)

    def flat(self, shift: dict[str, int] | None = None) -> Aff:
        """The row of a point: sum of var * stride (a var may be shifted, e.g. a state's next slot)."""
        shift = shift or {}
        strides = self.strides
        return Aff(tuple(zip(self.vars, strides)), sum(shift.get(v, 0) * s for v, s in zip(self.vars, strides)))

    def row(self, point) -> int:
        """`flat()` at one point (NumPy arithmetic, no index objects)."""
        return int(sum(int(i) * s for i, s in zip(point, self.strides)))

    def ravel(self, coords) -> np.ndarray:
        """Rows of points given as coordinate arrays (one per dim)."""
        out = np.zeros(np.broadcast_shapes(*(np.shape(c) for c in coords)) if len(coords) else (), dtype=np.int64)
        for c, s in zip(coords, self.strides):  # in place: these arrays can have ~10^8 points
            out += np.asarray(c, dtype=np.int64) * s
        return out

    def unravel(self, rows) -> np.ndarray:
        """Coordinates (dims x n) of rows: the inverse of `ravel`."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.zeros((len(self.vars),) + rows.shape, dtype=np.int64)
        for k in self.order:
            out[k] = rows // self.strides[k]
            rows = rows - out[k] * self.strides[k]
        return out

    def in_row_order(self, a: np.ndarray) -> np.ndarray:
        """`a` (leading dims: this domain's extents) flattened in row order, so that a table
        read at `flat()` finds each point's entry: shape (size * rest...,) for tables."""
        a = np.asarray(a)
        k = len(self.extents)
        return np.transpose(a, self.order + tuple(range(k, a.ndim))).reshape(-1)

    def rows_grid(self) -> np.ndarray:
        """The row of every point, an array over the extents."""
        return self.ravel(axis_coords(self.extents))

    def inner(self, var: str, extent: int, lengths: np.ndarray, parallel: bool = False) -> "Domain":
        """The domain of a combinator body iterating `extent` padded positions, `lengths` valid."""
        self._check(extent)  # (before the mask of every point is made)
        valid = self.valid[..., None] & (np.arange(extent) < np.asarray(lengths)[..., None])
        return self.extended(var, extent, parallel, valid)

    def extended(self, var: str, extent: int, parallel: bool = False, valid=None) -> "Domain":
        self._check(extent)
        ext = self.extents + (extent,)
        return Domain(self.vars + (var,), ext, np.ones(ext, bool) if valid is None else valid,
                      self._kinds() + (parallel,))

    def _check(self, extent: int) -> None:
        """Refuse a nest of more points than the lowering handles (`fractal.lang.limits`)."""
        ext = self.extents + (extent,)
        check_points(int(np.prod(ext, dtype=np.float64)), f"the combinator nest here ({' x '.join(map(str, ext))})")

    def without(self, axis: int) -> "Domain":
        kinds = self._kinds()
        return Domain(self.vars[:axis] + self.vars[axis + 1:], self.extents[:axis] + self.extents[axis + 1:],
                      self.valid.any(axis=axis), kinds[:axis] + kinds[axis + 1:])

    def resized(self, var: str, extent: int) -> "Domain":
        """The same dims with `var`'s extent changed (a state buffer's extra slot)."""
        k = self.vars.index(var)
        ext = self.extents[:k] + (extent,) + self.extents[k + 1:]
        return Domain(self.vars, ext, np.ones(ext, bool), self._kinds())

    def _kinds(self) -> tuple[bool, ...]:
        return self.parallel or (False,) * len(self.vars)


ROOT = Domain((), (), np.ones((), dtype=bool))


def axis_coords(extents) -> list[np.ndarray]:
    """Per axis its coordinates 0..n-1, shaped to broadcast over the box (for `Domain.ravel`)."""
    k = len(extents)
    return [np.arange(n, dtype=np.int64).reshape((-1,) + (1,) * (k - d - 1)) for d, n in enumerate(extents)]


@dataclass(frozen=True)
class TVal:
    """A tensor per domain point: `region` (row axis first, an index axis) of a buffer;
    `trans`: the tensor is the region with its last two axes swapped (a transpose nobody
    copied yet: a GEMM reads it with a transposed operand flag)."""

    region: Region
    dtype: np.dtype
    trans: bool = False

    @property
    def shape(self) -> tuple[int, ...]:
        s = self.region.shape
        return s[:-2] + (s[-1], s[-2]) if self.trans else s


@dataclass
class Pending:
    """A tensor list element not read yet: per point gids (-1: invalid point) and its type;
    the walker turns it into a view or a gather where it is first used."""

    gids: np.ndarray
    type: TensorType
    domain: Domain


@dataclass(frozen=True)
class LVal:
    """A list per domain point: `ids[point]` is a FractalTensor of element ids (None: invalid)."""

    ids: np.ndarray  # object array over the defining domain's extents
    type: FractalTensorType  # the program type (leaf tensor type included)


def evaluate_on_grid(a: Aff, domain: Domain) -> np.ndarray:
    """An affine index at every point of `domain` at once (an int array of its extents)."""
    grids = np.indices(domain.extents, dtype=np.int64) if domain.extents else []
    size = int(np.prod(domain.extents, dtype=np.int64))
    out = evaluate_affine(a, {v: g.reshape(-1) for v, g in zip(domain.vars, grids)}, size)
    if out is None:
        raise ValueError(f"not affine in the domain variables: {a}")
    return out.reshape(domain.extents)


def row_region(buffer: str, row: Aff, shape: tuple[int, ...]) -> Region:
    """The whole tensor stored at `row` of a rows-first buffer."""
    return Region(buffer, (row,) + (0,) * len(shape), (None,) + tuple(shape))


def id_list(gids) -> FractalTensor:
    """A depth-1 id list."""
    leaves = np.asarray(gids, dtype=np.int64).reshape(-1)
    leaves.flags.writeable = False
    return FractalTensor.from_storage(FractalTensorType(ID_TYPE), leaves, (), range(len(leaves)))


def id_type(t: FractalTensorType) -> FractalTensorType:
    """The id-list type with the nesting of `t`."""
    inner = ID_TYPE
    for _ in range(t.depth):
        inner = FractalTensorType(inner)
    return inner


def broadcast_ids(ids: np.ndarray, extents: tuple[int, ...]) -> np.ndarray:
    """Ids of a value defined in an outer domain, seen from an inner one (extra trailing dims)."""
    shape = ids.shape + (1,) * (len(extents) - ids.ndim)
    return np.broadcast_to(ids.reshape(shape), extents)


def lengths(ids: np.ndarray) -> np.ndarray:
    """Per point list lengths (0 for invalid points)."""
    out = np.zeros(ids.shape, dtype=np.int64)
    for p, x in np.ndenumerate(ids):
        if x is not None:
            out[p] = len(x)
    return out


def element_ids(ids: np.ndarray, extent: int) -> np.ndarray:
    """Per point and position `i < extent`: the i-th element (an id list or a 0-d id) or None."""
    out = np.empty(ids.shape + (extent,), dtype=object)
    for p, x in np.ndenumerate(ids):
        if x is not None:
            for i in range(len(x)):
                out[p + (i,)] = x[i]
    return out


def source_buffers(gids: np.ndarray) -> np.ndarray:
    """The buffer numbers the valid gids (>= 0) come from, sorted ([0] when none is valid); the
    common single-buffer case without sorting every gid."""
    hi = int(gids.max()) if gids.size else -1
    if hi < 0:
        return np.array([0])
    lo = int(gids.view(np.uint64).min())  # the invalid -1s are the largest as unsigned
    if lo >> ROW_BITS == hi >> ROW_BITS:
        return np.array([lo >> ROW_BITS])
    return np.unique(gids[gids >= 0] >> ROW_BITS)


def element_gids(ids: np.ndarray, extent: int) -> np.ndarray:
    """For depth-1 id lists: per point and position the element's gid (-1: none).  Lists seen
    from an inner domain (stride-0 axes of `ids`: the keys every query reads) are read once
    and the result is broadcast the same way (read-only)."""
    base = ids[tuple(slice(0, 1) if s == 0 else slice(None) for s in ids.strides)] if ids.ndim else ids
    out = np.full(base.shape + (extent,), -1, dtype=np.int64)
    for p, x in np.ndenumerate(base):
        if x is not None:
            leaves = x.compact()[0]
            out[p + (slice(0, len(leaves)),)] = leaves
    return np.broadcast_to(out, ids.shape + (extent,))


def scalar_gids(elems: np.ndarray) -> np.ndarray:
    """Object array of 0-d id arrays (or None) -> int64 array with -1 for invalid points."""
    out = np.full(elems.shape, -1, dtype=np.int64)
    for p, x in np.ndenumerate(elems):
        if x is not None:
            out[p] = int(x)
    return out
