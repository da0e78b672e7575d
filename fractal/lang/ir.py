"""The program IR: typed, A-normal form, with nested regions for combinator bodies.

A `Program` is a flat list of equations over variables.  Every `Eqn` applies
one op to variables and binds fresh variables; combinators (`map`, `scan`,
`fold`, `reduce`) carry their body as a nested `Region`, which may read
variables of enclosing regions (lexical scoping).  Access operators
(`window`, `reverse`, `dilate`, ...) stay declarative equations: the ETDG
analysis reads them as access maps.  Tuples never appear as variables: they
are flattened at trace time, and `Program.out_tree` remembers how results nest.

Printed (`str(program)`), a one-layer RNN reads::

    func @rnn(%xs: ft<f32[1,4]>, %w: f32[4,4]) -> ft<f32[1,4]> {
      %0: f32[1,4] = full() {dtype=f32, shape=(1, 4), value=0.0}  loc("rnn.py":8:"rnn")
      %1: ft<f32[1,4]> = scan(%0, %xs) {n_state=1, reverse=false}  loc("rnn.py":9:"rnn") {
        ^(%2: f32[1,4], %3: f32[1,4]):
          %4: f32[1,4] = matmul(%2, %w)  loc("rnn.py":6:"cell")
          %5: f32[1,4] = add(%4, %3)  loc("rnn.py":6:"cell")
          %6: f32[1,4] = tanh(%5)  loc("rnn.py":6:"cell")
          yield %6
      }
      return %1
    }

`fractal.lang.printer` prints this form and `fractal.lang.parser` reads it back.
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


@dataclass(frozen=True)
class Program:
    """A traced function: parameters, a top-level region, and the nesting of its results.

    `out_tree` is `None` for a single result, or a nested tuple whose leaves are
    `None`, one per flat result in order (e.g. `(None, (None, None))`).
    """

    name: str
    body: Region
    out_tree: Any = None

    @property
    def params(self) -> tuple[Var, ...]:
        return self.body.params

    @property
    def results(self) -> tuple[Var, ...]:
        return self.body.results

    def __str__(self) -> str:
        from .printer import print_program
        return print_program(self)

    def _repr_html_(self) -> str:  # notebooks show the program text
        import html
        return f"<pre>{html.escape(str(self))}</pre>"

    def verify(self) -> "Program":
        from .verify import verify_program
        verify_program(self)
        return self

    def interpret(self, *args):
        """Run the program on flat arguments with the NumPy reference interpreter."""
        from .interpreter import run_program
        return run_program(self, args)

    def eqns(self) -> Iterator[Eqn]:
        """Every equation, nested regions included, in program order."""
        yield from walk_eqns(self.body)


def walk_eqns(region: Region) -> Iterator[Eqn]:
    for eqn in region.eqns:
        yield eqn
        for r in eqn.regions:
            yield from walk_eqns(r)


def make_params(**kwargs) -> tuple[tuple[str, Any], ...]:
    """Canonical (sorted) parameter tuple, so equal params compare equal."""
    return tuple(sorted(kwargs.items()))
