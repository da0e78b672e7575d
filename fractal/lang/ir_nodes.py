"""The nodes of the program IR below the program: variables, equations, regions.

`fractal.lang.ir` describes the IR and re-exports these with `Program`; import them from
there.  They live apart because the printer, the verifier, the interpreter and tracing read
them, and `Program` prints, verifies and interprets itself with the first three: so those
build on this module, and `ir` on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from .errors import UNKNOWN_LOC, SourceLoc
from .types import AnyType


@dataclass(frozen=True)
class Var:
    """A variable: a unique name (printed `%name`) and its static type."""

    name: str
    type: AnyType

    def __str__(self) -> str:
        return f"%{self.name}"


@dataclass(frozen=True)
class Slice:
    """A static `start:stop:step` inside an op parameter (Python slices are unhashable)."""

    start: int | None
    stop: int | None
    step: int | None

    def to_slice(self) -> slice:
        return slice(self.start, self.stop, self.step)


@dataclass(frozen=True, eq=False)
class Const:
    """A constant array (a read-only copy), compared by dtype, shape and bytes: an op parameter
    here, a const buffer's data in the tile IR (`fractal.lower.tile_ir.Buffer.data`).

    Programs holding big tables compare often (a pass's result against its input), so the
    same object compares equal without reading its bytes and the hash is computed once."""

    value: np.ndarray

    def __post_init__(self):
        arr = np.array(self.value, copy=True)
        arr.flags.writeable = False
        object.__setattr__(self, "value", arr)

    def __eq__(self, other):
        if self is other:
            return True
        if not isinstance(other, Const):
            return False
        a, b = self.value, other.value
        return a.dtype.str == b.dtype.str and a.shape == b.shape and a.tobytes() == b.tobytes()

    def __hash__(self):
        h = self.__dict__.get("_hash")
        if h is None:
            h = hash((self.value.dtype.str, self.value.shape, self.value.tobytes()))
            object.__setattr__(self, "_hash", h)
        return h

    def __reduce__(self):  # without the cached hash: hashes of bytes differ between processes
        return Const, (self.value,)

    def __repr__(self):
        return f"Const({self.value.dtype}{list(self.value.shape)})"


@dataclass(frozen=True)
class Region:
    """A combinator body: parameters bound per instance, equations, yielded results."""

    params: tuple[Var, ...]
    eqns: tuple["Eqn", ...]
    results: tuple[Var, ...]


@dataclass(frozen=True)
class Eqn:
    """`outputs = op(inputs) {params}` with optional nested regions and the user's location."""

    op: str
    inputs: tuple[Var, ...]
    outputs: tuple[Var, ...]
    params: tuple[tuple[str, Any], ...] = ()
    regions: tuple[Region, ...] = ()
    loc: SourceLoc = UNKNOWN_LOC

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.params)


def walk_eqns(region: Region) -> Iterator[Eqn]:
    for eqn in region.eqns:
        yield eqn
        for r in eqn.regions:
            yield from walk_eqns(r)


def make_params(**kwargs) -> tuple[tuple[str, Any], ...]:
    """Canonical (sorted) parameter tuple, so equal params compare equal."""
    return tuple(sorted(kwargs.items()))
