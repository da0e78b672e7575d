"""The tile IR's contract with its backends, checked exactly: what `verify()` adds to well-formedness.

Every backend may rely on these, and every pass must keep them:

* the points of a stage are independent: no two points write one element, no point reads an
  element another point writes (so a backend runs them in any order, at once, op after op
  over the whole box, or cut over threads, thread blocks or PEs);
* so are the iterations of a parallel loop (a backend may run them at once, as grid dims);
  what a dead point of a sequential loop's `active` hint reads does not count (no one reads
  its results: the index fitted to the live points may land, for a dead one, in another
  iteration's rows), what it writes does;
* a scatter writes, at each point, exactly the rows its index names (its region is the
  frame the index counts in), each at most once: with a constant index table that is checked
  here, row by row (a traced index is the program's data, checked when it runs).

The questions are the dependence engine's (`fractal.lower.dependences`: exact, isl, constant
index tables read row by row); a failure names the stage or loop and two instances that meet.
"""

from __future__ import annotations

import islpy as isl
import numpy as np

from fractal.lang.errors import UNKNOWN_LOC, VerifyError

from .dependences import Access, accesses, deltas, only_zero, tables_of
from .table_rows import table_instances
from .rewrite import Path, rewrite_blocks
from .tile_nodes import Loop, Scatter, Stage
from .tile_isl import Indirect
from .tile_printer import header, print_region


def check_contract(program) -> None:
    """Raise `VerifyError` where a stage's points or a parallel loop's iterations meet, or a
    constant scatter index repeats a row within a point."""
    shapes = {b.name: b.shape for b in program.buffers}
    tables = tables_of(program)

    def block(stmts, path: Path):
        scope = path.scope()
        for s in stmts:
            if isinstance(s, Stage):
                if s.dims:
                    _independent([s], scope, scope.vars, tuple(d.var for d in s.dims), "points of stage", s, shapes,
                                 tables)
                inner = scope  # (a stage without dims has one point: its scatters still name rows once)
                for d in s.dims:
                    inner = inner.inner(d.var, d.start, d.stop)
                for op in s.body:
                    if isinstance(op, Scatter):
                        _distinct_rows(op, inner, tables, s)
            elif isinstance(s, Loop) and s.kind == "parallel":
                _independent(s.body, scope.inner(s.var, s.start, s.stop, s.step), scope.vars, (s.var,),
                             "iterations of parallel loop", s, shapes, tables)
        return stmts

    rewrite_blocks(program, block)


def _independent(stmts, scope, fixed, over, what: str, where, shapes, tables) -> None:
    """`stmts` (standing in `scope`) meet only where their `over` variables are equal, the
    `fixed` ones (the loops around) held equal."""
    xs = accesses(stmts, scope, shapes, tables, live_reads=True)
    d = deltas(xs, xs, over, fixed)
    if not only_zero(d):
        shown = _nonzero_example(d)
        detail = f" (instances {', '.join(over)} differing by {list(shown)} touch one element)" if shown else ""
        detail += _culprits(xs, over, fixed)
        raise VerifyError(f"the {what} {_name(where)} are not independent{detail}\n  in: {_head(where)}",
                          loc=UNKNOWN_LOC)


def _nonzero_example(d) -> tuple[int, ...] | None:
    """One nonzero difference in `d` (for the message)."""
    n = d.dim(isl.dim_type.set)
    point = d.subtract(isl.Set(f"{{ [{', '.join(f'd{k}' for k in range(n))}] : "
                               f"{' and '.join(f'd{k} = 0' for k in range(n)) or 'true'} }}")).sample_point()
    return None if point.is_void() else tuple(point.get_coordinate_val(isl.dim_type.set, k).to_python()
                                                  for k in range(n))


def _culprits(xs, over, fixed) -> str:
    """The first pair of accesses that meet across instances, for the message (a failure only)."""
    for x in xs:
        for y in xs:
            if (x.write or y.write) and x.region.buffer == y.region.buffer and not only_zero(deltas([x], [y], over, fixed)):
                what = lambda a: f"{'writes' if a.write else 'reads'} {print_region(a.region)}"  # noqa: E731
                return f"\n  {what(x)}, {what(y)}"
    return ""


def _distinct_rows(op: Scatter, scope, tables, stage: Stage) -> None:
    table = tables.get(op.index.buffer)
    if table is None:
        return
    found = table_instances(Access(op.dst, True, scope, Indirect(op.axis, op.index, np.asarray(table)), ()))
    if found is None:
        return
    size = op.dst.shape[op.axis]
    if ((found.values < -size) | (found.values > size)).any():
        raise VerifyError(f"scatter index {op.index.buffer} of stage {stage.name} holds a value outside "
                          f"-{size}..{size} (the rows of the destination, and {size}: padding)\n  in: {_head(stage)}",
                          loc=UNKNOWN_LOC)
    pairs = np.stack([found.instance, found.row], axis=1)
    if len(np.unique(pairs, axis=0)) < len(pairs):
        raise VerifyError(f"scatter index {op.index.buffer} names a row twice within one point of stage "
                          f"{stage.name} (a scatter writes each row at most once)\n  in: {_head(stage)}",
                          loc=UNKNOWN_LOC)


def _name(s) -> str:
    return s.name if isinstance(s, Stage) else s.var


def _head(s) -> str:
    try:
        return header(s)
    except (ValueError, TypeError, AttributeError):
        return repr(s)[:300]
