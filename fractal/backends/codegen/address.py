"""Element addresses: the linear offset of a point of a tile-IR region in its buffer.

A `Region` has per buffer axis a start index, a size (`None`: an index axis, dropped from
the region's shape) and a stride; a `Buffer`'s `layout` orders its axes in memory, which
gives each axis an element stride (`Buffer.strides`).  The point of the region at element
variables `e0, e1, ...` (one per range axis, in order) sits on axis `k` at
`start[k] + stride[k]*e`, and at offset `sum(point[k] * buffer.strides[k])`.  The sum is
built as a tile-IR index, so like terms merge and constants fold before it is printed.

    >>> b = Buffer("h", (5, 6, 8), "float32", layout=(0, 2, 1))   # axis 1 innermost
    >>> r = Region("h", (aff("l") + 1, aff("s"), 0), (None, 4, 8), (1, 1, 1))
    >>> offset(r, b, ("e0", "e1"))
    'e0 + 6*e1 + 48*l + s + 48'
"""

from __future__ import annotations

from typing import Mapping, Sequence

from fractal.lang.errors import ArgumentError
from fractal.lower.tile_affine import Aff, aff
from fractal.lower.tile_nodes import Buffer, Region

from .index import index_expr


def point_offset(region: Region, buffer: Buffer, element_vars: Sequence[str]) -> Aff:
    """The offset as a tile-IR index over the region's variables and `element_vars`."""
    if region.buffer != buffer.name or len(region.start) != buffer.ndim:
        raise ArgumentError(f"region {region.buffer} with {len(region.start)} axes is not a region of "
                            f"buffer {buffer.name} with {buffer.ndim} axes")
    if len(element_vars) != len(region.shape):
        raise ArgumentError(f"region {region.buffer} has {len(region.shape)} range axes, "
                            f"got {len(element_vars)} element variables {tuple(element_vars)}")
    evars = iter(element_vars)
    total = aff(0)
    for start, size, step, axis_stride in zip(region.start, region.size, region.stride, buffer.strides):
        point = start if size is None else start + step * aff(next(evars))
        total = total + axis_stride * point
    return total


def offset(region: Region, buffer: Buffer, element_vars: Sequence[str], names: Mapping[str, str] | None = None) -> str:
    """C++ text of the linear element offset of `region`'s point at `element_vars`."""
    return index_expr(point_offset(region, buffer, element_vars), names)
