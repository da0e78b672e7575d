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

This module is the IR's public face: `Program` is defined here, on top of the printer, the
verifier and the interpreter it calls, and the nodes below it are re-exported from
`fractal.lang.ir_nodes`, which those (and tracing) read.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any, Iterator

from .interpreter import run_program
from .ir_nodes import Const, Eqn, Region, Slice, Var, make_params, walk_eqns  # noqa: F401 (re-exported)
from .printer import print_program
from .verify import verify_program


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
        return print_program(self)

    def _repr_html_(self) -> str:  # notebooks show the program text
        return f"<pre>{html.escape(str(self))}</pre>"

    def verify(self) -> "Program":
        """Check the typing and scoping rules (`fractal.lang.verify`); raises `VerifyError`."""
        verify_program(self)
        return self

    def interpret(self, *args):
        """Run the program on flat arguments with the NumPy reference interpreter."""
        return run_program(self, args)

    def eqns(self) -> Iterator[Eqn]:
        """Every equation, nested regions included, in program order."""
        yield from walk_eqns(self.body)
