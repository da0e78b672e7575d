"""Pass 1, schedule: put the parallel (map) loops innermost, directly around the stages.

The first tile IR nests loops as the program nests combinators: `map > scan` is a parallel
loop around a sequential one.  Map iterations are independent, so a parallel loop may be
distributed over the statements of its body (all of statement 1 for every point, then all
of statement 2: each point still sees its own order) and interchanged with a sequential loop
inside it whose bounds do not read the map variable.  Doing both until no parallel loop
holds anything but a stage (or another parallel loop) leaves every stage batched over all
its map dims under the fewest sequential steps; coarsening then makes those loops stage dims.
A loop of a single iteration is replaced by its body at that index.

Before::                                     After::

    for m in 0:3 parallel host {               for s in 0:5 sequential host {
      for s in 0:5 sequential host {             for m in 0:3 parallel host {
        stage cell() device { ... }                stage cell() device { ... }
      }                                          }
    }                                          }
"""

from __future__ import annotations

from dataclasses import replace

from .rewrite import rewrite_blocks, substitute
from .tile_ir import Loop, Stage, TileProgram


def schedule(program: TileProgram, ctx=None) -> TileProgram:
    """Pass 1, schedule: parallel loops distributed over their statements and sunk below the
    sequential ones, directly around the stages."""
    return rewrite_blocks(program, _block)


def _block(stmts, path) -> list:
    """One block, the blocks inside its statements already scheduled."""
    out = []
    for s in stmts:
        if isinstance(s, Loop) and s.start.is_const and s.stop.is_const and s.stop.const - s.start.const == 1:
            # a loop of one iteration (a fold over one layer) is its body at that index
            out.extend(_block([substitute(b, {s.var: s.start}) for b in s.body], path))
        elif isinstance(s, Loop) and s.kind == "parallel":
            for inner in s.body:
                out.extend(_sink(s, inner))
        else:
            out.append(s)
    return out


def _reads(loop: Loop, var: str) -> bool:
    return var in loop.start.vars() | loop.stop.vars()


def _sink(par: Loop, stmt) -> list:
    """`par` around the single (already scheduled) statement `stmt`, pushed inwards."""
    if isinstance(stmt, Loop) and stmt.kind == "sequential" and not _reads(stmt, par.var):
        body = []
        for inner in stmt.body:
            body.extend(_sink(par, inner))
        return [replace(stmt, body=tuple(body))]
    return [replace(par, body=(stmt,))]


def parallel_nest(stmt) -> tuple[list[Loop], Stage | None]:
    """The parallel loops directly around a stage (`[]`, stage for a bare stage)."""
    loops = []
    while isinstance(stmt, Loop) and stmt.kind == "parallel" and len(stmt.body) == 1:
        loops.append(stmt)
        stmt = stmt.body[0]
    return (loops, stmt) if isinstance(stmt, Stage) else ([], None)
