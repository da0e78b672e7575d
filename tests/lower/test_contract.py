"""A sum of GEMMs becomes one GEMM, and the passes and lowering rules that came with it.

* `contract`: a sequential loop adding one GEMM (or outer product) per step to an accumulator
  is one GEMM over the blocks laid side by side, ragged sums with the blocks a point drops
  zeroed; loops that are not such a sum stay as they are.
* `widen_gemms` (run by `coarsen`): a GEMM batched over a dim only its weights and result
  columns name is one GEMM over side-by-side weights.
* `materialise`: a temporary copied whole into an untouched result is written there.
* lowering: results already in row order are copied, not gathered.
* end to end, on random blocked GEMMs written with the language: compiled == interpreted.

The pass tests follow `test_passes.py`: before and after programs in the text form, both
verified.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fractal as ft
from examples import b2b_gemm
from fractal.lower import Copy, Gather, Loop
from fractal.lower.contract import contract
from fractal.lower.merge_gemms import widen_gemms
from tests.lang.strategies import assert_values_close
from tests.lower.test_passes import assert_rewrites, assert_unchanged, lowered, materialise, program

# --- contract --------------------------------------------------------------------------------

SUM_BUFFERS = """
    buffer x: f64[4,8,2] global input
    buffer w: f64[4,2,4] global input
    buffer acc: f64[5,8,4] global temp
    buffer y: f64[1,8,4] global output
"""
STEP_BUFFERS = """
    buffer t: f64[4,8,4] global temp
    buffer u: f64[4,8,4] global temp
"""
PLACED = "buffer acc_lhs: f64[1,8,8] global temp\nbuffer acc_rhs: f64[1,8,4] global temp"
ZERO = "stage zero() device { acc[0, 0:8, 0:4] = 0.0 }"
GEMM = "gemm(x[r, 0:8, 0:2], w[r, 0:2, 0:4])"
PLACE_X = "for r in 0:4 parallel host { stage place_acc_lhs() device { acc_lhs[0, 0:8, 2*r:2*r + 2] = " \
          "copy(x[r, 0:8, 0:2]) } }"
PLACE_W = "for r in 0:4 parallel host { stage place_acc_rhs() device { acc_rhs[0, 2*r:2*r + 2, 0:4] = " \
          "copy(w[r, 0:2, 0:4]) } }"
ONE_GEMM = "gemm(acc_lhs[0, 0:8, 0:8], acc_rhs[0, 0:8, 0:4])"


def cases(*rows):
    """Parameters named by their first item (why the case is what it is)."""
    return [pytest.param(*row[1:], id=row[0]) for row in rows]


def result(steps: int = 4) -> str:
    return f"stage out() device {{ y[0, 0:8, 0:4] = copy(acc[{steps}, 0:8, 0:4]) }}"


def sum_loop(steps: int = 4, gemm: str = GEMM, before: str = "", hint: str = "") -> str:
    """`acc[r + 1] = acc[r] + gemm` for r in 0:steps (the lowered form of a reduce adding a
    product per element), then acc[steps] read into y."""
    return f"""
        for r in 0:{steps} sequential host{hint} {{
          {before}
          stage mm() device {{ t[r, 0:8, 0:4] = {gemm} }}
          stage add() device {{ u[r, 0:8, 0:4] = add(acc[r, 0:8, 0:4], t[r, 0:8, 0:4]) }}
          stage next() device {{ acc[r + 1, 0:8, 0:4] = copy(u[r, 0:8, 0:4]) }}
        }}
        {result(steps)}
    """


ZERO_TEMP = """
    stage full() device { z[0, 0:8, 0:4] = 0.0 }
    stage init() device { acc[0, 0:8, 0:4] = copy(z[0, 0:8, 0:4]) }
"""


@pytest.mark.parametrize("zero, z", cases(("zero stage", ZERO, ""),
                                          ("zero temporary", ZERO_TEMP, "buffer z: f64[1,8,4] global temp")))
def test_contract_turns_a_zero_started_sum_of_input_blocks_into_one_gemm(zero, z):
    """`acc = 0; for r: acc += x[r] @ w[r]` is `[x_0 | .. | x_3] @ [w_0; ..; w_3]`: the input
    blocks are placed side by side once, at the start (x's in the columns of acc_lhs, w's in
    the rows of acc_rhs); one GEMM writes the last slot.  The zero init (a zero stage, or as
    lowering writes it a zero temporary copied in) and the step temporaries go."""
    assert_rewrites(contract, program(SUM_BUFFERS + STEP_BUFFERS + z, zero + sum_loop()),
                    program(SUM_BUFFERS + PLACED, f"""
        {PLACE_X}
        {PLACE_W}
        stage mm() device {{ acc[4, 0:8, 0:4] = {ONE_GEMM} }}
        {result()}
    """))


def test_contract_reads_the_only_block_directly_in_a_one_step_sum():
    """With one step there is nothing to lay side by side: the GEMM reads block 0."""
    assert_rewrites(contract, program(SUM_BUFFERS + STEP_BUFFERS, ZERO + sum_loop(1)), program(SUM_BUFFERS, f"""
        stage mm() device {{ acc[1, 0:8, 0:4] = gemm(x[0, 0:8, 0:2], w[0, 0:2, 0:4]) }}
        {result(1)}
    """))


def test_contract_adds_the_gemm_to_an_unknown_initial_value():
    """An init that is not a known zero stays; the last slot starts as a copy of the first
    and the GEMM accumulates into it."""
    buffers = SUM_BUFFERS + "buffer h: f64[8,4] global input"
    init = "stage init() device { acc[0, 0:8, 0:4] = copy(h[0:8, 0:4]) }"
    assert_rewrites(contract, program(buffers + STEP_BUFFERS, init + sum_loop()), program(buffers + PLACED, f"""
        {PLACE_X}
        {PLACE_W}
        {init}
        stage mm() device {{
          acc[4, 0:8, 0:4] = copy(acc[0, 0:8, 0:4])
          acc[4, 0:8, 0:4] += {ONE_GEMM}
        }}
        {result()}
    """))


def test_contract_places_a_block_computed_in_the_loop_in_a_parallel_loop_before_the_gemm():
    """A left block computed at each step (`p[r] = exp(x[r])`) is placed right after it, in a
    parallel loop over the steps (they no longer depend on each other); w's blocks, an
    input, are placed at the start."""
    buffers = SUM_BUFFERS + "buffer p: f64[4,8,2] global temp"
    exp = "stage e() device { p[r, 0:8, 0:2] = exp(x[r, 0:8, 0:2]) }"
    assert_rewrites(contract, program(buffers + STEP_BUFFERS, ZERO + sum_loop(
        gemm="gemm(p[r, 0:8, 0:2], w[r, 0:2, 0:4])", before=exp)), program(buffers + PLACED, f"""
        {PLACE_W}
        for r in 0:4 parallel host {{
          {exp}
          stage place_acc_lhs() device {{ acc_lhs[0, 0:8, 2*r:2*r + 2] = copy(p[r, 0:8, 0:2]) }}
        }}
        stage mm() device {{ acc[4, 0:8, 0:4] = {ONE_GEMM} }}
        {result()}
    """))


@pytest.mark.parametrize("points, final", cases(("two points", 2, "5*m + 4"), ("one point", 1, "4")))
def test_contract_places_input_blocks_once_per_map_point_they_name(points, final):
    """Inside a map over m, x's blocks (rows 4*m + r) get a row of acc_lhs per m, w's (shared)
    one row for all: the placing loops run over the variables each block names.  (A map of
    one point, whose last slot lowering names as the constant 4, is the same sum.)"""
    def text(s: str) -> str:
        for key, value in (("P", points), ("X", 4 * points), ("A", 5 * points), ("F", final)):
            s = s.replace(f"<{key}>", str(value))
        return s
    x_w_acc = """
        buffer x: f64[<X>,8,2] global input
        buffer w: f64[4,2,4] global input
        buffer acc: f64[<A>,8,4] global temp
    """
    y = "buffer y: f64[<P>,8,4] global output"
    assert_rewrites(contract, text(program(x_w_acc + y + """
        buffer t: f64[<X>,8,4] global temp
        buffer u: f64[<X>,8,4] global temp
    """, """
        for m in 0:<P> parallel host {
          stage zero() device { acc[5*m, 0:8, 0:4] = 0.0 }
          for r in 0:4 sequential host {
            stage mm() device { t[4*m + r, 0:8, 0:4] = gemm(x[4*m + r, 0:8, 0:2], w[r, 0:2, 0:4]) }
            stage add() device { u[4*m + r, 0:8, 0:4] = add(acc[5*m + r, 0:8, 0:4], t[4*m + r, 0:8, 0:4]) }
            stage next() device { acc[5*m + r + 1, 0:8, 0:4] = copy(u[4*m + r, 0:8, 0:4]) }
          }
          stage out() device { y[m, 0:8, 0:4] = copy(acc[<F>, 0:8, 0:4]) }
        }
    """)), text(program(x_w_acc + y + """
        buffer acc_lhs: f64[<P>,8,8] global temp
        buffer acc_rhs: f64[1,8,4] global temp
    """, f"""
        for m in 0:<P> parallel host {{
          for r in 0:4 parallel host {{
            stage place_acc_lhs() device {{ acc_lhs[m, 0:8, 2*r:2*r + 2] = copy(x[4*m + r, 0:8, 0:2]) }}
          }}
        }}
        {PLACE_W}
        for m in 0:<P> parallel host {{
          stage mm() device {{ acc[5*m + 4, 0:8, 0:4] = gemm(acc_lhs[m, 0:8, 0:8], acc_rhs[0, 0:8, 0:4]) }}
          stage out() device {{ y[m, 0:8, 0:4] = copy(acc[<F>, 0:8, 0:4]) }}
        }}
    """)))


@pytest.mark.parametrize("buffers, body", cases(
    ("a scan: every slot is read after the loop",
     "buffer ys: f64[5,8,4] global output",
     ZERO + sum_loop() + "stage all() device { ys[0:5, 0:8, 0:4] = copy(acc[0:5, 0:8, 0:4]) }"),
    ("the body reads the accumulator (a recurrence, not a sum)",
     "buffer v: f64[4,4] global input",
     ZERO + sum_loop(gemm="gemm(acc[r, 0:8, 0:4], v[0:4, 0:4])")),
    ("a transposed operand",
     "buffer wt: f64[4,4,2] global input",
     ZERO + sum_loop(gemm="gemm(x[r, 0:8, 0:2], wt[r, 0:4, 0:2].T)")),
    ("a body statement writing the same rows at every step",
     "buffer p: f64[1,8,2] global temp",
     ZERO + sum_loop(gemm="gemm(p[0, 0:8, 0:2], w[r, 0:2, 0:4])",
                     before="stage e() device { p[0, 0:8, 0:2] = exp(x[r, 0:8, 0:2]) }")),
    ("a second state carried from step to step (a scan of two states)",
     "buffer cnt: f64[5,8,2] global temp",
     ZERO + sum_loop(gemm="gemm(cnt[r, 0:8, 0:2], w[r, 0:2, 0:4])",
                     before="stage tick() device { cnt[r + 1, 0:8, 0:2] = add(cnt[r, 0:8, 0:2], x[r, 0:8, 0:2]) }")),
))
def test_contract_leaves_a_loop_that_is_not_a_sum_of_independent_gemms(buffers, body):
    """The steps must be independent once the sum is gone, and the sum the loop's only
    result: otherwise the loop stays."""
    assert_unchanged(contract, program(SUM_BUFFERS + STEP_BUFFERS + buffers, body))


# --- ragged sums ----------------------------------------------------------------------------

RAGGED_BUFFERS = """
    buffer x: f64[6,8,2] global input
    buffer w: f64[6,2,4] global input
    buffer acc: f64[8,8,4] global temp
    buffer y: f64[2,8,4] global output
"""
RAGGED_STEP_BUFFERS = """
    buffer t: f64[6,8,4] global temp
    buffer u: f64[6,8,4] global temp
"""


def ragged_sum(w_row: str = "3*m + r") -> str:
    """Point m sums its first 3 - m blocks: the loop runs 3 steps for both points (with the
    lowering's live-prefix hint) and point m's sum is read at its own slot, acc[m + 2*(3 - m)]."""
    return f"""
        for m in 0:2 parallel host {{
          stage zero() device {{ acc[m, 0:8, 0:4] = 0.0 }}
          for r in 0:3 sequential host active m < 2 - floor(r / 2) {{
            stage mm() device {{ t[3*m + r, 0:8, 0:4] = gemm(x[3*m + r, 0:8, 0:2], w[{w_row}, 0:2, 0:4]) }}
            stage add() device {{ u[3*m + r, 0:8, 0:4] = add(acc[m + 2*r, 0:8, 0:4], t[3*m + r, 0:8, 0:4]) }}
            stage next() device {{ acc[m + 2*r + 2, 0:8, 0:4] = copy(u[3*m + r, 0:8, 0:4]) }}
          }}
          stage out() device {{ y[m, 0:8, 0:4] = copy(acc[6 - m, 0:8, 0:4]) }}
        }}
    """


def test_contract_zeroes_the_blocks_a_ragged_point_does_not_sum():
    """Each point's blocks are placed through a constant mask, `live[m, r] = r < 3 - m`, so
    the steps past a point's length add zeros; the GEMM writes the slot each point is read at."""
    assert_rewrites(contract, program(RAGGED_BUFFERS + RAGGED_STEP_BUFFERS, ragged_sum()),
                          program(RAGGED_BUFFERS + """
        buffer acc_lhs: f64[2,8,6] global temp
        buffer acc_lhs_live: bool[2,3] global const = [[true, true, true], [true, true, false]]
        buffer acc_rhs: f64[2,6,4] global temp
        buffer acc_rhs_live: bool[2,3] global const = [[true, true, true], [true, true, false]]""", """
        for m in 0:2 parallel host { for r in 0:3 parallel host { stage place_acc_lhs() device {
          acc_lhs[m, 0:8, 2*r:2*r + 2] = where(acc_lhs_live[m, r], x[3*m + r, 0:8, 0:2], 0.0) } } }
        for m in 0:2 parallel host { for r in 0:3 parallel host { stage place_acc_rhs() device {
          acc_rhs[m, 2*r:2*r + 2, 0:4] = where(acc_rhs_live[m, r], w[3*m + r, 0:2, 0:4], 0.0) } } }
        for m in 0:2 parallel host {
          stage mm() device { acc[-m + 6, 0:8, 0:4] = gemm(acc_lhs[m, 0:8, 0:6], acc_rhs[m, 0:6, 0:4]) }
          stage out() device { y[m, 0:8, 0:4] = copy(acc[-m + 6, 0:8, 0:4]) }
        }
    """))


def test_contract_leaves_a_ragged_sum_whose_points_share_a_block_they_sum_differently():
    """Both points multiply the same w[r]: point 1 drops step 2 but point 0 keeps it, so the
    block cannot be zeroed for point 1 alone (0 * a padded inf would not be 0 either)."""
    assert_unchanged(contract, program(RAGGED_BUFFERS + RAGGED_STEP_BUFFERS, ragged_sum(w_row="r")))


def test_contract_redirects_a_gather_of_each_points_slot_to_the_gemms_slot():
    """Read through a gather table (lengths 3 and 1 follow no affine rule; point 2 is padding
    and reads one past the end, zeros, as the lowering pads), of a sum of outer products
    `x[:, 0:1] * w[0:1, :]` (a GEMM with K = 1): the GEMM writes the last slot, a new table
    points each read there, the padding entry stays, and padding keeps no block."""
    buffers = """
        buffer x: f64[9,8,2] global input
        buffer w: f64[9,2,4] global input
        buffer acc: f64[12,8,4] global temp
        buffer tab: i64[3] global const = [9, 4, 12]  # point 0 reads slot 3, point 1 slot 1
        buffer y: f64[3,8,4] global output
    """
    fin = "stage fin() device { y[m:m + 1, 0:8, 0:4] = gather(acc[0:12, 0:8, 0:4], TAB[m:m + 1], axis=0) }"
    before = program(buffers + "buffer t: f64[9,8,4] global temp\nbuffer u: f64[9,8,4] global temp", f"""
        for m in 0:3 parallel host {{
          stage zero() device {{ acc[m, 0:8, 0:4] = 0.0 }}
          for r in 0:3 sequential host {{
            stage mm() device {{ t[3*m + r, 0:8, 0:4] = mul(x[3*m + r, 0:8, 0:1], w[3*m + r, 0:1, 0:4]) }}
            stage add() device {{ u[3*m + r, 0:8, 0:4] = add(acc[m + 3*r, 0:8, 0:4], t[3*m + r, 0:8, 0:4]) }}
            stage next() device {{ acc[m + 3*r + 3, 0:8, 0:4] = copy(u[3*m + r, 0:8, 0:4]) }}
          }}
          {fin.replace("TAB", "tab")}
        }}""")
    after = program(buffers + """
        buffer acc_lhs: f64[3,8,3] global temp
        buffer acc_lhs_live: bool[3,3] global const = [[true, true, true], [true, false, false], [false, false, false]]
        buffer acc_rhs: f64[3,3,4] global temp
        buffer acc_rhs_live: bool[3,3] global const = [[true, true, true], [true, false, false], [false, false, false]]
        buffer tab_last: i64[3] global const = [9, 10, 12]""", f"""
        for m in 0:3 parallel host {{ for r in 0:3 parallel host {{ stage place_acc_lhs() device {{
          acc_lhs[m, 0:8, r:r + 1] = where(acc_lhs_live[m, r], x[3*m + r, 0:8, 0:1], 0.0) }} }} }}
        for m in 0:3 parallel host {{ for r in 0:3 parallel host {{ stage place_acc_rhs() device {{
          acc_rhs[m, r:r + 1, 0:4] = where(acc_rhs_live[m, r], w[3*m + r, 0:1, 0:4], 0.0) }} }} }}
        for m in 0:3 parallel host {{
          stage mm() device {{ acc[m + 9, 0:8, 0:4] = gemm(acc_lhs[m, 0:8, 0:3], acc_rhs[m, 0:3, 0:4]) }}
          {fin.replace("TAB", "tab_last")}
        }}""")
    assert_rewrites(contract, before, after)


# --- widen_gemms -----------------------------------------------------------------------------

WIDEN_BUFFERS = """
    buffer a: f64[8,2,8] global input
    buffer b: f64[4,8,2] global input
    buffer c: f64[8,2,16] global output
    buffer z: f64[8,2,8] global output
"""
BATCHED = "stage k(m in 0:8, d in 0:4) device { c[m, 0:2, 2*d:2*d + 2] = gemm(a[m, 0:2, 0:8], b[d, 0:8, 0:2]) }"


widen = lambda p, ctx=None: widen_gemms(p)  # noqa: E731  (the pass interface)


def test_widen_gemms_makes_a_gemm_batched_over_weight_blocks_one_gemm():
    """`c[m, :, 2*d:2*d + 2] = a[m] @ b[d]` for every d is `a[m] @ [b_0 | .. | b_3]`: the
    blocks are placed side by side by a stage just before, and the stage loses d."""
    assert_rewrites(widen, program(WIDEN_BUFFERS, BATCHED), program(WIDEN_BUFFERS + """
        buffer w_b: f64[8,8] global temp
    """, """
        stage w_b(d in 0:4) device { w_b[0:8, 2*d:2*d + 2] = copy(b[d, 0:8, 0:2]) }
        stage k(m in 0:8) device { c[m, 0:2, 0:8] = gemm(a[m, 0:2, 0:8], w_b[0:8, 0:8]) }
    """))


@pytest.mark.parametrize("change", cases(
    ("the left operand names d", ("a[m, 0:2, 0:8]", "a[d, 0:2, 0:8]")),
    ("the result's column blocks are not side by side", ("2*d:2*d + 2", "4*d:4*d + 2")),
    ("d has one point", ("d in 0:4", "d in 0:1")),
    ("another dim's bounds read d (a polygon)", ("m in 0:8, d in 0:4", "d in 0:4, m in d:8")),
    ("the stage does more than the gemm",
     ("0:2]) }", "0:2]) z[m, 0:2, 2*d:2*d + 2] = exp(a[m, 0:2, 2*d:2*d + 2]) }")),
))
def test_widen_gemms_leaves_other_batched_gemms(change):
    assert_unchanged(widen, program(WIDEN_BUFFERS, BATCHED.replace(*change)))


# --- materialise: a temporary copied whole into a result -------------------------------------

FORWARD_BUFFERS = """
    buffer x: f64[4,3] global input
    buffer t: f64[4,3] global temp
    buffer y: f64[6,3] global output
    buffer z: f64[4,3] global output
"""
PRODUCE = """
    stage e(m in 0:4) device { t[m, 0:3] = exp(x[m, 0:3]) }
    stage n(m in 0:4) device { z[m, 0:3] = neg(t[m, 0:3]) }
"""


def test_materialise_writes_a_temporary_copied_whole_into_a_result_there():
    """`y[2:6] = copy(t[0:4])` at the top level, nothing else touching y: t's writer writes
    y's rows (shifted by 2), t's other readers read them, the copy and t go."""
    assert_rewrites(materialise, program(FORWARD_BUFFERS, PRODUCE + """
        stage r() device { y[2:6, 0:3] = copy(t[0:4, 0:3]) }
    """), program(FORWARD_BUFFERS.replace("buffer t: f64[4,3] global temp", ""), """
        stage e(m in 0:4) device { y[m + 2, 0:3] = exp(x[m, 0:3]) }
        stage n(m in 0:4) device { z[m, 0:3] = neg(y[m + 2, 0:3]) }
    """))


@pytest.mark.parametrize("copy", cases(
    ("another op reads the result",
     "stage r() device { y[2:6, 0:3] = copy(t[0:4, 0:3]) } stage s() device { z[0:4, 0:3] = exp(y[2:6, 0:3]) }"),
    ("the copy runs in a loop",
     "for s in 0:1 sequential host { stage r() device { y[2:6, 0:3] = copy(t[0:4, 0:3]) } }"),
    ("the copy takes part of the temporary", "stage r() device { y[0:2, 0:3] = copy(t[0:2, 0:3]) }"),
))
def test_materialise_keeps_a_temporary_not_simply_copied_into_a_result(copy):
    assert_unchanged(materialise, program(FORWARD_BUFFERS, PRODUCE + copy))


# --- lowering: results in row order ----------------------------------------------------------

def rows(n):
    return ft.fractal([np.full((1, 3), float(i)) for i in range(n)])


def tanh_rows(xs):
    return ft.map(lambda x: ft.tanh(x), xs)


def sums(batch):
    return ft.map(lambda seq: ft.reduce(lambda h, x: h + x, seq, ft.zeros((1, 3), np.float64)), batch)


def gathered_into_the_result(compiled) -> bool:
    roles = {b.name: b.role for b in compiled.tile_ir.buffers}
    return any(isinstance(op, Gather) and roles[op.dst.buffer] == "output"
               for st in compiled.tile_ir.stages() for op in st.body)


def test_a_maps_results_in_row_order_are_copied_not_gathered():
    """A map's results sit in its rows in order: lowering assembles the result list with a
    copy of them (no index table), which the pipeline then folds into the map itself."""
    fn = ft.function(tanh_rows)
    ops = [op for st in lowered(fn, rows(4)).program.stages() for op in st.body]
    assert not any(isinstance(op, Gather) for op in ops) and isinstance(ops[-2], Copy)
    assert str(fn.compile(rows(4), target="cpu-generic").tile_ir).count("stage ") == 1


@pytest.mark.parametrize("fn, lengths, gathered", cases(
    ("reversed", lambda xs: ft.reverse(tanh_rows(xs)), None, True),
    ("ragged, run longest first", sums, (2, 4, 3), True),
    ("ragged, given longest first", sums, (4, 3, 2), False),
))
def test_results_are_gathered_exactly_when_out_of_row_order(fn, lengths, gathered):
    """A reverse, or a ragged batch run longest first when not given so, leaves the results
    out of row order: they are gathered through an index table.  A batch given longest
    first is in order: copied.  The values are right either way."""
    fn = ft.function(fn)
    args = (rows(4),) if lengths is None else (ft.fractal([rows(n) for n in lengths]),)
    compiled = fn.compile(*args, target="cpu-generic")
    assert gathered_into_the_result(compiled) == gathered
    assert_values_close(compiled.run(*args), fn.interpret(*args))


# --- end to end: random blocked GEMMs --------------------------------------------------------

def sequential_loops(tile_ir) -> list:
    def walk(stmts):
        for s in stmts:
            if isinstance(s, Loop):
                yield from ([s] if s.kind == "sequential" else []) + list(walk(s.body))
    return list(walk(tile_ir.body))


def blocked(combine, zero_init: bool, shared_b: bool, tm: int, tn: int):
    """`map over rows of a: combine(acc + a_k @ b_k over zip(row, b), init)`, b one list for
    every row or one per row (zipped with a), init zeros or the argument h."""
    def row(a_row, b_row, h):
        init = ft.zeros((tm, tn), np.float64) if zero_init else h
        return combine(lambda acc, ab: acc + ab[0] @ ab[1], ft.zip(a_row, b_row), init)

    if shared_b:
        return ft.function(lambda a, b, h: ft.map(lambda a_row: row(a_row, b, h), a))
    return ft.function(lambda a, b, h: ft.map(lambda ab: row(ab[0], ab[1], h), ft.zip(a, b)))


@st.composite
def blocked_gemms(draw):
    n_rows = draw(st.integers(1, 3))
    ragged = draw(st.booleans())
    counts = draw(st.lists(st.integers(1, 4), min_size=n_rows, max_size=n_rows)) if ragged else \
        [draw(st.integers(1, 4))] * n_rows
    tm, tk, tn = (draw(st.integers(1, 4)) for _ in range(3))
    shared_b = not ragged and draw(st.booleans())
    return dict(counts=counts, tm=tm, tk=tk, tn=tn, shared_b=shared_b, zero_init=draw(st.booleans()),
                seed=draw(st.integers(0, 2 ** 16)))


def blocked_args(d):
    rng = np.random.default_rng(d["seed"])
    block = lambda *shape: rng.standard_normal(shape)  # noqa: E731
    a = ft.fractal([ft.fractal([block(d["tm"], d["tk"]) for _ in range(n)]) for n in d["counts"]])
    if d["shared_b"]:
        b = ft.fractal([block(d["tk"], d["tn"]) for _ in range(d["counts"][0])])
    else:
        b = ft.fractal([ft.fractal([block(d["tk"], d["tn"]) for _ in range(n)]) for n in d["counts"]])
    return a, b, block(d["tm"], d["tn"])


SETTINGS = settings(max_examples=25, deadline=None)


@SETTINGS
@given(blocked_gemms())
def test_a_blocked_gemm_reduce_compiles_to_what_the_interpreter_computes(d):
    """Any block counts (ragged too) and sizes, zero or given init: compiled == interpreted,
    and no sequential loop is left (the sum is one GEMM; a ragged row's dropped blocks zeros)."""
    fn = blocked(ft.reduce, d["zero_init"], d["shared_b"], d["tm"], d["tn"])
    args = blocked_args(d)
    compiled = fn.compile(*args, target="cpu-generic")
    assert_values_close(compiled.run(*args), fn.interpret(*args))
    assert sequential_loops(compiled.tile_ir) == []


@SETTINGS
@given(blocked_gemms())
def test_a_blocked_gemm_scan_stays_a_loop_and_compiles_to_what_the_interpreter_computes(d):
    """A scan's partial sums are its results: the loop stays (with two steps or more), and is
    right."""
    fn = blocked(ft.scan, d["zero_init"], d["shared_b"], d["tm"], d["tn"])
    args = blocked_args(d)
    compiled = fn.compile(*args, target="cpu-generic")
    assert_values_close(compiled.run(*args), fn.interpret(*args))
    if max(d["counts"]) >= 2:
        assert sequential_loops(compiled.tile_ir) != []


@SETTINGS
@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), st.integers(1, 3),
       st.sampled_from([1, 2, 4]), st.sampled_from([1, 2, 3]), st.sampled_from([1, 2, 4]), st.integers(0, 2 ** 16))
def test_back_to_back_gemm_compiles_to_two_gemms_equal_to_the_interpreter(mb, nb, kb, p, tm, tn, tk, seed):
    """`examples/b2b_gemm.py` at any block counts and sizes: both reduces contract (no
    sequential loop is left) and the result is the interpreter's."""
    config = dict(M=mb * tm, N=nb * tn, K=kb * tk, P=p, TM=tm, TN=tn, TK=tk)
    args = b2b_gemm.inputs(config, dtype=np.float64, seed=seed)
    compiled = b2b_gemm.model.compile(*args, target="cpu-generic")
    assert_values_close(compiled.run(*args), b2b_gemm.model.interpret(*args))
    assert sequential_loops(compiled.tile_ir) == []
