"""A reduce's loop on the mesh (`plan_reduce`): partial sums where the rows live, then a tree;
exact against the interpreter on integer-valued data, and the loop unrolled as before where
its intermediate states are read or its combiner has no `Reduce`."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fractal as ft
from fractal.backends.dataflow.bsp import run_bsp
from fractal.backends.dataflow.plan import Planner
from fractal.backends.dataflow.spec import mesh_spec
from fractal.compile import compile_function
from fractal.lower.tile_parser import parse_tile_program

F64 = np.float64
COMBINE = {"add": lambda a, x: a + x, "maximum": ft.maximum, "minimum": ft.minimum}


def _rows(n, width, seed):
    rng = np.random.default_rng(seed)
    return ft.fractal([rng.integers(-9, 10, (width,)).astype(F64) for _ in range(n)],
                      type=ft.FractalTensor[ft.Tensor[(width,), F64]])


def _reduce_of(kind):
    @ft.function
    def total(xs, init):
        return ft.reduce(COMBINE[kind], xs, init)
    return total


@settings(max_examples=12, deadline=None)
@given(kind=st.sampled_from(sorted(COMBINE)), n=st.integers(2, 60), width=st.sampled_from([1, 3, 8]),
       rows=st.integers(1, 4), cols=st.integers(1, 5), seed=st.integers(0, 99))
def test_a_reduce_runs_as_partial_sums_and_a_tree_and_equals_the_interpreter(kind, n, width, rows, cols, seed):
    xs, init = _rows(n, width, seed), np.random.default_rng(seed + 1).integers(-9, 10, (width,)).astype(F64)
    total = _reduce_of(kind)
    compiled = compile_function(total, (xs, init), {}, ft.targets.mesh(rows, cols, "tiny"))
    steps = [s for s in compiled._executable.program.steps if " reduce: " in s.label]
    assert steps[0].label.endswith("reduce: partial sums") and steps[-1].label.endswith("reduce: result")
    owners = sum(c.pes.count for c in steps[0].computes)   # every PE holding rows of xs
    assert len(steps) == max(1, math.ceil(math.log2(owners))) + 1
    got, want = compiled.run(xs, init), total(xs, init, backend="interpreter")
    assert np.array_equal(np.asarray(got), np.asarray(want))


def test_the_tree_pairs_neighbours_in_the_homes_order_and_the_engines_agree():
    # 128 rows of 64 bytes on a 4 x 4 mesh: 16 home blocks, one per PE; 4 rounds, the first
    # between Z-order neighbours (one hop)
    xs, init = _rows(128, 8, 3), np.zeros(8)
    total = _reduce_of("add")
    compiled = compile_function(total, (xs, init), {}, ft.targets.mesh(4, 4, "tiny"))
    program = compiled._executable.program
    steps = [s for s in program.steps if " reduce: " in s.label]
    assert [s.label.split(": ")[1] for s in steps] == ["partial sums"] + [f"tree round {k}" for k in (1, 2, 3)] + \
        ["result"]
    first = [t for t in steps[0].transfers if t.src.buffer.endswith("_acc")]
    assert first and all(abs(r[0] - r[2]) + abs(r[1] - r[3]) == 1 for t in first for r in t.routes)
    want = np.asarray(xs.to_list()).sum(0)
    assert np.array_equal(np.asarray(compiled.run(xs, init)), want)
    assert np.array_equal(np.asarray(compiled.run(xs, init, executor="event")), want)


_READ_BETWEEN = """tile @prefix {
  buffer x: f64[16,1,4] global input
  buffer y: f64[1,4] global output
  buffer mid: f64[1,4] global output
  buffer s: f64[17,1,4] global temp
  stage zero() device {
    s[0, 0:1, 0:4] = 0.0
  }
  for r in 0:16 sequential associative host {
    stage add() device {
      s[r + 1, 0:1, 0:4] = add(s[r, 0:1, 0:4], x[r, 0:1, 0:4])
    }
  }
  stage out() device {
    y[0:1, 0:4] = copy(s[16, 0:1, 0:4])
    mid[0:1, 0:4] = copy(s[8, 0:1, 0:4])
  }
}"""


@pytest.mark.parametrize("middle, tree", [(True, False), (False, True)])
def test_a_reduce_whose_states_are_read_in_between_runs_step_by_step(middle, tree):
    text = _READ_BETWEEN if middle else _READ_BETWEEN.replace("    mid[0:1, 0:4] = copy(s[8, 0:1, 0:4])\n", "") \
        .replace("  buffer mid: f64[1,4] global output\n", "")
    program = Planner(parse_tile_program(text), mesh_spec(2, 2, "tiny")).program()
    assert any(" reduce: " in s.label for s in program.steps) == tree
    runs = {s.label.split()[0] for s in program.steps if s.label.startswith("add#") and " reduce: " not in s.label}
    assert len(runs) == (16 if middle else 0)   # one stage run per step, or none
    x = np.arange(64.0).reshape(16, 1, 4)
    out, _ = run_bsp(program, {"x": x})
    assert np.array_equal(out["y"], x.sum(0))
    if middle:
        assert np.array_equal(out["mid"], x[:8].sum(0))


def test_a_product_reduce_has_no_reduce_combiner_and_runs_step_by_step():
    @ft.function
    def product(xs, init):
        return ft.reduce(lambda a, x: a * x, xs, init)
    xs, init = _rows(6, 3, 5), np.ones(3)
    compiled = compile_function(product, (xs, init), {}, ft.targets.mesh(2, 2, "tiny"))
    assert not any(" reduce: " in s.label for s in compiled._executable.program.steps)
    assert np.array_equal(np.asarray(compiled.run(xs, init)), np.asarray(product(xs, init, backend="interpreter")))


@settings(max_examples=8, deadline=None)
@given(kind=st.sampled_from(sorted(COMBINE)), points=st.integers(1, 9), n=st.integers(2, 12),
       rows=st.integers(1, 3), cols=st.integers(1, 4), seed=st.integers(0, 99))
def test_a_reduce_per_point_runs_as_one_stage_of_reductions(kind, points, n, rows, cols, seed):
    # a batch of short reductions (a softmax's max and sum per query): each point reduces its own
    # rows in one stage run, not one stage run per step
    rng = np.random.default_rng(seed)
    xss = ft.fractal([[rng.integers(-9, 10, (3,)).astype(F64) for _ in range(n)] for _ in range(points)],
                     type=ft.FractalTensor[ft.FractalTensor[ft.Tensor[(3,), F64]]])

    @ft.function
    def per_point(xss):
        # (over computed rows: a reduce of a list's own rows lowers to one Reduce, with no loop)
        return ft.map(lambda xs: ft.reduce(COMBINE[kind], ft.map(lambda x: x * 2.0, xs), ft.zeros((3,), F64)), xss)
    compiled = compile_function(per_point, (xss,), {}, ft.targets.mesh(rows, cols, "tiny"))
    runs = {s.label.split()[0] for s in compiled._executable.program.steps}
    assert len([r for r in runs if r.split("#")[0].startswith(("add", "maximum", "minimum"))]) == 1
    got, want = compiled.run(xss), per_point(xss, backend="interpreter")
    assert all(np.array_equal(g, w) for g, w in zip(got.to_list(), want.to_list()))


@settings(max_examples=10, deadline=None)
@given(kind=st.sampled_from(sorted(COMBINE)), lens=st.lists(st.integers(1, 6), min_size=1, max_size=6),
       seed=st.integers(0, 99))
def test_a_ragged_reduce_per_point_runs_one_stage_per_phase_of_equal_boxes(kind, lens, seed):
    # a sorted ragged batch's points drop out as their lists end: the steps with one box of live
    # points (a phase) run as one stage, each point reducing the phase's rows
    rng = np.random.default_rng(seed)
    xss = ft.fractal([[rng.integers(-9, 10, (3,)).astype(F64) for _ in range(n)] for n in lens],
                     type=ft.FractalTensor[ft.FractalTensor[ft.Tensor[(3,), F64]]])

    @ft.function
    def per_point(xss):
        return ft.map(lambda xs: ft.reduce(COMBINE[kind], ft.map(lambda x: x * 2.0, xs), ft.zeros((3,), F64)), xss)
    compiled = compile_function(per_point, (xss,), {}, ft.targets.mesh(2, 2, "tiny"))
    runs = {s.label.split()[0] for s in compiled._executable.program.steps
            if s.label.split("#")[0].startswith(("add", "maximum", "minimum"))}
    if max(lens) > 1:   # (one step: no loop to speak of)
        assert len(runs) == len(set(lens))      # one run per distinct length, not one per step
    got, want = compiled.run(xss), per_point(xss, backend="interpreter")
    assert all(np.array_equal(g, w) for g, w in zip(got.to_list(), want.to_list()))
