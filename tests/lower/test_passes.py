"""The lowering passes, one rule at a time (`fractal.lower.pipeline.PASSES`).

Each test is a specification: a small tile program in the text form goes through one pass
and must come out as the expected program text (both verify, before and after); its
docstring states the rule.  Whitespace is free in the text form, so one-op stages are
written on one line.  The last tests run the whole pipeline on tiny `ft.function`s.
"""

from __future__ import annotations

import dataclasses
import os
import textwrap

import numpy as np
import pytest

import fractal as ft
from fractal.lower import Loop, parse_tile_program
from fractal.lower.bucket import bucket
from fractal.backends.cpu.policy import CpuPolicy
from fractal.lower.hardware import KiB, MiB, Hardware, MemoryLevel
from fractal.lower.hoist import hoist
from fractal.lower.lower_program import lower_program
from fractal.lower.pipeline import PASSES, PassContext, run_pipeline
from fractal.lower.schedule import schedule
from fractal.lower.target import Target
from fractal.lower.tiling import tile
from fractal.lower.wavefront import wavefront

# A made-up cpu, so tiling decisions do not depend on this machine: a 4 KiB L2 (tiles get
# half of it, 2 KiB) and tiles aligned to 8 elements.
def cpu_target(hw: Hardware) -> Target:
    """A CPU target (the CPU backend's cost policy) for a made-up hardware record."""
    return Target(hw.name, "cpu", hw, CpuPolicy())


TINY_CPU = cpu_target(Hardware("tiny_cpu", "cpu", cores=1, simd_width_bytes=16,
                               levels=(MemoryLevel("L1", 1 * KiB, 100.0), MemoryLevel("L2", 4 * KiB, 50.0),
                                       MemoryLevel("DRAM", 1 * MiB, 10.0)),
                               peak_gflops=(("float32", 1.0),), tile_align=8, tile_level="L2"))


def passes(*names):
    """The pipeline's passes `names`, run one after the other as one pass."""
    table = dict(PASSES)

    def run(program, ctx):
        for name in names:
            program = table[name](program, ctx)
        return program
    return run


coarsen = passes("batch", "merge", "fuse", "merge_gemms", "widen_gemms")  # passes 5-9
materialise = passes("forward_results", "contract_storage", "roll_storage")  # passes 11-13


def program(buffers: str, body: str) -> str:
    """The text of `tile @t { buffers body }`."""
    inner = textwrap.dedent(buffers).strip() + "\n" + textwrap.dedent(body).strip()
    return "tile @t {\n" + textwrap.indent(inner, "  ") + "\n}"


def run_pass(pass_fn, before: str, target=TINY_CPU):
    """(the verified result of `pass_fn` on the verified program `before`, the pass context)."""
    ctx = PassContext(target)
    return pass_fn(parse_tile_program(before).verify(), ctx).verify(), ctx


def assert_rewrites(pass_fn, before: str, after: str) -> PassContext:
    got, ctx = run_pass(pass_fn, before)
    want = parse_tile_program(after).verify()
    assert str(got) == str(want)  # the readable diff
    assert got == want
    return ctx


def assert_unchanged(pass_fn, before: str) -> PassContext:
    return assert_rewrites(pass_fn, before, before)


# --- schedule --------------------------------------------------------------------------------

SCHEDULE_BUFFERS = """
    buffer x: f32[3,4] global input
    buffer t: f32[3,4] global temp
    buffer y: f32[3,4] global output
    buffer h: f32[18,4] global output
    buffer g: f32[2,3,6,4] global output
"""
STEP = "stage cell() device { h[6*m + s + 1, 0:4] = tanh(h[6*m + s, 0:4]) }"


def test_schedule_sinks_a_parallel_loop_below_a_sequential_loop():
    """Map points are independent: `for m parallel { for s sequential { S } }` becomes
    `for s sequential { for m parallel { S } }`, every step batched over all m."""
    assert_rewrites(schedule, program(SCHEDULE_BUFFERS, f"""
        for m in 0:3 parallel host {{
          for s in 0:5 sequential host {{ {STEP} }}
        }}
    """), program(SCHEDULE_BUFFERS, f"""
        for s in 0:5 sequential host {{
          for m in 0:3 parallel host {{ {STEP} }}
        }}
    """))


def test_schedule_distributes_a_parallel_loop_over_its_statements():
    """A parallel loop around two stages becomes one parallel loop around each, in order."""
    assert_rewrites(schedule, program(SCHEDULE_BUFFERS, """
        for m in 0:3 parallel host {
          stage a() device { t[m, 0:4] = exp(x[m, 0:4]) }
          stage b() device { y[m, 0:4] = neg(t[m, 0:4]) }
        }
    """), program(SCHEDULE_BUFFERS, """
        for m in 0:3 parallel host {
          stage a() device { t[m, 0:4] = exp(x[m, 0:4]) }
        }
        for m in 0:3 parallel host {
          stage b() device { y[m, 0:4] = neg(t[m, 0:4]) }
        }
    """))


def test_schedule_keeps_a_sequential_loop_whose_bounds_read_the_parallel_variable():
    """A sequential loop whose trip count depends on the map point (a ragged scan) cannot
    move outside the parallel loop: the nest stays as it is."""
    assert_unchanged(schedule, program(SCHEDULE_BUFFERS, f"""
        for m in 0:3 parallel host {{
          for s in 0:m + 2 sequential host {{ {STEP} }}
        }}
    """))


def test_schedule_keeps_nested_parallel_loops_nested_around_the_stage():
    """Parallel loops directly around a stage stay as they are; sunk below a sequential loop,
    they keep their order (outer map outermost)."""
    assert_unchanged(schedule, program(SCHEDULE_BUFFERS, """
        for a in 0:2 parallel host {
          for m in 0:3 parallel host {
            stage cell() device { g[a, m, 0, 0:4] = exp(x[m, 0:4]) }
          }
        }
    """))
    cell = "stage cell() device { g[a, m, s + 1, 0:4] = tanh(g[a, m, s, 0:4]) }"
    assert_rewrites(schedule, program(SCHEDULE_BUFFERS, f"""
        for a in 0:2 parallel host {{
          for m in 0:3 parallel host {{
            for s in 0:5 sequential host {{ {cell} }}
          }}
        }}
    """), program(SCHEDULE_BUFFERS, f"""
        for s in 0:5 sequential host {{
          for a in 0:2 parallel host {{
            for m in 0:3 parallel host {{ {cell} }}
          }}
        }}
    """))


def test_schedule_keeps_the_live_point_hint_of_a_loop_inside_a_map_of_one_point():
    """A map of one point (a dilation-1 layer's single sub-sequence) is unrolled at its index;
    the hint of a loop inside it naming that map's variable keeps holding, the variable's
    share moved into the bound (`m + j < e` at `j = 1` is `m < e - 1`)."""
    cell = "stage cell() device { g[j, m, s + 1, 0:4] = tanh(g[j, m, s, 0:4]) }"
    assert_rewrites(schedule, program(SCHEDULE_BUFFERS, f"""
        for j in 1:2 parallel host {{
          for m in 0:3 parallel host {{
            for s in 0:5 sequential host active m + j < 4 - s {{ {cell} }}
          }}
        }}
    """), program(SCHEDULE_BUFFERS, f"""
        for s in 0:5 sequential host active m < 3 - s {{
          for m in 0:3 parallel host {{ {cell.replace("g[j, m", "g[1, m")} }}
        }}
    """))


# --- hoist -----------------------------------------------------------------------------------

HOIST_BUFFERS = """
    buffer x: f32[5,2,4] global input
    buffer w: f32[4,4] global input
    buffer bias: f32[1,4] global input
    buffer xw: f32[5,2,4] global temp
    buffer xwb: f32[5,2,4] global temp
    buffer total: f32[2,4] global output
    buffer h: f32[6,2,4] global output
"""
PROJ = "stage proj() device { xw[s, 0:2, 0:4] = gemm(x[s, 0:2, 0:4], w[0:4, 0:4]) }"
ADD_BIAS = "stage addb() device { xwb[s, 0:2, 0:4] = add(xw[s, 0:2, 0:4], bias[0:1, 0:4]) }"


def cell(xs: str) -> str:
    """The recurrence h[s + 1] = tanh(xs[s] + h[s])."""
    return f"stage cell() device {{ h[s + 1, 0:2, 0:4] = tanh(add({xs}[s, 0:2, 0:4], h[s, 0:2, 0:4])) }}"


def test_hoist_moves_a_stage_reading_nothing_the_loop_writes_before_it():
    """An input projection `x[s] @ w` inside a recurrence does not depend on it: it moves
    before the loop as a parallel loop over the loop variable (one GEMM for all steps)."""
    assert_rewrites(hoist, program(HOIST_BUFFERS, f"""
        for s in 0:5 sequential host {{
          {PROJ}
          {cell("xw")}
        }}
    """), program(HOIST_BUFFERS, f"""
        for s in 0:5 parallel host {{ {PROJ} }}
        for s in 0:5 sequential host {{ {cell("xw")} }}
    """))


def test_hoist_cuts_a_batched_statement_to_the_live_points_of_a_ragged_loop():
    """The live-point hint of a sorted ragged batch (`active m < n(s)`) holds of the steps a
    statement batched across the loop computes, too: the hoisted map loop runs `0:n(s)` (a
    packed input projection), the loop keeps its hint for the bucket pass.  (Here on a policy
    that always finds it worth it: when it is is tests/lower/test_hoist_policy.py's.)"""
    live = "2*min(1, max(0, 3 - s)) + min(1, max(0, 2 - s)) + 1"
    proj = "stage proj() device { xw[s, m:m + 1, 0:4] = gemm(x[s, m:m + 1, 0:4], w[0:4, 0:4]) }"
    step = "stage cell() device { h[s + 1, m:m + 1, 0:4] = tanh(add(xw[s, m:m + 1, 0:4], h[s, m:m + 1, 0:4])) }"
    class Cuts(CpuPolicy):
        def cut_to_live(self, facts, hw) -> bool:
            return True
    native = dataclasses.replace(TINY_CPU, policy=Cuts())
    got, _ = run_pass(hoist, program(HOIST_BUFFERS, f"""
        for s in 0:5 sequential host active m < {live} {{
          for m in 0:2 parallel host {{ {proj} }}
          for m in 0:2 parallel host {{ {step} }}
        }}
    """), native)
    assert str(got) == str(parse_tile_program(program(HOIST_BUFFERS, f"""
        for s in 0:5 parallel host {{
          for m in 0:min(2, {live}) parallel host {{ {proj} }}
        }}
        for s in 0:5 sequential host active m < {live} {{
          for m in 0:2 parallel host {{ {step} }}
        }}
    """)))


def test_hoist_keeps_a_stage_that_reads_what_the_loop_writes():
    """The recurrence itself (reading the state the loop writes) stays in the loop."""
    assert_unchanged(hoist, program(HOIST_BUFFERS, f"for s in 0:5 sequential host {{ {cell('x')} }}"))


def test_hoist_takes_the_readers_of_a_hoisted_result_along():
    """Once the projection is out, the bias add that reads only its result reads nothing the
    loop writes either: it follows, in order, each as its own parallel loop."""
    assert_rewrites(hoist, program(HOIST_BUFFERS, f"""
        for s in 0:5 sequential host {{
          {PROJ}
          {ADD_BIAS}
          {cell("xwb")}
        }}
    """), program(HOIST_BUFFERS, f"""
        for s in 0:5 parallel host {{ {PROJ} }}
        for s in 0:5 parallel host {{ {ADD_BIAS} }}
        for s in 0:5 sequential host {{ {cell("xwb")} }}
    """))


def test_hoist_keeps_a_stage_whose_writes_do_not_name_the_loop_variable():
    """A stage that writes the same place at every step (the last step's value wins) is not
    a parallel set over the steps: it stays, although it reads only inputs."""
    assert_unchanged(hoist, program(HOIST_BUFFERS, """
        for s in 0:5 sequential host {
          stage last() device { total[0:2, 0:4] = exp(x[s, 0:2, 0:4]) }
        }
    """))


def test_hoist_keeps_a_stage_writing_what_an_earlier_statement_reads():
    """Moving the projection before the loop would change what the cell, which reads its
    buffer earlier in each step, sees: program order wins and it stays."""
    assert_unchanged(hoist, program(HOIST_BUFFERS, f"""
        for s in 0:5 sequential host {{
          {cell("xw")}
          {PROJ}
        }}
    """))


INVARIANT = "stage scale() device { xw[0, 0:2, 0:4] = mul(x[0, 0:2, 0:4], 0.5) }"


def test_hoist_moves_a_statement_that_is_the_same_every_step_before_the_loop_once():
    """A stage whose regions and bounds ignore the loop variable and that reads nothing the
    loop writes (attention's gather of the queries inside the loop over key blocks) runs
    once, before the loop, as it is."""
    assert_rewrites(hoist, program(HOIST_BUFFERS, f"""
        for s in 0:5 sequential host {{
          {INVARIANT}
          stage cell() device {{ h[s + 1, 0:2, 0:4] = tanh(add(xw[0, 0:2, 0:4], h[s, 0:2, 0:4])) }}
        }}
    """), program(HOIST_BUFFERS, f"""
        {INVARIANT}
        for s in 0:5 sequential host {{
          stage cell() device {{ h[s + 1, 0:2, 0:4] = tanh(add(xw[0, 0:2, 0:4], h[s, 0:2, 0:4])) }}
        }}
    """))


@pytest.mark.parametrize("loop, other", [
    ("for s in 0:0 sequential host", ""),  # never runs: moving it out would run it
    ("for s in 0:5 sequential host", "stage other() device { xw[0, 0:1, 0:4] = exp(x[s, 0:1, 0:4]) }"),
])
def test_hoist_keeps_an_invariant_statement_of_an_empty_loop_or_a_shared_buffer(loop, other):
    """Not moved: a loop that may not run, or another statement of the loop writing some of
    the same elements (their order would change)."""
    assert_unchanged(hoist, program(HOIST_BUFFERS, f"{loop} {{ {INVARIANT} {other} }}"))


# --- wavefront -------------------------------------------------------------------------------

# A stacked RNN as fractal lowers it (cf. examples/stacked_lstm.py): layer l of 2, step t of 4,
# batch point m of 2.  `h` holds one write-once row per (layer, point, slot), row
# 10*layer + 5*m + slot, layer 0 the input: cell (l, t) reads the layer below at step t
# (row 10*l + 5*m + t + 1) and its own previous state (10*(l + 1) + 5*m + t), and writes its
# output (10*(l + 1) + 5*m + t + 1).
WAVEFRONT_BUFFERS = "buffer h: f32[30,1,4] global output"


def rnn_cell(below: str, own: str, out: str) -> str:
    """A stacked-RNN cell reading rows `below` and `own` of h and writing row `out`."""
    return f"""for m in 0:2 parallel host {{
        stage cell() device {{ h[{out}, 0:1, 0:4] = tanh(add(h[{below}, 0:1, 0:4], h[{own}, 0:1, 0:4])) }}
    }}"""


def test_wavefront_skews_a_stacked_rnn_onto_its_diagonals():
    """Cell (l, t) needs (l - 1, t) and (l, t - 1): every dependence distance has dl + dt >= 1,
    so the nest becomes one sequential loop over the L + T - 1 = 5 diagonals `l_t = l + t`,
    with a parallel loop over the layers active on each (max/min bounds) and t = l_t - l."""
    ctx = assert_rewrites(wavefront, program(WAVEFRONT_BUFFERS, f"""
        for l in 0:2 sequential host {{
          for t in 0:4 sequential host {{
            {rnn_cell("10*l + 5*m + t + 1", "10*l + 5*m + t + 10", "10*l + 5*m + t + 11")}
          }}
        }}
    """), program(WAVEFRONT_BUFFERS, f"""
        for l_t in 0:5 sequential host {{
          for l in max(0, l_t - 3):min(2, l_t + 1) parallel host {{
            {rnn_cell("9*l + l_t + 5*m + 1", "9*l + l_t + 5*m + 10", "9*l + l_t + 5*m + 11")}
          }}
        }}
    """))
    assert len(ctx.notes) == 1 and ctx.notes[0].startswith("wavefront: l x t -> l_t (5 steps; wavefront of: ")


def test_wavefront_skews_a_nest_with_a_backward_diagonal_dependence_onto_a_steeper_hyperplane():
    """Cell (l, t) reading the layer below at step t + 1 depends on (l - 1, t + 1): distance
    (1, -1) lies on the anti-diagonal, but the hyperplane 2*l + t moves every distance
    forward ((1, -1) by 1, (0, 1) by 1, (1, 0) by 2): 2*(2 - 1) + 4 = 6 steps."""
    ctx = assert_rewrites(wavefront, program(WAVEFRONT_BUFFERS, f"""
        for l in 0:2 sequential host {{
          for t in 0:4 sequential host {{
            {rnn_cell("10*l + 5*m + t + 2", "10*l + 5*m + t + 10", "10*l + 5*m + t + 11")}
          }}
        }}
    """), program(WAVEFRONT_BUFFERS, f"""
        for l_t in 0:6 sequential host {{
          for l in max(0, floor(l_t / 2) - 1):min(2, floor(l_t / 2) + 1) parallel host {{
            {rnn_cell("8*l + l_t + 5*m + 2", "8*l + l_t + 5*m + 10", "8*l + l_t + 5*m + 11")}
          }}
        }}
    """))
    assert len(ctx.notes) == 1 and ctx.notes[0].startswith("wavefront: l x t -> l_t (6 steps; wavefront of: ")


def test_wavefront_leaves_a_nest_whose_dependences_no_small_hyperplane_moves_forward():
    """Cell (l, t) reads the layer below three steps ahead (slot t + 4 of 10-slot rows `g`):
    distance (1, -3).  A hyperplane moving it and (0, 1) forward needs a layer coefficient of 4,
    above `MAX_COEFFICIENT`, so the nest stays."""
    assert_unchanged(wavefront, program("buffer g: f32[60,1,4] global output", """
        for l in 0:2 sequential host {
          for t in 0:4 sequential host {
            for m in 0:2 parallel host {
              stage cell() device {
                g[20*l + 10*m + t + 21, 0:1, 0:4] = tanh(add(g[20*l + 10*m + t + 4, 0:1, 0:4], g[20*l + 10*m + t + 20, 0:1, 0:4]))
              }
            }
          }
        }
    """))


def test_wavefront_leaves_a_nest_whose_outer_body_has_two_statements():
    """Only a perfect nest of the two sequential loops is skewed: a per-layer statement next
    to the step loop (here the initial state) keeps the nest as it is."""
    assert_unchanged(wavefront, program(WAVEFRONT_BUFFERS, f"""
        for l in 0:2 sequential host {{
          for m in 0:2 parallel host {{
            stage init() device {{ h[10*l + 5*m + 10, 0:1, 0:4] = 0.0 }}
          }}
          for t in 0:4 sequential host {{
            {rnn_cell("10*l + 5*m + t + 1", "10*l + 5*m + t + 10", "10*l + 5*m + t + 11")}
          }}
        }}
    """))


# --- coarsen ---------------------------------------------------------------------------------

COARSEN_BUFFERS = """
    buffer x: f32[3,4] global input
    buffer y: f32[3,4] global output
    buffer z: f32[3,4] global output
    buffer g: f32[2,3,4] global output
"""
WITH_T = COARSEN_BUFFERS + "buffer t: f32[4,4] global temp"  # t is dropped once unused


def test_coarsen_turns_the_parallel_loops_around_a_stage_into_its_dims():
    """`for a parallel { for m parallel { stage } }` is one stage over the box (a, m)."""
    assert_rewrites(coarsen, program(COARSEN_BUFFERS, """
        for a in 0:2 parallel host {
          for m in 0:3 parallel host {
            stage e() device { g[a, m, 0:4] = exp(x[m, 0:4]) }
          }
        }
    """), program(COARSEN_BUFFERS, """
        stage e(a in 0:2, m in 0:3) device { g[a, m, 0:4] = exp(x[m, 0:4]) }
    """))


def test_coarsen_merges_consecutive_stages_that_meet_point_locally():
    """Two stages over the same dims, the second reading at each point only what the first
    wrote at that point, become one stage (named after the first) running both ops."""
    assert_rewrites(coarsen, program(COARSEN_BUFFERS, """
        for m in 0:3 parallel host { stage a() device { y[m, 0:4] = exp(x[m, 0:4]) } }
        for m in 0:3 parallel host { stage b() device { z[m, 0:4] = mul(y[m, 0:4], x[m, 0:4]) } }
    """), program(COARSEN_BUFFERS, """
        stage a(m in 0:3) device {
          y[m, 0:4] = exp(x[m, 0:4])
          z[m, 0:4] = mul(y[m, 0:4], x[m, 0:4])
        }
    """))


def test_coarsen_keeps_apart_stages_that_exchange_rows_between_points():
    """When point m of the second stage reads row m + 1 of what the first wrote (another
    point's result), all of the first must finish first: the stages stay separate."""
    assert_rewrites(coarsen, program(WITH_T, """
        for m in 0:3 parallel host { stage a() device { t[m, 0:4] = exp(x[m, 0:4]) } }
        for m in 0:3 parallel host { stage b() device { y[m, 0:4] = mul(t[m + 1, 0:4], x[m, 0:4]) } }
    """), program(WITH_T, """
        stage a(m in 0:3) device { t[m, 0:4] = exp(x[m, 0:4]) }
        stage b(m in 0:3) device { y[m, 0:4] = mul(t[m + 1, 0:4], x[m, 0:4]) }
    """))


def test_coarsen_merges_stages_whose_rows_no_two_points_share():
    """Writing the even rows 2*m and reading the odd rows 2*m + 1 of a buffer never meets
    another point's data (no m, m' with 2*m = 2*m' + 1): the stages merge."""
    buffers = WITH_T.replace("t: f32[4,4]", "t: f32[6,4]")
    assert_rewrites(coarsen, program(buffers, """
        for m in 0:3 parallel host { stage a() device { t[2*m, 0:4] = exp(x[m, 0:4]) } }
        for m in 0:3 parallel host { stage b() device { y[m, 0:4] = mul(t[2*m + 1, 0:4], t[2*m, 0:4]) } }
    """), program(buffers, """
        stage a(m in 0:3) device {
          t[2*m, 0:4] = exp(x[m, 0:4])
          y[m, 0:4] = mul(t[2*m + 1, 0:4], t[2*m, 0:4])
        }
    """))


def test_coarsen_inlines_an_elementwise_temporary_read_once():
    """Inside a stage, a temporary computed element-wise and read by one element-wise op
    becomes part of that op's expression; its buffer goes."""
    assert_rewrites(coarsen, program(WITH_T, """
        stage cell(m in 0:3) device {
          t[m, 0:4] = sigmoid(x[m, 0:4])
          y[m, 0:4] = mul(t[m, 0:4], x[m, 0:4])
        }
    """), program(COARSEN_BUFFERS, """
        stage cell(m in 0:3) device { y[m, 0:4] = mul(sigmoid(x[m, 0:4]), x[m, 0:4]) }
    """))


def test_coarsen_inlines_a_temporary_of_constants_as_the_value_it_holds():
    """A bare constant has no dtype of its own: a temporary of constants only (a `full`)
    is inlined as the one value it holds in its dtype (f32 here: 0.1 + 0.2 rounded)."""
    held = float(np.float32(0.1) + np.float32(0.2))
    assert held != 0.1 + 0.2
    assert_rewrites(coarsen, program(WITH_T, """
        stage cell(m in 0:3) device {
          t[m, 0:4] = add(0.1, 0.2)
          y[m, 0:4] = mul(t[m, 0:4], x[m, 0:4])
        }
    """), program(COARSEN_BUFFERS, f"""
        stage cell(m in 0:3) device {{ y[m, 0:4] = mul({held!r}, x[m, 0:4]) }}
    """))


def test_coarsen_keeps_a_temporary_read_twice():
    """A temporary read twice is computed once and stored, not inlined twice."""
    assert_unchanged(coarsen, program(WITH_T, """
        stage cell(m in 0:3) device {
          t[m, 0:4] = sigmoid(x[m, 0:4])
          y[m, 0:4] = mul(t[m, 0:4], t[m, 0:4])
        }
    """))


def test_coarsen_makes_the_producer_of_a_copied_temporary_write_in_place():
    """`t = f(x); z = g(t); y = copy(t)`: f writes y directly, and the other readers of t
    read y instead (a cell writing the next state slot); t goes."""
    assert_rewrites(coarsen, program(WITH_T, """
        stage cell(m in 0:3) device {
          t[m, 0:4] = tanh(x[m, 0:4])
          z[m, 0:4] = mul(t[m, 0:4], x[m, 0:4])
          y[m, 0:4] = copy(t[m, 0:4])
        }
    """), program(COARSEN_BUFFERS, """
        stage cell(m in 0:3) device {
          y[m, 0:4] = tanh(x[m, 0:4])
          z[m, 0:4] = mul(y[m, 0:4], x[m, 0:4])
        }
    """))


def test_coarsen_drops_unused_temporaries_only():
    """A temp buffer no op touches is dropped; unused inputs, outputs and consts stay."""
    const = "\nbuffer k: i64[3] global const = [0, 1, 2]"
    assert_rewrites(coarsen, program(WITH_T + const, "stage e(m in 0:3) device { y[m, 0:4] = exp(x[m, 0:4]) }"),
                    program(COARSEN_BUFFERS + const, "stage e(m in 0:3) device { y[m, 0:4] = exp(x[m, 0:4]) }"))


MERGE_BUFFERS = """
    buffer x: f32[4,2,16] global input
    buffer u: f32[16,8] global input
    buffer v: f32[16,8] global input
    buffer y: f32[4,2,8] global output
"""
TWO_GEMMS = """
    stage k(m in 0:4) device {
      c1[m, 0:2, 0:8] = gemm(x[m, 0:2, 0:16], u[0:16, 0:8])
      c2[m, 0:2, 0:8] = gemm(x[m, 0:2, 0:16], v[0:16, 0:8])
      y[m, 0:2, 0:8] = add(c1[m, 0:2, 0:8], c2[m, 0:2, 0:8])
    }
"""


def test_coarsen_merges_gemms_sharing_their_left_operand():
    """`x @ u` and `x @ v` become one GEMM `x @ [u | v]`; the weights are put side by side
    once, first; c2's reader reads c1's second column block."""
    assert_rewrites(coarsen, program(MERGE_BUFFERS + """
        buffer c1: f32[4,2,8] global temp
        buffer c2: f32[4,2,8] global temp
    """, TWO_GEMMS), program(MERGE_BUFFERS + """
        buffer c1: f32[4,2,16] global temp
        buffer w_u_v: f32[16,16] global temp
    """, """
        stage w_u_v() device {
          w_u_v[0:16, 0:8] = copy(u[0:16, 0:8])
          w_u_v[0:16, 8:16] = copy(v[0:16, 0:8])
        }
        stage k(m in 0:4) device {
          c1[m, 0:2, 0:16] = gemm(x[m, 0:2, 0:16], w_u_v[0:16, 0:16])
          y[m, 0:2, 0:8] = add(c1[m, 0:2, 0:8], c1[m, 0:2, 8:16])
        }
    """))


@pytest.mark.parametrize("change", [
    ("c2[m, 0:2, 0:8] = gemm(x[m, 0:2, 0:16]", "c2[m, 0:2, 0:8] = gemm(x[3 - m, 0:2, 0:16]"),  # another a
    ("v[0:16, 0:8])", "u[0:16, 0:8])"),  # the same weights (not side by side)
    ("c2[m, 0:2, 0:8] = gemm", "c2[m, 0:2, 0:8] += gemm"),  # accumulating
])
def test_coarsen_keeps_gemms_apart_unless_one_left_operand_meets_plain_weights(change):
    assert_unchanged(coarsen, program(MERGE_BUFFERS + """
        buffer c1: f32[4,2,8] global temp
        buffer c2: f32[4,2,8] global temp
    """, TWO_GEMMS.replace(*change)))


# --- bucket ----------------------------------------------------------------------------------

BUCKET_BUFFERS = """
    buffer x: f32[20,4] global input
    buffer h: f32[24,4] global output
"""
# lengths [5, 3, 3, 2]: live sequences per step 4, 4, 3, 1, 1
LIVE = "2*min(1, max(0, 3 - s)) + min(1, max(0, 2 - s)) + 1"


def test_bucket_shrinks_the_stages_of_a_step_to_its_live_prefix():
    """Inside `active m < n(s)`, the batch dim m of a stage runs 0:n(s), the hint stays."""
    assert_rewrites(bucket, program(BUCKET_BUFFERS, f"""
        for s in 0:5 sequential host active m < {LIVE} {{
          stage cell(m in 0:4) device {{ h[4*s + m + 4, 0:4] = tanh(x[4*s + m, 0:4]) }}
        }}
    """), program(BUCKET_BUFFERS, f"""
        for s in 0:5 sequential host active m < {LIVE} {{
          stage cell(m in 0:{LIVE}) device {{ h[4*s + m + 4, 0:4] = tanh(x[4*s + m, 0:4]) }}
        }}
    """))


def test_bucket_keeps_the_extent_where_the_hint_may_exceed_it():
    """A bound that can exceed the dim's extent (here up to 5 > 4) is capped with `min`."""
    assert_rewrites(bucket, program(BUCKET_BUFFERS, """
        for s in 0:5 sequential host active m < 5 - s {
          stage cell(m in 0:4) device { h[4*s + m + 4, 0:4] = tanh(x[4*s + m, 0:4]) }
        }
    """), program(BUCKET_BUFFERS, """
        for s in 0:5 sequential host active m < 5 - s {
          stage cell(m in 0:min(4, 5 - s)) device { h[4*s + m + 4, 0:4] = tanh(x[4*s + m, 0:4]) }
        }
    """))


def test_bucket_leaves_stages_outside_the_loop_and_other_dims():
    """A stage hoisted out of the loop keeps its padded box; a dim the hint does not name
    (k) and a hint naming no dim of the stage change nothing."""
    assert_unchanged(bucket, program(BUCKET_BUFFERS, f"""
        for s in 0:5 parallel host {{
          stage proj(m in 0:4) device {{ h[4*s + m + 4, 0:4] = tanh(x[4*s + m, 0:4]) }}
        }}
        for s in 0:5 sequential host active k < {LIVE} {{
          stage cell(m in 0:4) device {{ h[4*s + m + 4, 0:4] = tanh(x[4*s + m, 0:4]) }}
        }}
    """))


# --- materialise -----------------------------------------------------------------------------

MATERIALISE_BUFFERS = """
    buffer x: f32[5,3,4] global input
    buffer w: f32[4,4] global input
    buffer g: f32[15,1,4] global temp
    buffer y: f32[15,1,4] global output
"""
ONE_STEP_OF_G = MATERIALISE_BUFFERS.replace("g: f32[15,1,4]", "g: f32[3,1,4]")


def gate_step(g_rows: str, y_rows: str) -> str:
    """A step loop whose stage writes rows `g_rows` of g and reads them right back."""
    return f"""
        for s in 0:5 sequential host {{
          stage step(m in 0:3) device {{
            g[{g_rows}, 0:1, 0:4] = gemm(x[s, m:m + 1, 0:4], w[0:4, 0:4])
            y[{y_rows}, 0:1, 0:4] = tanh(g[{g_rows}, 0:1, 0:4])
          }}
        }}
    """


STATE_BUFFERS = """
    buffer x: f32[4,1,4] global input
    buffer w: f32[4,4] global input
    buffer z: f32[1,1,4] global {z_role}
    buffer st: f32[8,1,4] global temp
    buffer t: f32[4,1,4] global temp
    buffer y: f32[4,1,4] global output
"""
STATE_FILL = "stage fill() device { z[0, 0:1, 0:4] = 0.0 }"
STATE_USE = "stage out(m in 0:4) device { y[m, 0:1, 0:4] = tanh(t[m, 0:1, 0:4]) }"


def state_chain(z_role: str = "temp", *extra: str) -> str:
    """A contracted reduce's state within its stage: initial value to slot 0, slot 0 to the
    last slot, the product added there, the last slot copied to the result `t`."""
    return program(STATE_BUFFERS.format(z_role=z_role), "\n".join([STATE_FILL if z_role == "temp" else "", """
        stage step(m in 0:4) device {
          st[m, 0:1, 0:4] = copy(z[0, 0:1, 0:4])
          st[m + 4, 0:1, 0:4] = copy(st[m, 0:1, 0:4])
          st[m + 4, 0:1, 0:4] += gemm(x[m, 0:1, 0:4], w[0:4, 0:4])
          t[m, 0:1, 0:4] = copy(st[m + 4, 0:1, 0:4])
        }""", STATE_USE, *extra]))


def without_state(z_role: str, step: str) -> str:
    buffers = STATE_BUFFERS.format(z_role=z_role).replace("    buffer st: f32[8,1,4] global temp\n", "")
    return program(buffers, "\n".join([STATE_FILL if z_role == "temp" else "",
                                         f"stage step(m in 0:4) device {{ {step} }}", STATE_USE]))


def test_forward_results_writes_a_reduce_state_of_zeros_plus_a_product_as_the_product():
    """The state starts as zeros (every write of `z` fills it with 0.0): the product is
    written straight into the result, the state and its three copies gone."""
    assert_rewrites(passes("forward_results"), state_chain(), without_state(
        "temp", "t[m, 0:1, 0:4] = gemm(x[m, 0:1, 0:4], w[0:4, 0:4])"))


def test_forward_results_adds_the_product_to_the_initial_value_copied_into_the_result():
    assert_rewrites(passes("forward_results"), state_chain("input"), without_state(
        "input", "t[m, 0:1, 0:4] = copy(z[0, 0:1, 0:4]) t[m, 0:1, 0:4] += gemm(x[m, 0:1, 0:4], w[0:4, 0:4])"))


@pytest.mark.parametrize("why, extra", [
    ("another stage reads the state", "stage peek(m in 0:4) device { y[m, 0:1, 0:4] = copy(st[m + 4, 0:1, 0:4]) }"),
])
def test_forward_results_keeps_a_state_it_cannot_forward(why, extra):
    assert_unchanged(passes("forward_results"), state_chain("input", extra)), why


def test_forward_results_keeps_a_state_whose_result_the_stage_also_reads():
    text = state_chain("input").replace("t[m, 0:1, 0:4] = copy(st[m + 4, 0:1, 0:4])",
                                        "t[m, 0:1, 0:4] = copy(st[m + 4, 0:1, 0:4]) x2[m, 0:1, 0:4] = exp(t[m, 0:1, 0:4])")
    text = text.replace("buffer y: f32[4,1,4] global output", "buffer y: f32[4,1,4] global output\n  buffer x2: f32[4,1,4] global temp")
    assert_unchanged(passes("forward_results"), text)


def test_materialise_contracts_a_temporary_that_lives_within_one_step():
    """g is written and read at the same row within each step s: s leaves its row index
    (outputs keep theirs) and g shrinks to one step's rows."""
    assert_rewrites(materialise, program(MATERIALISE_BUFFERS, gate_step("3*s + m", "3*s + m")),
                    program(ONE_STEP_OF_G, gate_step("m", "3*s + m")))


def test_materialise_contracts_step_minor_rows_to_one_steps_rows():
    """The docstring's case: rows 5*m + s (the step varies fastest, as lowering lays out a
    scan inside a map) keep one step's rows: t[5*m + s] becomes t[m], 15 rows become 3."""
    assert_rewrites(materialise, program(MATERIALISE_BUFFERS, gate_step("5*m + s", "5*m + s")),
                    program(ONE_STEP_OF_G, gate_step("m", "5*m + s")))


def test_materialise_keeps_a_state_whose_first_slot_is_never_written():
    """A state read at slot s and written at s + 1, whose slot 0 nothing writes, reads the
    zeros of a fresh temporary; rolled, a second run would read the last step's value there:
    it keeps its rows."""
    assert_unchanged(materialise, program(MATERIALISE_BUFFERS + "buffer c: f32[6,1,4] global temp", """
        for s in 0:5 sequential host {
          stage cell() device { c[s + 1, 0:1, 0:4] = tanh(c[s, 0:1, 0:4]) }
        }
    """))


ROLL_BUFFERS = """
    buffer x: f32[4,1,4] global input
    buffer y: f32[4,1,4] global output
    buffer c: f32[24,4,1,4] global temp
"""


def test_materialise_rolls_a_scan_state_to_the_slots_a_step_reads():
    """A scan's state over 4 points, initialised before the loop and read only inside it: a
    step reads slot s and writes slot s + 1, so two slots per point suffice (slot u at u mod 2)."""
    assert_rewrites(materialise, program(ROLL_BUFFERS, """
        stage init(m in 0:4) device { c[m, 0, 0:1, 0:4] = copy(x[m, 0:1, 0:4]) }
        for s in 0:5 sequential host {
          stage cell(m in 0:4) device { c[4*s + m + 4, 0, 0:1, 0:4] = tanh(c[4*s + m, 0, 0:1, 0:4]) }
        }
    """), program(ROLL_BUFFERS.replace("c: f32[24,", "c: f32[8,"), """
        stage init(m in 0:4) device { c[m, 0, 0:1, 0:4] = copy(x[m, 0:1, 0:4]) }
        for s in 0:5 sequential host {
          stage cell(m in 0:4) device { c[m + 4*((s + 1) mod 2), 0, 0:1, 0:4] = tanh(c[m + 4*(s mod 2), 0, 0:1, 0:4]) }
        }
    """))


def test_materialise_rolls_a_scan_state_whose_last_slot_is_read_after_the_loop():
    """A reduce's final state, read after the loop: slot 5, the last step's, is still stored
    (at 5 mod 2)."""
    assert_rewrites(materialise, program(ROLL_BUFFERS, """
        stage init(m in 0:4) device { c[m, 0, 0:1, 0:4] = copy(x[m, 0:1, 0:4]) }
        for s in 0:5 sequential host {
          stage cell(m in 0:4) device { c[4*s + m + 4, 0, 0:1, 0:4] = tanh(c[4*s + m, 0, 0:1, 0:4]) }
        }
        stage out(m in 0:4) device { y[m, 0:1, 0:4] = copy(c[m + 20, 0, 0:1, 0:4]) }
    """), program(ROLL_BUFFERS.replace("c: f32[24,", "c: f32[8,"), """
        stage init(m in 0:4) device { c[m, 0, 0:1, 0:4] = copy(x[m, 0:1, 0:4]) }
        for s in 0:5 sequential host {
          stage cell(m in 0:4) device { c[m + 4*((s + 1) mod 2), 0, 0:1, 0:4] = tanh(c[m + 4*(s mod 2), 0, 0:1, 0:4]) }
        }
        stage out(m in 0:4) device { y[m, 0:1, 0:4] = copy(c[m + 4, 0, 0:1, 0:4]) }
    """))


def test_materialise_keeps_a_final_state_read_after_the_loop_where_the_target_says_so():
    """A mesh's reduce planner needs each state its own rows (`roll_final_states`)."""
    import fractal as ft
    text = program(ROLL_BUFFERS, """
        stage init(m in 0:4) device { c[m, 0, 0:1, 0:4] = copy(x[m, 0:1, 0:4]) }
        for s in 0:5 sequential host {
          stage cell(m in 0:4) device { c[4*s + m + 4, 0, 0:1, 0:4] = tanh(c[4*s + m, 0, 0:1, 0:4]) }
        }
        stage out(m in 0:4) device { y[m, 0:1, 0:4] = copy(c[m + 20, 0, 0:1, 0:4]) }
    """)
    got, _ = run_pass(materialise, text, target=ft.targets.mesh(2, 2, preset="tiny"))
    assert got == parse_tile_program(text).verify()


# A ragged loop over 4 points in 2 groups (point 2*j + m): group 0 lives 5 steps, group 1 three,
# so the lowering's live-point cut runs group 1 only while s < 3; each point's final state is
# its own last slot (5 for group 0, 3 for group 1).
RAGGED_ROLL_BUFFERS = """
    buffer x: f32[4,1,4] global input
    buffer y: f32[4,1,4] global output
    buffer c: f32[24,1,4] global temp
"""


def ragged_roll(cut: str, *after: str, rows: int = 24, step: tuple = ("4*s + 4", "4*s")) -> str:
    return program(RAGGED_ROLL_BUFFERS.replace("c: f32[24,", f"c: f32[{rows},"), f"""
        stage init(j in 0:2, m in 0:2) device {{ c[2*j + m, 0:1, 0:4] = copy(x[2*j + m, 0:1, 0:4]) }}
        for s in 0:5 sequential host {{
          stage cell(j in {cut}, m in 0:2) device {{ c[2*j + m + {step[0]}, 0:1, 0:4] = tanh(c[2*j + m + {step[1]}, 0:1, 0:4]) }}
        }}
    """ + "\n".join(after))


LIVE_CUT = "0:min(1, max(0, -s + 3)) + 1"
ROLLED_STEP = ("4*((s + 1) mod 2)", "4*(s mod 2)")


def test_materialise_rolls_a_ragged_state_read_after_the_loop_at_each_points_own_last_slot():
    """Group 0's final state is slot 5, group 1's slot 3 (`c[m - 6*j + 20]`): each is the
    newest slot its point wrote, so two slots suffice and the read finds both at slot 1."""
    out = "stage out(j in 0:2, m in 0:2) device {{ y[2*j + m, 0:1, 0:4] = copy(c[{}, 0:1, 0:4]) }}"
    assert_rewrites(materialise, ragged_roll(LIVE_CUT, out.format("m - 6*j + 20")),
                    ragged_roll(LIVE_CUT, out.format("2*j + m + 4"), rows=8, step=ROLLED_STEP))


def test_materialise_rolls_a_ragged_state_read_after_the_loop_through_a_table():
    """The final states gathered through a constant table (point 3 is padding: one past the
    end): the table's entries move to the rolled rows, padding to the new end."""
    def gathered(table: str, rows: int) -> str:
        return (f"buffer tab: i64[4] global const = [{table}]\n"
                f"stage out(p in 0:4) device {{ y[p:p + 1, 0:1, 0:4] = gather(c[0:{rows}, 0:1, 0:4], tab[p:p + 1], axis=0) }}")
    before = ragged_roll(LIVE_CUT, gathered("20, 21, 14, 24", 24))
    after = ragged_roll(LIVE_CUT, gathered("4, 5, 6, 8", 8), rows=8, step=ROLLED_STEP)
    assert_rewrites(materialise, move_const_first(before), move_const_first(after))


def move_const_first(text: str) -> str:
    """(buffers are declared before the body: the table's line moves up)"""
    lines = text.splitlines()
    table = next(k for k, line in enumerate(lines) if "global const" in line)
    moved = lines.pop(table)
    lines.insert(1, moved)
    return "\n".join(lines)


@pytest.mark.parametrize("why, cut, after", [
    ("group 1 computed at every step: slot 3 is not its newest", "0:2",
     "stage out(j in 0:2, m in 0:2) device { y[2*j + m, 0:1, 0:4] = copy(c[m - 6*j + 20, 0:1, 0:4]) }"),
    ("a slot older than the point's last read after the loop", LIVE_CUT,
     "stage out(j in 0:2, m in 0:2) device { y[2*j + m, 0:1, 0:4] = copy(c[m - 6*j + 16, 0:1, 0:4]) }"),
    ("a table entry naming an older slot", LIVE_CUT,
     "stage out(p in 0:4) device { y[p:p + 1, 0:1, 0:4] = gather(c[0:24, 0:1, 0:4], tab[p:p + 1], axis=0) }"),
    ("a table another gather reads too", LIVE_CUT,
     "stage out(p in 0:4) device { y[p:p + 1, 0:1, 0:4] = gather(c[0:24, 0:1, 0:4], tab2[p:p + 1], axis=0) }\n"
     "stage again(p in 0:4) device { y[p:p + 1, 0:1, 0:4] = gather(c[0:24, 0:1, 0:4], tab2[p:p + 1], axis=0) }"),
])
def test_materialise_keeps_a_ragged_state_it_cannot_roll(why, cut, after):
    text = ragged_roll(cut, after)
    tables = "buffer tab: i64[4] global const = [20, 17, 14, 24]\nbuffer tab2: i64[4] global const = [20, 21, 14, 24]"
    text = text.replace("buffer c: f32[24,1,4] global temp", "buffer c: f32[24,1,4] global temp\n  " + tables.replace("\n", "\n  "))
    assert_unchanged(materialise, text), why


@pytest.mark.parametrize("why, init, after", [
    ("read after the loop: every step's rows stay", "stage init(m in 0:4) device { c[m, 0, 0:1, 0:4] = 0.0 }",
     "stage out() device { y[0:4, 0:1, 0:4] = copy(c[20:24, 0, 0:1, 0:4]) }"),
    ("a slot older than the last step's read after the loop",
     "stage init(m in 0:4) device { c[m, 0, 0:1, 0:4] = 0.0 }",
     "stage out(m in 0:4) device { y[m, 0:1, 0:4] = copy(c[m + 12, 0, 0:1, 0:4]) }"),
    ("only some points' first slot is written", "stage init(m in 0:2) device { c[m, 0, 0:1, 0:4] = 0.0 }", ""),
    ("the first slot written after the loop", "",
     "stage late(m in 0:4) device { c[m, 0, 0:1, 0:4] = 0.0 }"),
])
def test_materialise_keeps_a_scan_state_it_cannot_roll(why, init, after):
    assert_unchanged(materialise, program(ROLL_BUFFERS, init + """
        for s in 0:5 sequential host {
          stage cell(m in 0:4) device { c[4*s + m + 4, 0, 0:1, 0:4] = tanh(c[4*s + m, 0, 0:1, 0:4]) }
        }
    """ + after)), why


def test_materialise_keeps_a_temporary_read_after_the_loop():
    """A temporary also read outside the step loop needs every step's rows."""
    assert_unchanged(materialise, program(MATERIALISE_BUFFERS, gate_step("3*s + m", "3*s + m") + """
        stage after() device { y[0:15, 0:1, 0:4] = copy(g[0:15, 0:1, 0:4]) }
    """))


TRIM_BUFFERS = """
    buffer x: f32[4,1,4] global input
    buffer y: f32[4,1,4] global output
    buffer c: f32[24,1,4] global temp
"""
trim = passes("trim_storage")


def test_trim_keeps_only_the_rows_a_temporary_touches():
    """A contraction's result written at its last slot alone (rows 20-23 of 24): 4 rows."""
    assert_rewrites(trim, program(TRIM_BUFFERS, """
        stage last(m in 0:4) device { c[m + 20, 0:1, 0:4] = tanh(x[m, 0:1, 0:4]) }
        stage out(m in 0:4) device { y[m, 0:1, 0:4] = copy(c[m + 20, 0:1, 0:4]) }
    """), program(TRIM_BUFFERS.replace("c: f32[24,", "c: f32[4,"), """
        stage last(m in 0:4) device { c[m, 0:1, 0:4] = tanh(x[m, 0:1, 0:4]) }
        stage out(m in 0:4) device { y[m, 0:1, 0:4] = copy(c[m, 0:1, 0:4]) }
    """))


def test_trim_moves_a_tables_entries_with_the_rows_and_makes_unwritten_rows_padding():
    """Gathered through a table of its own: rows 20 and 21 move to 0 and 1; row 5, which no
    op writes (zeros), and the padding (24) become the new padding (4)."""
    def text(rows: int, table: str, shift: str) -> str:
        return program(TRIM_BUFFERS.replace("c: f32[24,", f"c: f32[{rows},") +
                       f"buffer tab: i64[4] global const = [{table}]", f"""
            stage last(m in 0:4) device {{ c[m{shift}, 0:1, 0:4] = tanh(x[m, 0:1, 0:4]) }}
            stage out(p in 0:4) device {{ y[p:p + 1, 0:1, 0:4] = gather(c[0:{rows}, 0:1, 0:4], tab[p:p + 1], axis=0) }}
        """)
    assert_rewrites(trim, text(24, "20, 21, 24, 5", " + 20"), text(4, "0, 1, 4, 4", ""))


@pytest.mark.parametrize("why, body", [
    ("the accesses span every row", """
        stage first(m in 0:4) device { c[m, 0:1, 0:4] = tanh(x[m, 0:1, 0:4]) }
        stage last(m in 0:4) device { c[m + 20, 0:1, 0:4] = tanh(x[m, 0:1, 0:4]) }
     """),
    ("a read of the whole axis, not through a table of its own", """
        stage last(m in 0:4) device { c[m + 20, 0:1, 0:4] = tanh(x[m, 0:1, 0:4]) }
        stage out() device { y[0:4, 0:1, 0:4] = copy(c[0:24:6, 0:1, 0:4]) }
     """),
])
def test_trim_keeps_a_temporary_whose_accesses_need_its_rows(why, body):
    assert_unchanged(trim, program(TRIM_BUFFERS, body)), why


# --- tile ------------------------------------------------------------------------------------

# 64 points; at each, the two ops touch 5 regions of 10 floats (200 bytes): 12.5 KiB in all,
# over the 2 KiB that TINY_CPU gives a tile; 2048 // 200 = 10 points fit, aligned down to 8.
TILE_BUFFERS = """
    buffer x: f32[64,1,10] global input
    buffer w: f32[10,10] global input
    buffer t: f32[64,1,10] global temp
    buffer y: f32[64,1,10] global output
"""
EXP = "t[m, 0:1, 0:10] = exp(x[m, 0:1, 0:10])"
MUL = "y[m, 0:1, 0:10] = mul(t[m, 0:1, 0:10], x[m, 0:1, 0:10])"


def cell_stage(dim: str, *ops: str) -> str:
    return f"stage cell(m in {dim}) device {{ {' '.join(ops)} }}"


def test_tile_splits_a_big_elementwise_stage_into_aligned_tiles():
    """A multi-op stage whose working set exceeds half the tile level is split along its
    first dim into tiles of the largest multiple of the alignment that fits (8 of 64)."""
    ctx = assert_rewrites(tile, program(TILE_BUFFERS, cell_stage("0:64", EXP, MUL)), program(TILE_BUFFERS, f"""
        for m_tile in 0:64 step 8 parallel host {{
          {cell_stage("m_tile:min(64, m_tile + 8)", EXP, MUL)}
        }}
    """))
    assert ctx.notes == ["tile: cell m in tiles of 8 (1600 bytes per tile)"]


def test_tile_leaves_a_stage_with_a_gemm_whole():
    """BLAS tiles a GEMM for the cache itself: a stage holding one is not split."""
    gemm = "t[m, 0:1, 0:10] = gemm(x[m, 0:1, 0:10], w[0:10, 0:10])"
    assert_unchanged(tile, program(TILE_BUFFERS, cell_stage("0:64", gemm, MUL)))


def test_tile_leaves_a_stage_that_fits_whole():
    """10 points (2000 bytes) fit the 2 KiB budget: the stage stays whole (11 would not)."""
    assert_unchanged(tile, program(TILE_BUFFERS, cell_stage("0:10", EXP, MUL)))
    eleven = program(TILE_BUFFERS, cell_stage("0:11", EXP, MUL))
    assert run_pass(tile, eleven)[0] != parse_tile_program(eleven)


def test_tile_leaves_a_single_op_stage_whole():
    """With one op there is no intermediate to keep in cache between ops."""
    assert_unchanged(tile, program(TILE_BUFFERS, cell_stage("0:64", MUL)))


# --- the pipeline ----------------------------------------------------------------------------

@ft.function
def stacked_rnn(batch, ws):
    """2 layers (fold) x a batch of 2 (map) x 3 steps (scan) of h' = tanh(x @ w + h)."""
    zero = ft.zeros((1, 4), np.float32)

    def layer(seqs, w):
        return ft.map(lambda seq: ft.scan(lambda h, x: ft.tanh(x @ w + h), seq, zero), seqs)

    return ft.fold(layer, ws, batch)


@ft.function
def scaled(xs):
    return ft.map(lambda x: ft.tanh(x) * x, xs)


def lowered(fn, *args):
    program, _, flat = fn.traced(args, {})
    return lower_program(program, flat)


def rnn_args():
    rng = np.random.default_rng(0)
    row = lambda: rng.standard_normal((1, 4)).astype(np.float32)  # noqa: E731
    batch = ft.fractal([ft.fractal([row() for _ in range(3)]) for _ in range(2)])
    return batch, ft.fractal([rng.standard_normal((4, 4)).astype(np.float32) for _ in range(2)])


def dump_prefix(folder) -> str:
    """The one `<program>.<signature>.<pid>` prefix of the dump files in `folder`."""
    (prefix,) = {p.name.rsplit(".", 2)[0] for p in folder.iterdir()}
    return prefix


def last_dump(folder) -> str:
    """The text of the last pass that changed the program, in a dump folder."""
    texts = [p.read_text() for p in sorted(folder.iterdir())]
    return next(t for t in reversed(texts) if not t.startswith("//"))


def test_pipeline_passes_run_in_the_documented_order():
    assert [name for name, _ in PASSES] == [
        "contract", "schedule", "hoist", "wavefront", "sink", "batch", "merge", "fuse", "merge_gemms", "widen_gemms",
        "bucket", "forward_results", "contract_storage", "roll_storage", "trim_storage", "tile", "cut_dead"]


@pytest.mark.parametrize("k", range(len(PASSES)))
def test_each_pass_says_its_number_and_name_first(k):
    """`Pass <k>, <name>: ...`: a pass's docstring numbers it as the pipeline does."""
    name, run = PASSES[k]
    assert run.__doc__.startswith(f"Pass {k}, {name}: "), run.__doc__


def test_pipeline_wavefronts_a_stacked_rnn_and_notes_it(tmp_path):
    """On a stacked RNN, the verified pipeline notes the wavefront and leaves one sequential
    loop over the 2 + 3 - 1 diagonals; the dump holds the IR before and after every pass."""
    low = lowered(stacked_rnn, *rnn_args())
    out, ctx = run_pipeline(low.program, target=TINY_CPU, verify=True, dump=tmp_path)
    assert len(ctx.notes) == 1 and ctx.notes[0].startswith("wavefront: ")
    loops = [s for s in out.body if isinstance(s, Loop)]
    assert [(s.kind, s.start.const, s.stop.const) for s in loops] == [("sequential", 0, 4)]
    names = sorted(p.name for p in tmp_path.iterdir())
    prefix = dump_prefix(tmp_path)  # stacked_rnn.<signature>.<pid>
    assert prefix.startswith("stacked_rnn.") and prefix.endswith(f".{os.getpid()}")
    assert names == [f"{prefix}.{k:02d}-{name}.tile" for k, name in
                     enumerate(["lowered"] + [name for name, _ in PASSES])]
    assert parse_tile_program((tmp_path / f"{prefix}.00-lowered.tile").read_text()) == low.program
    assert parse_tile_program(last_dump(tmp_path)) == out
    assert (tmp_path / f"{prefix}.16-tile.tile").read_text() == "// tile: (unchanged)\n"


def test_pipeline_dump_from_the_environment_marks_passes_that_changed_nothing(tmp_path, monkeypatch):
    """FRACTAL_DUMP_IR=<dir> dumps each pass; a pass that changed nothing (a map has no
    sequential loop to hoist from or skew) writes `// <pass>: (unchanged)`."""
    monkeypatch.setenv("FRACTAL_DUMP_IR", str(tmp_path))
    low = lowered(scaled, ft.fractal([np.full((1, 4), i, np.float32) for i in range(3)]))
    out, _ = run_pipeline(low.program, target=TINY_CPU, verify=True)
    text = {p.name.rsplit("-", 1)[1]: p.read_text() for p in tmp_path.iterdir()}
    assert text["hoist.tile"] == "// hoist: (unchanged)\n"
    assert text["wavefront.tile"] == "// wavefront: (unchanged)\n"
    assert parse_tile_program(last_dump(tmp_path)) == out


LAYERS_BUFFERS = """
    buffer h: f32[384,1,4] global temp
    buffer w: f32[4,4] global input
    buffer g: f32[128,1,4] global temp
"""


def _layers(points: int, proj_loop: str, weights: str = "w[0:4, 0:4]") -> str:
    proj = (f"stage p(m in 0:{points}) device {{ g[64*s + m, 0:1, 0:4] = "
            f"gemm(h[128*l + 64*s + m, 0:1, 0:4], {weights}) }}")
    cell = (f"stage c(m in 0:{points}) device {{ h[128*l + 64*s + m + 128, 0:1, 0:4] = "
            f"tanh(add(g[64*s + m, 0:1, 0:4], h[128*l + 64*s + m + 64, 0:1, 0:4])) }}")  # the recurrence
    if proj_loop == "inside":
        return f"for l in 0:2 sequential host {{ for s in 0:2 sequential host {{ {proj} {cell} }} }}"
    return (f"for l in 0:2 sequential host {{ for s in 0:2 parallel host {{ {proj} }} "
            f"for s in 0:2 sequential host {{ {cell} }} }}")


def test_hoist_batches_a_projection_of_the_previous_layer_across_time_when_it_is_big_enough():
    """The loop writes h (this layer's slot) and the projection reads h too, but the previous
    layer's rows: exact row distances show they never meet within one layer, so with 64 rows
    per step (8 aligned tiles of the hardware record) it becomes one GEMM over all steps."""
    assert_rewrites(hoist, program(LAYERS_BUFFERS, _layers(64, "inside")), program(LAYERS_BUFFERS, _layers(64, "out")))


def test_hoist_batches_a_small_projection_whose_layer_weights_overflow_the_last_cache():
    """8 rows per step, but a weight matrix per layer, 2560 bytes in all, more than half the
    last cache level (the made-up cpu's 4 KiB L2): a wavefront would read every layer's
    weights at every step, layer by layer they stay cached, so time is batched instead."""
    buffers = LAYERS_BUFFERS + "buffer wl: f32[40,4,4] global input"
    assert_rewrites(hoist, program(buffers, _layers(8, "inside", "wl[l, 0:4, 0:4]")),
                    program(buffers, _layers(8, "out", "wl[l, 0:4, 0:4]")))


def test_hoist_leaves_a_small_projection_of_the_previous_layer_to_the_wavefront():
    """With 8 rows per step the GEMM is too small to gain from batching time, and staying in
    the loop keeps the layer x step nest perfect for the wavefront."""
    assert_unchanged(hoist, program(LAYERS_BUFFERS, _layers(8, "inside")))
