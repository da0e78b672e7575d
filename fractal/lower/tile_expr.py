"""Regions and element expressions of the tile IR (re-exported by `fractal.lower.tile_ir`).

A region's `str()` is its text form (`h[l + 1, s - l, 0:4, 0:8]`), given by `tile_printer`.

A `Region` is an affine box of a buffer, one entry per buffer axis: an *index* axis (size
`None`, printed as its index `i`) is dropped from the region's shape like NumPy's `x[i]`;
a *range* axis (an int size, printed `lo:hi` or `lo:hi:stride` with `hi = lo + size*stride`)
is kept, even of size 1 (`i:i + 1`), like `x[i:i+1]`.

An element expression (the right side of an `Elementwise`) is a tree of `Load(region)`,
`Const(float)`, `Unary(op, x)`, `Binary(op, a, b)` and `Where(cond, a, b)`, with op names
from `fractal.lang.tensor_ops.UNARY` / `BINARY` (`exp`, `tanh`, `sigmoid`, `add`, `mul`, `lt`...).
The ops of `BOOL_OPS` give bool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from .tile_affine import Aff, aff


BOOL_OPS = frozenset({"eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_not"})


def _set(obj, name, value) -> None:
    object.__setattr__(obj, name, value)


@dataclass(frozen=True)
class Region:
    """An affine box of a buffer: per axis a start, a size (`None`: an index axis) and a stride."""

    buffer: str
    start: tuple[Aff, ...]
    size: tuple[int | None, ...]
    stride: tuple[int, ...] = ()  # () means all 1

    def __post_init__(self):
        _set(self, "start", tuple(aff(s) for s in self.start))
        _set(self, "size", tuple(None if s is None else int(s) for s in self.size))
        _set(self, "stride", tuple(int(s) for s in self.stride) or (1,) * len(self.size))

    @property
    def shape(self) -> tuple[int, ...]:
        """The sizes of the range axes (index axes are dropped)."""
        return tuple(s for s in self.size if s is not None)

    @property
    def range_axes(self) -> tuple[int, ...]:
        """The buffer axes that are ranges (`shape`'s axes)."""
        return tuple(a for a, s in enumerate(self.size) if s is not None)

    def vars(self) -> frozenset[str]:
        """The loop and stage variables its start indices read."""
        return frozenset().union(*(a.vars() for a in self.start))


@dataclass(frozen=True)
class Load:
    region: Region


@dataclass(frozen=True)
class Const:
    value: float

    def __post_init__(self):
        _set(self, "value", float(self.value))


@dataclass(frozen=True)
class Unary:
    op: str  # a name of fractal.lang.tensor_ops.UNARY
    x: "Expr"


@dataclass(frozen=True)
class Binary:
    op: str  # a name of fractal.lang.tensor_ops.BINARY
    a: "Expr"
    b: "Expr"


@dataclass(frozen=True)
class Where:
    cond: "Expr"
    a: "Expr"
    b: "Expr"


Expr = Union[Load, Const, Unary, Binary, Where]


def expr_loads(e: Expr) -> tuple[Region, ...]:
    """The regions an expression reads, left to right."""
    if isinstance(e, Load):
        return (e.region,)
    if isinstance(e, Const):
        return ()
    if not isinstance(e, (Unary, Binary, Where)):
        raise TypeError(f"not an element expression: {e!r}")
    kids = (e.x,) if isinstance(e, Unary) else (e.a, e.b) if isinstance(e, Binary) else (e.cond, e.a, e.b)
    return tuple(r for k in kids for r in expr_loads(k))
