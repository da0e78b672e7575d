"""The dependence engine (`fractal.lower.dependences`) against the brute-force oracle.

The engine answers every pass's legality question, and `verify()`'s contract, from access
relations in isl; the oracle (`tile_bruteforce`) runs the program and watches every element.
On random programs (`tile_strategies.tile_programs`) they must agree:

* soundness, always: every difference `y[over] - x[over]` the oracle observes between
  instances of two op sets that touch a common element (one writing), with the `fixed`
  variables equal, is in the engine's `deltas(xs, ys, over, fixed)`;
* exactness: the two sets are equal unless an access of either set goes through an index
  table known only at run time (an input), which the engine widens to the whole axis of the
  region.  Everything else is exact: loop and dim bounds, steps and `if` conditions make
  exact domains, regions are quasi-affine (max, min, floor, mod), and a constant table is
  read row by row (negative entries from the end, a scatter's padding naming no row).  Only
  past the engine's size limits, which these small programs stay below, does a constant
  table widen too: to each kept value's span of rows past `MAX_TABLE_RUNS` runs; past
  `MAX_TABLE_ENTRIES` entries or `MAX_TABLE_RUNS` kept values it is described as affine
  pieces instead (`fractal.lower.table_fit`: exact too, checked here with the listing
  turned off), and only past `table_fit.MAX_PIECES` of those does it widen to the whole axis;
* the contract: `check_contract` accepts a program exactly when the oracle sees no
  dependence between two points of a stage or two iterations of a parallel loop, and no
  scatter naming a row twice within a point through a constant table.  Through a runtime
  table the engine may reject independent points (the widened axis), and a repeated row
  goes unseen until the program runs (its data); nothing else differs.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from fractal.lang.errors import VerifyError
from fractal.lower import dependences, table_fit, table_rows
from fractal.lower.dependences import deltas, op_accesses, tables_of, vectors
from fractal.lower.tile_contract import check_contract
from fractal.lower.tile_ir import Gather, If, Loop, Scatter, Stage
from fractal.lower.tile_isl import Scope
from fractal.lower.tile_parser import parse_tile_program
from tests.backends.cpu.programs import with_data
from tests.lower.tile_bruteforce import (cross_point_dependences, element_accesses, instance_dependences,
                                         parallel_loop_dependences, repeated_scatter_rows, touch_differences)
from tests.lower.tile_strategies import tile_programs

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def op_scopes(program) -> dict:
    """(stage name, op index) -> (op, its `Scope`: the loops, `if` branches and stage dims around it)."""
    out = {}

    def walk(stmts, scope: Scope):
        for s in stmts:
            if isinstance(s, Loop):
                walk(s.body, scope.inner(s.var, s.start, s.stop, s.step))
            elif isinstance(s, If):
                walk(s.then, scope.when(s.cond))
                walk(s.orelse, scope.unless(s.cond))
            else:
                assert isinstance(s, Stage)
                inner = scope
                for d in s.dims:
                    inner = inner.inner(d.var, d.start, d.stop)
                out.update({(s.name, k): (op, inner) for k, op in enumerate(s.body)})
    walk(program.body, Scope())
    return out


def engine_accesses(program, ops, scopes) -> list:
    shapes = {b.name: b.shape for b in program.buffers}
    return [a for op in ops for a in op_accesses(scopes[op][0], scopes[op][1], shapes, tables_of(program))]


def through_runtime_table(program, ops, scopes) -> bool:
    """Does a gather or scatter among `ops` index through a table known only at run time?"""
    roles = {b.name: b.role for b in program.buffers}
    return any(isinstance(op, (Gather, Scatter)) and roles[op.index.buffer] != "const"
               for op, _ in (scopes[o] for o in ops))


@st.composite
def questions(draw):
    """A random program and a question about it: two op sets and, among the variables that
    enclose every op of both, `over` (in a random order) and `fixed` (disjoint)."""
    drawn = draw(tile_programs())
    scopes = op_scopes(drawn.program)
    ops = sorted(scopes)
    xs = draw(st.lists(st.sampled_from(ops), min_size=1, max_size=3, unique=True))
    ys = draw(st.lists(st.sampled_from(ops), min_size=1, max_size=3, unique=True))
    common = [v for v in scopes[xs[0]][1].vars if all(v in scopes[o][1].vars for o in xs + ys)]
    chosen = draw(st.permutations(common))
    split = draw(st.integers(0, len(chosen)))
    fixed = chosen[:split]
    over = draw(st.lists(st.sampled_from(chosen[split:]), unique=True)) if split < len(chosen) else []
    return drawn, xs, ys, tuple(over), tuple(fixed)


@SETTINGS
@given(questions())
def test_deltas_hold_every_difference_the_oracle_observes_and_no_other_through_constant_tables(question):
    """Soundness always; equality where no access of the two sets reads a runtime table."""
    drawn, xs, ys, over, fixed = question
    p, scopes = drawn.program, op_scopes(drawn.program)
    seen = touch_differences(element_accesses(*drawn), xs, ys, over, fixed)
    found = vectors(deltas(engine_accesses(p, xs, scopes), engine_accesses(p, ys, scopes), over, fixed))
    note(f"xs={xs} ys={ys} over={over} fixed={fixed}\noracle: {sorted(seen)}\nengine: {found}")
    assert found is not None  # (small programs: few differences)
    assert seen <= set(found), "the engine misses a difference the program shows"
    if through_runtime_table(p, xs + ys, scopes):
        event("through a runtime table: " + ("exact anyway" if seen == set(found) else "over-approximated"))
    else:
        event("exact: " + ("they meet" if seen else "they never meet"))
        assert set(found) == seen, "the engine reports a difference the program never shows"


@contextlib.contextmanager
def tables_never_listed():
    """The engine with `MAX_TABLE_ENTRIES` at 0: a constant table read at more than one
    instance is never listed entry by entry, so it goes through `table_fit`'s affine pieces
    (the caches cleared on the way in and out: their answers came under other limits)."""
    def clear():
        for cached in (dependences._deltas, dependences._relation, table_rows._listing, table_fit.table_pieces):
            cached.cache_clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(table_rows, "MAX_TABLE_ENTRIES", 0)
        clear()
        try:
            yield
        finally:
            clear()


@settings(SETTINGS, max_examples=60)
@given(questions())
def test_constant_tables_too_big_to_list_stay_exact_as_affine_pieces(question):
    """The same property with no table listed entry by entry: the affine pieces stand for
    exactly the rows the tables name (padding, negative entries and repeated rows included)."""
    drawn, xs, ys, over, fixed = question
    p, scopes = drawn.program, op_scopes(drawn.program)
    seen = touch_differences(element_accesses(*drawn), xs, ys, over, fixed)
    with tables_never_listed():
        found = vectors(deltas(engine_accesses(p, xs, scopes), engine_accesses(p, ys, scopes), over, fixed))
    note(f"xs={xs} ys={ys} over={over} fixed={fixed}\noracle: {sorted(seen)}\nengine: {found}")
    assert found is not None
    assert seen <= set(found), "the engine misses a difference the program shows"
    if not through_runtime_table(p, xs + ys, scopes):
        assert set(found) == seen, "the engine reports a difference the program never shows"


def contract_breaches(drawn) -> dict[str, list]:
    """What one run of the program shows of the contract's breaches, by kind: dependences
    between the points of a stage or the iterations of a parallel loop, and a row a scatter
    names twice within a point through a constant table or through a runtime one (which the
    contract leaves to the run)."""
    p = drawn.program
    deps = instance_dependences(*drawn)
    roles = {b.name: b.role for b in p.buffers}
    stages = {s.name: s for s in p.stages()}
    repeated = repeated_scatter_rows(*drawn)
    runtime = [r for r in repeated if roles[stages[r[0].op[0]].body[r[0].op[1]].index.buffer] != "const"]
    return {"points": cross_point_dependences(deps, p), "iterations": parallel_loop_dependences(deps, p),
            "rows": [r for r in repeated if r not in runtime], "runtime rows": runtime}


@SETTINGS
@given(tile_programs())
def test_the_contract_holds_exactly_when_the_oracle_sees_nothing_it_rules_out(drawn):
    """`check_contract` rejects every program whose run shows two points of a stage meeting
    or two iterations of a parallel loop meeting, or a constant scatter table naming a row
    twice in a point; it accepts every other program whose tables are constants."""
    p = drawn.program
    breaches = contract_breaches(drawn)
    try:
        check_contract(p)
        passed = True
    except VerifyError as e:
        note(str(e))
        passed = False
    note(f"the oracle: { {kind: found[:4] for kind, found in breaches.items()} }")
    if breaches["points"] or breaches["iterations"] or breaches["rows"]:
        event("broken: rejected")
        assert not passed, "the contract accepts a program whose run breaks it"
    elif through_runtime_table(p, list(op_scopes(p)), op_scopes(p)):
        event("kept, through runtime tables: " + ("accepted" if passed else "rejected (over-approximated)")
              + (" (a runtime scatter table repeats a row)" if breaches["runtime rows"] else ""))
    else:
        event("kept: accepted")
        assert passed, "the contract rejects a program whose run keeps it"


@settings(SETTINGS, max_examples=40)
@given(tile_programs())
def test_the_contract_stays_exact_with_constant_tables_too_big_to_list(drawn):
    """The contract's property with no table listed entry by entry: through the affine pieces
    it still rejects exactly the programs whose run shows two points of a stage or two
    iterations of a parallel loop meeting (a repeated scatter row, checked by listing, is
    left out: unlisted, it goes unseen)."""
    p = drawn.program
    breaches = contract_breaches(drawn)
    with tables_never_listed():
        try:
            check_contract(p)
            passed = True
        except VerifyError as e:
            note(str(e))
            passed = False
    if breaches["points"] or breaches["iterations"]:
        assert not passed, "the contract accepts a program whose run breaks it"
    elif not breaches["rows"] and not through_runtime_table(p, list(op_scopes(p)), op_scopes(p)):
        assert passed, "the contract rejects a program whose run keeps it"


# --- cases the properties found, pinned -----------------------------------------------------------

def test_a_scatter_of_a_stage_without_dims_names_each_row_once():
    """A stage without dims has one point, and its scatters are held to the rule as any
    other's (the contract used to check them in stages with dims only)."""
    p = parse_tile_program("""tile @once {
      buffer x: f64[2,1] global input
      buffer y: f64[1,1] global output
      buffer idx: i64[2] global const = [0, 0]
      stage s() device { y[0:1, 0:1] = scatter(x[0:2, 0:1], idx[0:2], axis=0) }
    }""").verify(contract=False)
    with pytest.raises(VerifyError, match="names a row twice within one point of stage s"):
        check_contract(p)
    check_contract(with_data(p, {"idx": [0, 1]}))  # the second entry is padding: one past the end


def test_a_scatter_under_a_condition_that_never_holds_names_no_row():
    """Under `if 0 < 0` (what scheduling leaves of `for i in 0:1 { if i < 0 { ... } }`) a stage
    without variables has no instance, so its scatter names no row at all.  (The engine took a
    scope without variables for one instance, and the contract rejected a repeated row that is
    never written.)"""
    check_contract(parse_tile_program("""tile @never {
      buffer x: f64[4,1] global input
      buffer y: f64[3,1] global output
      buffer idx: i64[4] global const = [0, 1, 2, 0]
      if 0 < 0 {
        stage s() device { y[0:3, 0:1] = scatter(x[0:4, 0:1], idx[0:4], axis=0) }
      }
    }""").verify(contract=False))


def test_the_iterations_of_a_parallel_loop_that_meet_are_rejected():
    """Iterations j = 0 and j = 1 both write y[0, 0]: a parallel loop may not run them at once.
    (The contract held the loop's own variable fixed, and compared nothing.)"""
    p = parse_tile_program("""tile @both {
      buffer x: f64[1,1] global input
      buffer y: f64[1,1] global output
      for j in 0:2 parallel host {
        stage s() device { y[0, 0] = copy(x[0, 0]) }
      }
    }""").verify(contract=False)
    with pytest.raises(VerifyError, match="iterations of parallel loop j are not independent"):
        check_contract(p)


def engine_and_oracle(text: str, x, y, over=(), fixed=()) -> tuple[set, set]:
    """(the engine's differences, the oracle's) between two ops (ids) of a program in text form."""
    p = parse_tile_program(text).verify(contract=False)
    scopes = op_scopes(p)
    found = deltas(engine_accesses(p, [x], scopes), engine_accesses(p, [y], scopes), over, fixed)
    return set(vectors(found)), touch_differences(element_accesses(p), [x], [y], over, fixed)


TWO_TABLES = """tile @t {
  buffer x: f64[2,2] global input
  buffer y: f64[2,2] global temp
  buffer z: f64[2,2] global output
  buffer idx: i64[2] global const = %s
  %s
}"""


def test_a_gather_writing_the_region_it_reads_writes_every_row_of_it():
    """The table picks the rows a gather reads, not those it writes: `y[0:2, 0] = gather(y[0:2,
    0], idx)` writes both rows whatever idx holds (the engine took the written region, equal to
    the read one, for the one read through the table, and missed the write of row 0)."""
    assert engine_and_oracle(TWO_TABLES % ("[1, 1]", """
        stage g() device { y[0:2, 0] = gather(y[0:2, 0], idx[0:2], axis=0) }
        stage w() device { y[0, 0] = copy(x[0, 0]) }"""), ("g", 0), ("w", 0)) == ({()}, {()})


def test_two_scatters_along_different_axes_meet_where_their_elements_do():
    """`y[0, 0:2]` through its table names columns (buffer axis 1: y[0, 0], y[0, 1]), `y[0:1,
    1:2]` rows (axis 0: y[0, 1]): they meet.  (The engine compared the one's columns with the
    other's rows, and found nothing.)"""
    assert engine_and_oracle(TWO_TABLES % ("[0, 1]", """
        stage a() device { y[0, 0:2] = scatter(x[0:2, 0], idx[0:2], axis=0) }
        stage b() device { y[0:1, 1:2] = scatter(x[0:1, 0:1], idx[0:1], axis=0) }"""),
        ("a", 0), ("b", 0)) == ({()}, {()})


def test_the_rows_a_gather_reads_stay_with_the_columns_of_the_same_point():
    """Point p reads `y[idx[p], p]` = y[p, p]; nothing reads y[0, 1], written before.  (Rows
    kept per value of the question's variables only, point 1's row 0 paired with point 1's
    column 1, and the engine saw y[0, 1] read.)"""
    assert engine_and_oracle(TWO_TABLES % ("[0, 1]", """
        stage w() device { y[0, 1] = copy(x[0, 1]) }
        stage g(p in 0:2) device { z[p:p + 1, 0] = gather(y[0:2, p], idx[p:p + 1], axis=0) }"""),
        ("w", 0), ("g", 0)) == (set(), set())


def test_two_table_accesses_with_strided_columns_meet_only_at_common_columns():
    """A scatter into the even columns `y[0:2, 0:2:2]` and a gather of column 1 share rows but
    no column: they never meet (the engine's join of two tables compared the columns' spans,
    0..2 and 1..1, which overlap)."""
    wide = TWO_TABLES.replace("y: f64[2,2]", "y: f64[2,3]")
    assert engine_and_oracle(wide % ("[0, 1]", """
        stage a() device { y[0:2, 0:3:2] = scatter(x[0:2, 0:2], idx[0:2], axis=0) }
        stage b() device { z[0:2, 0:1] = gather(y[0:2, 1:2], idx[0:2], axis=0) }"""),
        ("a", 0), ("b", 0)) == (set(), set())


def test_an_access_that_never_runs_meets_nothing_not_even_itself():
    """`i` takes only the value 0, so `if i == 1` never holds: the copy has no instance and
    meets nothing.  (The engine's shortcut for an access meeting only itself at one instance
    answered `{()}` without asking whether there is one.)"""
    assert engine_and_oracle("""tile @t {
      buffer x: f64[1,1] global input
      buffer y: f64[2,1] global output
      for i in 0:2 step 2 sequential host {
        if i == 1 { stage s() device { y[i, 0] = copy(x[0, 0]) } }
      }
    }""", ("s", 0), ("s", 0)) == (set(), set())


def test_a_table_access_meets_a_plain_one_only_at_the_rows_it_lists(monkeypatch):
    """Iteration p writes rows {4k + 2p, 4k + 2p + 1} and gathers the same rows back through
    its part of the table: the iterations are independent.  (Past `MAX_TABLE_RUNS` runs of rows,
    lowered to 3 here as 32768-row tables reach it, the engine took each iteration's rows as
    their span, 0..5 and 2..7, and the contract rejected the loop; a table access is now joined
    row by row with a plain one, as with another table's.)"""
    monkeypatch.setattr(table_rows, "MAX_TABLE_RUNS", 3)
    check_contract(parse_tile_program("""tile @t {
      buffer x: f64[8,1] global input
      buffer y: f64[8,1] global temp
      buffer z: f64[8,1] global output
      buffer idx: i64[8] global const = [0, 1, 4, 5, 2, 3, 6, 7]
      for p in 0:2 parallel host {
        stage w(k in 0:2) device { y[4*k + 2*p:4*k + 2*p + 2, 0:1] = copy(x[4*k + 2*p:4*k + 2*p + 2, 0:1]) }
        stage g() device { z[4*p:4*p + 4, 0:1] = gather(y[0:8, 0:1], idx[4*p:4*p + 4], axis=0) }
      }
    }""").verify(contract=False))


OWN_BLOCKS = """tile @t {
  buffer x: f64[8,1] global input
  buffer y: f64[8,1] global temp
  buffer z: f64[8,1] global output
  buffer idx: i64[8] global const = %s
  for p in 0:2 parallel host {
    stage w(k in 0:4) device { y[4*p + k, 0:1] = copy(x[4*p + k, 0:1]) }
    stage g() device { z[4*p:4*p + 4, 0:1] = gather(y[0:8, 0:1], idx[4*p:4*p + 4], axis=0) }
  }
}"""


def test_a_table_too_big_to_list_meets_a_plain_access_only_at_its_rows():
    """Iteration p writes rows 4p..4p+3 and gathers them back in another order (8: padding,
    no row).  Listed entry by entry (here never: see `tables_never_listed`) or not, the
    iterations are independent.  (Past `MAX_TABLE_ENTRIES` entries the gather read the whole
    axis and the contract rejected the loop: selective_scan and transformer_block at their
    paper sizes.)"""
    with tables_never_listed():
        check_contract(parse_tile_program(OWN_BLOCKS % "[1, 0, 3, 8, 5, 4, 7, 6]").verify(contract=False))


def test_a_table_too_big_to_list_that_reads_another_iterations_row_is_rejected():
    """Iteration 0's third entry names row 4, which iteration 1 writes."""
    p = parse_tile_program(OWN_BLOCKS % "[1, 0, 4, 8, 5, 4, 7, 6]").verify(contract=False)
    with tables_never_listed(), pytest.raises(VerifyError, match="iterations of parallel loop p are not independent"):
        check_contract(p)


def test_past_the_pieces_limit_a_table_stands_for_the_whole_axis(monkeypatch):
    """More pieces than `table_fit.MAX_PIECES` (here 1; the table needs 7): the engine widens
    the gather to every row of y, soundly, and the contract rejects the independent loop."""
    monkeypatch.setattr(table_fit, "MAX_PIECES", 1)
    p = parse_tile_program(OWN_BLOCKS % "[1, 0, 3, 8, 5, 4, 7, 6]").verify(contract=False)
    with tables_never_listed(), pytest.raises(VerifyError, match="iterations of parallel loop p are not independent"):
        check_contract(p)


@SETTINGS
@given(tile_programs())
def test_a_table_access_listed_as_a_mask_names_exactly_the_elements_the_run_touches(drawn):
    """`listed_mask`: the elements a gather reads (a scatter writes) through its constant table,
    over every instance, are the ones the oracle sees that op read (write) in its buffer."""
    p, scopes = drawn.program, op_scopes(drawn.program)
    roles = {b.name: b.role for b in p.buffers}
    touched = element_accesses(*drawn)
    for (stage, k), (op, _) in scopes.items():
        if not isinstance(op, (Gather, Scatter)) or roles[op.index.buffer] != "const":
            continue
        a = next(a for a in engine_accesses(p, [(stage, k)], scopes) if a.indirect is not None)
        mask = table_rows.listed_mask(a)
        if mask is None:
            event("not listed")
            continue
        event("listed")
        want = {index for (buffer, index), seen in touched.items() if buffer == a.region.buffer and any(
            x.instance.op == (stage, k) and (x.wrote if a.write else x.read) for x in seen)}
        assert {tuple(int(i) for i in ix) for ix in np.argwhere(mask)} == want
