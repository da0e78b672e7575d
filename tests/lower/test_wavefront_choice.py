"""Which schedule the wavefront pass gives a nest of sequential loops (`CostPolicy.choose_schedule`).

A grid RNN's cells (layer l, row i, column j) read their three neighbours: the nest may be
skewed whole onto the planes `l + i + j` (D + S + T - 2 steps of every cell on a plane), or the
projection of the layer below batched out of the row and column loops (one GEMM per layer)
and the (row, column) nest skewed inside each layer (D x (S + T - 1) steps), or left as
written.  All three are legal (the dependence engine); the CPU policy prices each schedule's
stage runs and takes the cheapest, and a policy can name one (the benchmark compares them).
Where the per-point work is tiny (hidden sizes of a few elements), the fewest steps win.
"""

from __future__ import annotations

import dataclasses

import pytest

import fractal as ft
from fractal.backends.cpu.policy import CpuPolicy
from fractal.lower import parse_tile_program
from fractal.lower.policy import GemmRun, ScheduleOption, StageRun
from fractal.lower.target import Target
from fractal.lower.tile_ir import Loop
from fractal.lower.wavefront import wavefront
from tests.lower.test_passes import program, run_pass

GENERIC = ft.targets.get("cpu-generic")

# A 2-layer grid of 2 x 2 cells of 2 points and 4-element rows: h[l + 1, i + 1, j + 1] is
# layer l's cell (i, j) (slot 0 of each axis the boundary: the input grid, the row above
# the first, the column left of the first); the projection reads the layer below.
GRID = """
    buffer h: f32[3,3,3,2,4] global temp
    buffer w: f32[4,4] global input
    buffer g: f32[2,2,2,2,4] global temp
"""
PROJ = "stage p(m in 0:2) device { g[l, i, j, m:m + 1, 0:4] = gemm(h[l, i + 1, j + 1, m:m + 1, 0:4], w[0:4, 0:4]) }"
CELL = ("stage c(m in 0:2) device { h[l + 1, i + 1, j + 1, m, 0:4] = tanh(add(add(g[l, i, j, m, 0:4], "
        "h[l + 1, i, j + 1, m, 0:4]), h[l + 1, i + 1, j, m, 0:4])) }")
NEST = (f"for l in 0:2 sequential host {{ for i in 0:2 sequential host {{ for j in 0:2 sequential host {{ "
        f"{PROJ} {CELL} }} }} }}")


def with_schedule(schedule: str) -> Target:
    return dataclasses.replace(GENERIC, policy=CpuPolicy(schedule=schedule))


def test_tiny_cells_take_the_fewest_steps_the_whole_nest_skewed():
    """Cells of 2 points and 4-element rows: the plane `l + i + j` schedule, 4 steps of the
    cells on a plane (a polygon of (l, i) points), beats 2 x 3 steps of batched layers."""
    got, ctx = run_pass(wavefront, program(GRID, NEST), target=GENERIC)
    (outer,) = got.body
    assert (outer.var, outer.kind, outer.stop.const) == ("l_i_j", "sequential", 4)
    assert ctx.notes == ["wavefront: l x i x j -> l_i_j (4 steps; wavefront of: as written 8 steps; "
                         "wavefront 4 steps; batched 6 steps)"]


def test_a_policy_may_name_the_batched_schedule():
    """`CpuPolicy(schedule="batched")`: the projection leaves the row and column loops (one
    batched GEMM per layer) and the (row, column) nest is skewed inside each layer."""
    got, ctx = run_pass(wavefront, program(GRID, NEST), target=with_schedule("batched"))
    (layers,) = got.body
    assert layers.var == "l" and layers.kind == "sequential"
    projection, cells = layers.body
    assert projection.kind == "parallel" and (cells.var, cells.kind, cells.stop.const) == ("i_j", "sequential", 3)
    assert ctx.notes[0].startswith("wavefront: i x j -> i_j (3 steps; batched of:")


def test_a_policy_may_keep_the_nest_as_written():
    got, ctx = run_pass(wavefront, program(GRID, NEST), target=with_schedule("as written"))
    assert got == parse_tile_program(program(GRID, NEST)) and ctx.notes == []


def runs(count: int, rows: int, calls: int) -> tuple:
    """`count` stage runs of 4 ops, one a GEMM of `calls` BLAS calls of `rows` x 256 by 256 x 256."""
    return (StageRun(count, 4, rows * calls, False, (GemmRun(calls, rows, 256, 256, 4),), 4096),)


@pytest.mark.parametrize("schedule, pick", [("cheapest", 1), ("wavefront", 0), ("batched", 1), ("as written", 0)])
def test_choose_schedule_prices_the_options_or_takes_the_one_named(schedule, pick):
    """The same 544 rows of GEMM work: in 34 steps of 8 calls of 2 rows (a plane of cells with
    per-layer weights) against 4 runs of one 136-row call: the calls' overhead and the small
    GEMMs' low rate make the batched schedule the cheaper.  A name takes that option (or the
    fewest steps where it is not offered)."""
    options = [ScheduleOption("wavefront", 34, runs(34, 2, 8)), ScheduleOption("batched", 124, runs(4, 136, 1))]
    assert CpuPolicy(schedule=schedule).choose_schedule(options, GENERIC.hardware) == pick


def test_tiny_gemms_make_the_fewest_steps_the_cheapest():
    """With 4 x 4 weights the GEMM work is nothing: host costs per stage run decide."""
    tiny = lambda count, rows, calls: (StageRun(count, 4, rows, True, (GemmRun(calls, rows, 4, 4, 4),), 256),)  # noqa
    options = [ScheduleOption("wavefront", 4, tiny(4, 8, 2)), ScheduleOption("batched", 6, tiny(6, 4, 1) + tiny(2, 8, 1))]
    assert CpuPolicy().choose_schedule(options, GENERIC.hardware) == 0


def test_an_unpriced_nest_takes_the_fewest_steps():
    options = [ScheduleOption("as written", 40, None), ScheduleOption("wavefront", 8, None)]
    assert CpuPolicy().choose_schedule(options, GENERIC.hardware) == 1
