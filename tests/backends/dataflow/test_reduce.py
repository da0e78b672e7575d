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
from examples import zoo
from fractal.compile import compile_function
from fractal.testing.compare import compare
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


def _live(lens, n):
    """The loop's box at each step: 1 + the last point whose list is longer (a prefix covering
    the live points, as the lowering makes for a batch sorted by another length)."""
    return [max([m + 1 for m, L in enumerate(lens) if L > t], default=0) for t in range(n)]


def _own_ends_program(lens, n, read_mid=None):
    """A batch of reductions of P points (rows `x[n*m + r]`) in the box `_live`, each point's
    state read at its own length through a const table (`y`); `read_mid`: point 0's state
    also read after that many steps (`z`)."""
    P, live = len(lens), _live(lens, n) + [0]
    bound = " + ".join(f"{live[t] - live[t + 1]}*min(1, max(0, -r + {t + 1}))" for t in range(n)
                       if live[t] > live[t + 1]) or "0"
    loop = (f"for r in 0:{n} sequential associative host {{\n"
            f"  stage add(m in 0:{bound}) device {{\n"
            f"    s[m + {P}*r + {P}, 0:1, 0:3] = add(s[m + {P}*r, 0:1, 0:3], x[{n}*m + r, 0:1, 0:3])\n"
            f"  }}\n}}\n")
    table = [m + P * L for m, L in enumerate(lens)]
    rows = P * (n + 1)
    mid = ("  buffer z: f64[1,3] global output\n", f"    z[0:1, 0:3] = copy(s[{P * read_mid}, 0:1, 0:3])\n") \
        if read_mid is not None else ("", "")
    return (f"tile @ends {{\n  buffer x: f64[{P * n},1,3] global input\n  buffer s: f64[{rows},1,3] global temp\n"
            f"  buffer c: i64[{P}] global const = [{', '.join(map(str, table))}]\n  buffer y: f64[{P},1,3] global output\n"
            f"{mid[0]}  stage zero(m in 0:{P}) device {{\n    s[m, 0:1, 0:3] = 0.0\n  }}\n"
            + "".join("  " + line + "\n" for line in loop.splitlines()) +
            f"  stage out() device {{\n    y[0:{P}, 0:1, 0:3] = gather(s[0:{rows}, 0:1, 0:3], c[0:{P}], axis=0)\n"
            f"{mid[1]}  }}\n}}")


def _add_runs(program) -> list[str]:
    return [s.label for s in program.steps if s.label.startswith("add#")]


@settings(max_examples=25, deadline=None)
@given(lens=st.lists(st.integers(0, 5), min_size=1, max_size=6), n=st.integers(5, 7), rows=st.integers(1, 3),
       cols=st.integers(1, 3), seed=st.integers(0, 99))
def test_states_read_at_each_points_own_step_are_reduced_in_one_stage_run(lens, n, rows, cols, seed):
    # a batch sorted by another length: its points' lists end inside the loop's phases (runs
    # of steps with one box); each point then reduces its own rows: two supersteps in all
    program = Planner(parse_tile_program(_own_ends_program(lens, n)), mesh_spec(rows, cols, "tiny")).program()
    x = np.random.default_rng(seed).integers(-9, 10, (len(lens) * n, 1, 3)).astype(F64)
    out, _ = run_bsp(program, {"x": x})
    assert np.array_equal(out["y"], np.stack([x[n * m:n * m + L].sum(0) for m, L in enumerate(lens)]))
    live = _live(lens, n) + [0]
    phase_ends = {t for t in range(n) if live[t] and live[t] != live[t + 1]}
    if not {L - 1 for L in lens if L} <= phase_ends:   # (one point per PE: fewer PEs, step by step)
        if sum(1 for L in lens if L) <= rows * cols:
            assert _add_runs(program) == ["add#0 reduce: fetch", "add#0 reduce: each to its own step"]
        else:
            assert not any("own step" in label for label in _add_runs(program))
    else:   # (each read at a phase's end: one stage run per phase)
        assert len({label.split()[0] for label in _add_runs(program)}) == len(phase_ends)


def test_a_point_whose_state_is_also_read_midway_runs_step_by_step():
    lens, n = [3, 5, 2], 5
    program = Planner(parse_tile_program(_own_ends_program(lens, n, read_mid=2)), mesh_spec(2, 2, "tiny")).program()
    assert len({label.split()[0] for label in _add_runs(program)}) == n
    x = np.arange(3 * n * 3, dtype=F64).reshape(3 * n, 1, 3)
    out, _ = run_bsp(program, {"x": x})
    assert np.array_equal(out["y"], np.stack([x[n * m:n * m + L].sum(0) for m, L in enumerate(lens)]))
    assert np.array_equal(out["z"], x[0:2].sum(0))


_CARRIED = """tile @carried {
  buffer x: f64[15,1,3] global input
  buffer s: f64[33,1,3] global temp
  buffer c: i64[6] global const = [6, 13, 11, 18, 31, 26]
  buffer y: f64[6,1,3] global output
  stage zero(m in 0:3) device {
    s[m, 0:1, 0:3] = 0.0
  }
  for k in 0:2 sequential host {
    for r in 0:5 sequential associative host {
      stage add(m in 0:3) device {
        s[m + 3*r + 15*k + 3, 0:1, 0:3] = add(s[m + 3*r + 15*k, 0:1, 0:3], x[5*m + r, 0:1, 0:3])
      }
    }
  }
  stage out() device {
    y[0:6, 0:1, 0:3] = gather(s[0:33, 0:1, 0:3], c[0:6], axis=0)
  }
}"""


def test_a_state_carried_to_the_next_run_of_the_loop_is_left_behind():
    # both runs' states are read at each point's own step (run 0 after 2, 4, 3 rows; run 1
    # after 1, 5, 3 more); run 1 starts from run 0's last states, which no other op reads:
    # run 0 must leave them behind (step by step), run 1 need not (each point to its own step)
    program = Planner(parse_tile_program(_CARRIED), mesh_spec(2, 2, "tiny")).program()
    runs = _add_runs(program)
    assert len({label.split()[0] for label in runs}) == 5 + 1
    assert [label for label in runs if "own step" in label] == ["add#5 reduce: each to its own step"]
    x = np.arange(15 * 3, dtype=F64).reshape(15, 1, 3)
    out, _ = run_bsp(program, {"x": x})
    first, second = [2, 4, 3], [1, 5, 3]
    want = [x[5 * m:5 * m + L].sum(0) for m, L in enumerate(first)] + \
        [x[5 * m:5 * m + 5].sum(0) + x[5 * m:5 * m + L].sum(0) for m, L in enumerate(second)]
    assert np.array_equal(out["y"], np.stack(want))


def test_rnn_attention_with_many_source_lengths_runs_its_softmax_each_to_its_own_step(monkeypatch):
    # ten distinct source lengths: the lowering's box of live queries is coarser than the
    # lengths, so the softmax's states are read inside its phases
    import examples.rnn_attention as model
    rng = np.random.default_rng(0)
    lengths = iter([list(rng.permutation(np.arange(1, 11))), list(rng.integers(1, 4, 10))])
    monkeypatch.setattr(model, "lengths_for", lambda *a: next(lengths))
    m = zoo.load("rnn_attention")
    args = m.inputs({**model.CONFIGS["small"], "batch": 10}, dtype=np.float64, ragged=True)
    compiled = m.model.compile(*args, target=ft.targets.mesh(4, 4, "tiny"))
    assert any("each to its own step" in s.label for s in compiled._executable.program.steps)
    want = m.outputs(m.model(*args, backend="interpreter"))
    for executor in ("bsp", "event"):
        assert compare(m.outputs(compiled.run(*args, executor=executor)), want, rtol=1e-10, atol=1e-10) == []
