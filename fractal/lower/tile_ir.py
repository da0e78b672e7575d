"""The tile IR: the one IR every backend consumes (cpu now; CUDA and dataflow later).

A `TileProgram` declares `Buffer`s (shape, dtype, layout, memory level, role, and a const
buffer's data) and runs statements: `Loop`s (sequential or parallel, placed on the host or
the device), `If`s, and `Stage`s.  A stage is a kernel over a parallel iteration space (CPU batch axes, a
CUDA grid, dataflow PEs); its body is a list of tile operations over affine `Region`s of
buffers, run once per point of the space: `Copy`, `Gemm`, `Elementwise` (an expression
tree of `Load`, `Const`, `Unary`, `Binary`, `Where`), `Reduce`, `SegmentReduce`,
`Gather`, `Scatter` and `Convert`.  Indices are `Aff`s (`fractal.lower.tile_affine`) over the enclosing loop and
stage variables.  A stage's dims nest like loops: a dim's bounds read the enclosing
variables and the stage's earlier dims, so the space is a box or, where a bound reads an
earlier dim, a polygon (a wavefront's hyperplane `f + i + j = w`).  Nodes are frozen
dataclasses; constructors normalise (lists to tuples, ints and variable names to `Aff`s,
dtypes to `np.dtype`, default layouts and strides) so equal programs compare equal; they
never parse (`fractal.lower.parse_index` reads index text).  `verify()` checks everything
else (`fractal.lower.tile_verify`).

This module is the IR's public face: `TileProgram` is defined here, on top of the printer
and the verifier it calls, and the nodes below it are re-exported from
`fractal.lower.tile_nodes` (buffers, tile ops, statements) and `fractal.lower.tile_expr`
(regions, element expressions), which the printer and the verifier read.

A region has one entry per buffer axis: an *index* axis (size `None`, printed as its
index `i`) is dropped from the region's shape like NumPy's `x[i]`; a *range* axis (an
int size, printed `lo:hi` or `lo:hi:stride` with `hi = lo + size*stride`) is kept, even
of size 1 (`i:i + 1`), like `x[i:i+1]`.  Ops apply their shape rules to these shapes.

A wavefront-scheduled two-layer LSTM (6 steps, batch 4, hidden 8) prints as below
(`fractal.lower.tile_printer`; `fractal.lower.tile_parser` reads it back).  `h[l + 1, t + 1]`
is layer `l`'s output at step `t`, `h[0]` holds the input; the loop runs the `2 + 6 - 1`
wavefront steps `s = l + t`, each one stage of gate GEMMs and one of fused cell updates
over the layers `l` active at that step::

    tile @lstm_wavefront {
      buffer x: f32[6,4,8] global input
      buffer w: f32[2,8,32] global input
      buffer u: f32[2,8,32] global input layout(0,2,1)
      buffer h: f32[3,7,4,8] global output
      buffer c: f32[2,7,4,8] global temp
      buffer g: f32[2,4,32] shared temp
      stage init(l in 0:2) device {
        h[l + 1, 0, 0:4, 0:8] = 0.0
        c[l, 0, 0:4, 0:8] = 0.0
      }
      stage load_x(t in 0:6) device {
        h[0, t + 1, 0:4, 0:8] = copy(x[t, 0:4, 0:8])
      }
      for s in 0:7 sequential host {
        stage gates(l in max(0, s - 5):min(2, s + 1)) device {
          g[l, 0:4, 0:32] = gemm(h[l, s - l + 1, 0:4, 0:8], w[l, 0:8, 0:32])
          g[l, 0:4, 0:32] += gemm(h[l + 1, s - l, 0:4, 0:8], u[l, 0:8, 0:32])
        }
        stage cell(l in max(0, s - 5):min(2, s + 1)) device {
          c[l, s - l + 1, 0:4, 0:8] = add(mul(sigmoid(g[l, 0:4, 8:16]), c[l, s - l, 0:4, 0:8]), mul(sigmoid(g[l, 0:4, 0:8]), tanh(g[l, 0:4, 24:32])))
          h[l + 1, s - l + 1, 0:4, 0:8] = mul(sigmoid(g[l, 0:4, 16:24]), tanh(c[l, s - l + 1, 0:4, 0:8]))
        }
      }
    }

A `const` buffer declares its data (`Buffer.data`): the program moves no byte a backend
cannot see.  The data is in logical (row-major) order whatever the layout, printed in the
program IR's constant format (`fractal.lang.array_text`): a literal up to 64 elements,
above that `b64"..."`, the little-endian bytes in base64.  An embedding lookup of a table
captured as a constant, through the ids of a batch of rows::

    tile @embed {
      buffer ids: i64[5] global const = [3, 0, 2, 2, 1]
      buffer table: f32[4,2] global const layout(1,0) = [[0.0, 1.0], [0.5, -0.5], [0.125, inf], [-2.0, nan]]
      buffer y: f32[5,2] global output
      stage embed() device {
        y[0:5, 0:2] = gather(table[0:4, 0:2], ids[0:5], axis=0)
      }
    }
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from .tile_expr import BOOL_OPS, Binary, Const, Expr, Load, Region, Unary, Where, expr_loads  # noqa: F401
from .tile_nodes import (COMBINER_OF, COMBINERS, COMPARE, COMPARISONS, LEVELS, LOOP_KINDS, PLACEMENTS, ROLES,  # noqa: F401
                         TILE_OPS, Active, Buffer, Convert, Copy, Dim, Elementwise, Gather, Gemm, If, Loop,
                         Reduce, Scatter, SegmentReduce, Stage, Stmt, TileOp)
from .tile_printer import print_tile_program
from .tile_verify import verify_tile_program


@dataclass(frozen=True)
class TileProgram:
    """A program: its buffers and the statements that run, in order."""

    name: str
    buffers: tuple[Buffer, ...]
    body: tuple[Stmt, ...]

    def __post_init__(self):
        object.__setattr__(self, "buffers", tuple(self.buffers))
        object.__setattr__(self, "body", tuple(self.body))

    def buffer(self, name: str) -> Buffer:
        for b in self.buffers:
            if b.name == name:
                return b
        raise KeyError(f"no buffer {name!r} in tile program {self.name}")

    def stages(self):
        """Every stage, in program order."""
        def walk(stmts):
            for s in stmts:
                if isinstance(s, Stage):
                    yield s
                elif isinstance(s, Loop):
                    yield from walk(s.body)
                elif isinstance(s, If):
                    yield from walk(s.then)
                    yield from walk(s.orelse)
        return walk(self.body)

    def __str__(self) -> str:
        return print_tile_program(self)

    def _repr_html_(self) -> str:  # notebooks show the program text
        return f"<pre>{html.escape(str(self))}</pre>"

    def verify(self, *, contract: bool = True) -> "TileProgram":
        """Check every rule of the IR (`fractal.lower.tile_verify`), and the contract with the
        backends unless `contract=False` (a test building a program that breaks it on purpose);
        raises `VerifyError`."""
        verify_tile_program(self, contract=contract)
        return self
