"""Regions of buffers over a whole stage box, as NumPy arrays of shape `box + region shape`.

A stage's ops run once for all points of its box, so each region is read or written as one
array whose leading axes are the box's.  When every start index is affine in the stage
variables (they occur only as plain terms; loop variables may sit under max/min/floor/mod)
the region is a strided *view*: offset `sum_axis start(box origin) * stride_axis`, a stride
per box dim `sum_axis coeff * stride_axis` (0 where the region ignores the dim: a
broadcast; negative for `s - l`), then the range axes.  The view is built with the plain
`np.ndarray(shape, dtype, buffer, offset, strides)` constructor (~0.5 us) over the
buffer's raw bytes, by one compiled offset function per region: the per-run work of a
wavefront step is a few integer operations per region.

Other regions (floor/mod/max/min over stage variables) fall back to fancy indexing: index
arrays computed over the box, gathered for reads, assigned for writes.

`Memory` holds one buffer's storage for a run; accesses share it and recompute their byte
strides only when a new array of other strides is bound (inputs may come with any strides).
"""

from __future__ import annotations

import numpy as np

from fractal.lower.tile_affine import Aff
from fractal.lower.tile_ir import Buffer, Region

from .indices import compile_index, compile_lambda, index_source, stage_var_atoms


_ZERO = Aff()


class _RawBytes:
    """The bytes an array spans, exposed to NumPy as one contiguous uint8 array."""

    def __init__(self, array: np.ndarray, lo: int, n: int):
        self.array = array  # keeps the memory alive
        data = array.__array_interface__["data"][0]
        self.__array_interface__ = {"shape": (n,), "typestr": "|u1", "version": 3,
                                    "data": (data + lo, not array.flags.writeable)}


class Memory:
    """One buffer's storage for a run: the logical array, its raw bytes and byte strides;
    `derived` holds views of the raw bytes that accesses build once per bound array
    (`polygon`'s element and window views), dropped when another array is bound."""

    __slots__ = ("buffer", "array", "raw", "origin", "strides", "derived")

    def __init__(self, buffer: Buffer):
        self.buffer = buffer
        self.array = self.raw = None
        self.origin, self.strides, self.derived = 0, (), {}

    def bind(self, array: np.ndarray) -> None:
        self.array, self.derived = array, {}
        lo = sum((n - 1) * s for n, s in zip(array.shape, array.strides) if s < 0)
        hi = sum((n - 1) * s for n, s in zip(array.shape, array.strides) if s > 0) + array.itemsize
        n = hi - lo if array.size else 0
        self.raw = np.asarray(_RawBytes(array, lo, n)) if n else np.zeros(0, np.uint8)
        self.origin = -lo
        if array.strides != self.strides:
            self.strides = array.strides

    def release(self) -> None:
        """Drop the array (strides are kept: the next array bound likely has the same)."""
        self.array = self.raw = None
        self.derived = {}


def allocate(buffer: Buffer) -> np.ndarray:
    """Zeros of the buffer's logical shape, stored in its layout (outermost axis first)."""
    order = buffer.layout
    storage = np.zeros(tuple(buffer.shape[a] for a in order), buffer.dtype)
    return storage.transpose(np.argsort(order))


class RegionAccess:
    """A region over a stage box: `get` returns an array of shape `box + pads + shape`
    (`pads` size-1 axes before the region's, for broadcasting against a larger dst), a view
    of the buffer when `is_view`; `put` writes such an array into the region."""

    def __init__(self, region: Region, memory: Memory, stage_vars: tuple[str, ...], pads: int = 0):
        self.region, self.memory, self.pads = region, memory, pads
        self.dtype = memory.buffer.dtype
        self.shape = region.shape
        self.is_view = all(stage_var_atoms(s, stage_vars) for s in region.start)
        self.ranges = [(k, n, st) for k, (n, st) in enumerate(zip(region.size, region.stride)) if n is not None]
        if self.is_view:
            # offset(e, s, L): byte offset of the box origin; stage var i reads L[i]
            names = {v: f"L[{i}]" for i, v in enumerate(stage_vars)}
            terms = [f"s[{k}]*{index_source(x, names)}" for k, x in enumerate(region.start) if x != _ZERO]
            self._offset = compile_lambda("e, s, L", " + ".join(terms) or "0")
            self._coeffs = [[dict(x.terms).get(v, 0) for x in region.start] for v in stage_vars]
            self._bound_to = None
            self.get = self.view  # reads need no dispatch (an instance attribute shadows `get`)
        else:
            self._starts = [compile_index(x, vector=True) for x in region.start]
            self._stage_vars = stage_vars

    def _rebind(self, strides) -> None:
        """Byte strides of the box dims and range axes, for a buffer of these strides."""
        self._bound_to = strides
        box = tuple(sum(c * s for c, s in zip(cs, strides)) for cs in self._coeffs)
        self._strides = box + (0,) * self.pads + tuple(st * strides[k] for k, _, st in self.ranges)
        self._tail_shape = (1,) * self.pads + self.shape

    def view(self, env, los, box) -> np.ndarray:
        m = self.memory
        if m.strides != self._bound_to:
            self._rebind(m.strides)
        return np.ndarray(box + self._tail_shape, self.dtype, m.raw, m.origin + self._offset(env, m.strides, los),
                          self._strides)

    def view_as(self, env, los, shape, strides) -> np.ndarray:
        """The region's memory at the box origin seen with other `shape` and byte `strides`
        (a view `view()` once gave, folded or transposed: see `ops._gemm`)."""
        m = self.memory
        return np.ndarray(shape, self.dtype, m.raw, m.origin + self._offset(env, m.strides, los), strides)

    def fancy_index(self, env, los, box) -> tuple:
        """Index arrays (one per buffer axis) that select the region over the box."""
        nd = len(box)
        full = nd + self.pads + len(self.shape)
        point = dict(env)
        for d, (var, lo, n) in enumerate(zip(self._stage_vars, los, box)):
            point[var] = np.arange(lo, lo + n).reshape((n,) + (1,) * (full - d - 1))
        index = [np.asarray(f(point)) for f in self._starts]
        for j, (k, n, st) in enumerate(self.ranges):
            index[k] = index[k] + (np.arange(n) * st).reshape((n,) + (1,) * (len(self.shape) - j - 1))
        # every box dim must show in the result, even those no index reads
        index[0] = np.broadcast_to(index[0], np.broadcast_shapes(box + (1,) * (full - nd), index[0].shape))
        return tuple(index)

    def get(self, env, los, box) -> np.ndarray:
        if self.is_view:
            return self.view(env, los, box)
        return self.memory.array[self.fancy_index(env, los, box)]

    def put(self, env, los, box, value) -> None:
        if self.is_view:
            np.copyto(self.view(env, los, box), value, casting="unsafe")
        else:
            target = self.memory.array
            index = self.fancy_index(env, los, box)
            shape = np.broadcast_shapes(*(i.shape for i in index))
            target[index] = np.broadcast_to(np.asarray(value), shape).astype(self.dtype, copy=False)

