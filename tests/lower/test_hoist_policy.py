"""When hoist batches a statement across its loop (`fractal.lower.hoist._worth_batching`).

Batching time pays where it makes GEMMs bigger (a weight shared by the steps folds their
rows into one GEMM) or steps fewer and larger; a step whose results already fill a cache
tile and whose GEMM multiplies per-step operands (attention's score blocks) stays in the
loop, where its results stay in cache for the statements that read them.  The made-up cpu
of the pass tests (`TINY_CPU`: a 4 KiB L2, tiles of 2 KiB) makes the sizes small.
"""

from __future__ import annotations

import dataclasses

from fractal.backends.cpu.policy import CpuPolicy
from fractal.lower import parse_tile_program
from fractal.lower.hoist import hoist
from fractal.lower.policy import LiveFacts
from tests.lower.test_passes import TINY_CPU, assert_rewrites, assert_unchanged, program, run_pass

BUFFERS = """
    buffer q: f32[16,8,8] global input
    buffer k: f32[4,8,8] global input
    buffer w: f32[8,8] global input
    buffer x: f32[64,8,8] global input
    buffer s_: f32[64,8,8] global temp
    buffer o: f32[5,16,8,8] global output
"""


def _loop(points: int, gemm: str, where: str) -> str:
    score = f"stage mm(m in 0:{points}) device {{ s_[16*t + m, 0:8, 0:8] = {gemm} }}"
    step = f"stage acc(m in 0:{points}) device {{ o[t + 1, m, 0:8, 0:8] = add(o[t, m, 0:8, 0:8], s_[16*t + m, 0:8, 0:8]) }}"
    if where == "inside":
        return f"for t in 0:4 sequential host {{ {score} {step} }}"
    return f"for t in 0:4 parallel host {{ {score} }} for t in 0:4 sequential host {{ {step} }}"


PER_STEP = "gemm(q[m, 0:8, 0:8], k[t, 0:8, 0:8].T)"  # both operands change from step to step
SHARED = "gemm(x[16*t + m, 0:8, 0:8], w[0:8, 0:8])"    # the weight is the same at every step


def test_hoist_keeps_a_big_step_whose_gemm_multiplies_per_step_operands():
    """16 score blocks of 256 bytes per step (4 KiB, over the 2 KiB tile): batching the 4
    steps would make no GEMM bigger, only send 16 KiB of scores through memory."""
    assert_unchanged(hoist, program(BUFFERS, _loop(16, PER_STEP, "inside")))


def test_hoist_batches_a_big_step_whose_gemm_shares_a_weight():
    """The same sizes with one weight for all steps: the steps' rows become one GEMM."""
    assert_rewrites(hoist, program(BUFFERS, _loop(16, SHARED, "inside")), program(BUFFERS, _loop(16, SHARED, "out")))


def test_hoist_batches_small_steps_whose_gemm_multiplies_per_step_operands():
    """2 blocks per step (512 bytes): batching makes the steps fewer and larger."""
    assert_rewrites(hoist, program(BUFFERS, _loop(2, PER_STEP, "inside")), program(BUFFERS, _loop(2, PER_STEP, "out")))


# A layer loop around a row loop around a column loop (a grid RNN): slot l + 1 of h is
# layer l's output, written cell by cell; the projection reads slot l, the layer below.
GRID_BUFFERS = """
    buffer h: f32[24,1,4] global temp
    buffer w: f32[4,4] global input
    buffer g: f32[16,1,4] global temp
"""
PROJ = "stage p(m in 0:2) device { g[8*l + 4*i + 2*j + m, 0:1, 0:4] = gemm(h[8*l + 4*i + 2*j + m, 0:1, 0:4], w[0:4, 0:4]) }"
CELL = ("stage c(m in 0:2) device { h[8*l + 4*i + 2*j + m + 8, 0:1, 0:4] = "
        "tanh(add(g[8*l + 4*i + 2*j + m, 0:1, 0:4], h[8*l + 4*i + 2*j + m + 6, 0:1, 0:4])) }")


def test_hoist_leaves_a_small_projection_of_the_layer_below_to_the_wavefront_pass():
    """With 2 points per step the GEMM is small and reads the layer below, which the nest
    writes in an earlier layer: batching it out of the row and column loops gives up the
    wavefront over (layer, row, column).  Hoisting leaves it; the wavefront pass prices the
    two schedules (tests/lower/test_wavefront_choice.py)."""
    before = f"for l in 0:2 sequential host {{ for i in 0:2 sequential host {{ for j in 0:2 sequential host {{ {PROJ} {CELL} }} }} }}"
    assert_unchanged(hoist, program(GRID_BUFFERS, before))


# --- cutting a batched projection of a sorted ragged batch to its live points ------------------

LIVE = "2*min(1, max(0, 3 - s)) + min(1, max(0, 2 - s)) + 1"   # lengths [5, 3, 3, 2]
RAGGED_BUFFERS = """
    buffer x: f32[5,4,64] global input
    buffer w: f32[64,64] global input
    buffer xw: f32[5,4,64] global temp
    buffer h: f32[6,4,64] global output
"""
RAGGED_PROJ = "stage proj() device { xw[s, m:m + 1, 0:64] = gemm(x[s, m:m + 1, 0:64], w[0:64, 0:64]) }"
RAGGED_STEP = ("stage cell() device { h[s + 1, m:m + 1, 0:64] = "
               "tanh(add(xw[s, m:m + 1, 0:64], h[s, m:m + 1, 0:64])) }")


def _ragged(cut: bool) -> str:
    proj_loop = f"for m in 0:{LIVE if cut else 4} parallel host {{ {RAGGED_PROJ} }}"
    return program(RAGGED_BUFFERS, f"""
        for s in 0:5 parallel host {{ {proj_loop} }}
        for s in 0:5 sequential host active m < {LIVE} {{
          for m in 0:4 parallel host {{ {RAGGED_STEP} }}
        }}
    """)


def _inside() -> str:
    return program(RAGGED_BUFFERS, f"""
        for s in 0:5 sequential host active m < {LIVE} {{
          for m in 0:4 parallel host {{ {RAGGED_PROJ} }}
          for m in 0:4 parallel host {{ {RAGGED_STEP} }}
        }}
    """)


def _policy_target(**fields):
    return dataclasses.replace(TINY_CPU, policy=dataclasses.replace(TINY_CPU.policy, **fields))


def test_hoist_cuts_a_batched_projection_to_its_live_points_where_a_polygon_costs_no_gathers():
    """The native backend runs a polygon as loops around box code (`polygon_gathers=False`):
    the 7 dead (step, sequence) points of 20 are dropped, whatever they cost."""
    got, _ = run_pass(hoist, _inside(), _policy_target(polygon_gathers=False))
    assert str(got) == str(parse_tile_program(_ragged(cut=True)))


def test_hoist_keeps_the_padded_box_where_gathering_the_live_points_costs_more_than_the_dead_ones():
    """NumPy gathers and scatters a polygon's rows (512 bytes a point at `fancy_gbs`): with a
    fast GEMM the 7 dead points' products cost less than that, so the box stays; on a slow one
    (the tiny cpu's 1 GFLOP/s) they cost more, and the batch is cut."""
    fast = dataclasses.replace(TINY_CPU, hardware=dataclasses.replace(
        TINY_CPU.hardware, peak_gflops=(("float32", 1000.0),)))
    got, _ = run_pass(hoist, _inside(), fast)
    assert str(got) == str(parse_tile_program(_ragged(cut=False)))
    got, _ = run_pass(hoist, _inside(), TINY_CPU)
    assert str(got) == str(parse_tile_program(_ragged(cut=True)))


def test_the_cpu_policy_cuts_to_live_points_by_what_the_dead_points_and_the_gathers_cost():
    hw = TINY_CPU.hardware   # 1 GFLOP/s float32
    policy = CpuPolicy()
    facts = LiveFacts(box_points=100, live_points=75, point_flops=10_000, point_bytes=1000)
    assert policy.cut_to_live(facts, hw)   # 25 x 10 us saved > 75 x 0.5 us gathered
    assert not policy.cut_to_live(dataclasses.replace(facts, point_flops=10), hw)
    assert dataclasses.replace(policy, polygon_gathers=False).cut_to_live(dataclasses.replace(facts, point_flops=10), hw)
    assert not dataclasses.replace(policy, polygon_gathers=False).cut_to_live(dataclasses.replace(facts, live_points=100), hw)
