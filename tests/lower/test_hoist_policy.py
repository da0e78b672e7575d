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

def _ragged(points: int, live: str, cut: bool | None) -> str:
    """A ragged scan of 4 steps over `points` sequences (`live` of them running at step s) with
    an input projection: in the loop (`cut=None`), or batched before it, over the padded box
    or cut to the live points."""
    buffers = f"""
        buffer x: f32[4,{points},32] global input
        buffer w: f32[32,32] global input
        buffer xw: f32[4,{points},32] global temp
        buffer h: f32[5,{points},32] global output
    """
    proj = "stage proj() device { xw[s, m:m + 1, 0:32] = gemm(x[s, m:m + 1, 0:32], w[0:32, 0:32]) }"
    step = "stage cell() device { h[s + 1, m:m + 1, 0:32] = tanh(add(xw[s, m:m + 1, 0:32], h[s, m:m + 1, 0:32])) }"
    loop = f"for s in 0:4 sequential host active m < {live} {{ %s for m in 0:{points} parallel host {{ {step} }} }}"
    if cut is None:
        return program(buffers, loop % f"for m in 0:{points} parallel host {{ {proj} }}")
    batched = f"for s in 0:4 parallel host {{ for m in 0:{live if cut else points} parallel host {{ {proj} }} }}"
    return program(buffers, batched + "\n" + loop % "")


def _hoisted(points: int, live: str, **policy) -> str:
    target = dataclasses.replace(TINY_CPU, policy=dataclasses.replace(TINY_CPU.policy, **policy))
    return str(run_pass(hoist, _ragged(points, live, None), target)[0])


HALF = "32*min(1, max(0, 2 - s)) + 32"   # 64 sequences, half of them done after step 1


def test_hoist_cuts_a_batched_projection_of_many_rows_a_step_to_its_live_points():
    """Natively (`polygon_gathers=False`) the box is one GEMM of 256 rows, the live points one
    of 64 or 32 rows a step: 64 dead rows of 2 us each (the tiny cpu's 1 GFLOP/s) outweigh
    four calls and their smaller blocks."""
    assert _hoisted(64, HALF, polygon_gathers=False) == str(parse_tile_program(_ragged(64, HALF, True)))


def test_hoist_keeps_the_padded_box_of_a_small_batch_whose_steps_would_be_tiny_products():
    """Eight sequences (stacked_lstm's small batch): cut, each step's product would be a call
    of at most 8 rows, far below full speed; the one GEMM over the box stays."""
    live = "4*min(1, max(0, 2 - s)) + 4"
    assert _hoisted(8, live, polygon_gathers=False) == str(parse_tile_program(_ragged(8, live, False)))


def test_the_cpu_policy_weighs_dead_rows_against_calls_per_step_and_numpys_gathers():
    hw = TINY_CPU.hardware   # 1 GFLOP/s float32, 10 GB/s DRAM
    native = CpuPolicy(polygon_gathers=False)
    facts = LiveFacts(box_points=256, live_points=192, point_flops=2048, point_bytes=256, steps=4)
    assert native.cut_to_live(facts, hw)
    assert not native.cut_to_live(dataclasses.replace(facts, steps=64), hw)      # a call a step costs more
    assert not native.cut_to_live(dataclasses.replace(facts, live_points=256), hw)   # nothing dead
    # NumPy also gathers and scatters the live points' regions (at 2 GB/s)
    assert not CpuPolicy().cut_to_live(dataclasses.replace(facts, point_bytes=4096), hw)
    assert native.cut_to_live(dataclasses.replace(facts, point_bytes=4096), hw)
    # regions without products: the dead points' bytes are saved, no call added
    assert native.cut_to_live(dataclasses.replace(facts, point_flops=0, steps=64), hw)
    # ... unless a point moves so few bytes that the polygon's plain loops (5 ns a point) cost more
    assert not native.cut_to_live(dataclasses.replace(facts, point_flops=0, point_bytes=8), hw)
    # each call packs the weight the points share again (4 GB/s): the 64 dead rows, less the
    # 4 calls' costs, save 25 us; 3 more packings of 4 KiB (3 us) fit in that, of 64 KiB (49 us) not
    assert native.cut_to_live(dataclasses.replace(facts, shared_bytes=4 * 1024), hw)
    assert not native.cut_to_live(dataclasses.replace(facts, shared_bytes=64 * 1024), hw)
